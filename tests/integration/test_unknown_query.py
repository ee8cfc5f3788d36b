"""Unknown query parameters are a 400 envelope naming them, on every REST route, like unknown body
fields; every parameter the OpenAPI document lists for a route is accepted (plus ``?space=``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engram.testing import EngramProcess

API = "/api/v1"


@pytest.fixture(scope="module")
def http(rest_server: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, timeout=30, headers={"X-Memory-Space": "alpha"}) as c:
        yield c


def _operations(http: httpx.Client) -> list[tuple[str, str, set[str]]]:
    doc = http.get("/openapi.json").json()
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            query = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
            ops.append((method.upper(), path, query))
    return ops


def _unknown(http: httpx.Client, method: str, path: str) -> httpx.Response:
    concrete = re.sub(r"\{[^}]+\}", "alpha", path)
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return http.request(method, concrete, params={"zz_not_a_parameter": "1"}, **body)


def test_every_route_rejects_an_unknown_parameter_and_lists_its_documented_ones(http: httpx.Client) -> None:
    checked = 0
    for method, path, documented in _operations(http):
        resp = _unknown(http, method, path)
        assert resp.status_code == 400, (method, path, resp.status_code, resp.text[:300])
        err = resp.json()["error"]
        assert err["code"] == "INVALID_INPUT", (method, path, err)
        assert "zz_not_a_parameter" in err["message"] and f"{method} {path}" in err["message"], err
        assert err["suggestion"] and err["example"]
        # What the route accepts is exactly what /openapi.json documents, plus ?space=.
        assert set(err["details"]["accepted"]) == documented | {"space"}, (method, path)
        checked += 1
    assert checked >= 30, checked


def test_nothing_happened_when_a_parameter_was_unknown(http: httpx.Client) -> None:
    made = http.post(f"{API}/memories/remember", json={"content": "kept", "id": "kept-1"})
    assert made.status_code == 201
    refused = http.request("DELETE", f"{API}/memories/kept-1", params={"mode": "delete", "hard": "yes"})
    assert refused.status_code == 400 and "'hard'" in refused.json()["error"]["message"]
    assert http.get(f"{API}/memories/kept-1").status_code == 200
    refused = http.post(f"{API}/memories/remember", params={"ttl": "5"}, json={"content": "x", "id": "x-1"})
    assert refused.status_code == 400
    assert http.get(f"{API}/memories/x-1").status_code == 404


@pytest.mark.parametrize("path, params", [
    (f"{API}/memories/recall", {"query": "kept", "max_results": "5", "threshold": "0", "mode": "hybrid",
                                "rank": "similarity", "tags": ["a", "b"], "space": "alpha"}),
    (f"{API}/memories", {"limit": "5", "include_suppressed": "true", "memory_type": "semantic"}),
    (f"{API}/memories/kept-1", {"include_embedding": "false"}),
    (f"{API}/spaces", {"limit": "5"}),
    (f"{API}/episodes/reminisce", {"topic": "kept", "limit": "5"}),
    (f"{API}/consolidations", {"limit": "5"}),
])
def test_documented_parameters_still_work(http: httpx.Client, path: str, params: dict[str, Any]) -> None:
    http.post(f"{API}/memories/remember", json={"content": "kept", "id": "kept-1"})
    resp = http.get(path, params=params)
    assert resp.status_code == 200, resp.text[:300]


def test_a_misspelt_parameter_is_named_not_ignored(http: httpx.Client) -> None:
    resp = http.get(f"{API}/memories/recall", params={"query": "kept", "max_result": "1"})
    err = resp.json()["error"]
    assert resp.status_code == 400 and "'max_result'" in err["message"] and "max_results" in err["message"]
