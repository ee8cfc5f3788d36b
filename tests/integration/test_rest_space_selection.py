"""SPEC §2 over REST, against real servers: sources and precedence, conflicts, the default-space
fallback (log line, headers, counter), unknown and invalid spaces, require_explicit_space and
auto_create_spaces."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

API = "/api/v1"
REMEMBER = f"{API}/memories/remember"


@pytest.fixture(scope="module")
def http(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, timeout=30) as client:
        yield client


def stored_in(http: httpx.Client, space: str, memory_id: str) -> bool:
    return http.get(f"{API}/memories/{memory_id}", headers={"X-Memory-Space": space}).status_code == 200


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["suggestion"] and err["example"]
    return err


def fallback_count(http: httpx.Client, operation: str) -> float:
    text = http.get("/metrics").text
    m = re.search(
        r"^engram_memory_space_default_fallback_total"
        rf'\{{operation="{re.escape(operation)}",transport="rest"\}} (\S+)$',
        text,
        re.M,
    )
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("header", ["X-Memory-Space", "X-Engram-Memory-Space", "X-Memory-Space-Id"])
def test_each_header_names_the_space(http: httpx.Client, header: str) -> None:
    mid = f"via-{header.lower()}"
    resp = http.post(REMEMBER, headers={header: "beta"}, json={"id": mid, "content": "x"})
    assert resp.status_code == 201
    assert "deprecation" not in resp.headers
    assert resp.json()["memory_space_id"] == "beta"
    assert stored_in(http, "beta", mid) and not stored_in(http, "alpha", mid)


def test_query_and_body_name_the_space(http: httpx.Client) -> None:
    r = http.post(REMEMBER, params={"space": "beta"}, json={"id": "via-query", "content": "x"})
    assert r.status_code == 201 and r.json()["memory_space_id"] == "beta"
    r = http.post(REMEMBER, json={"id": "via-body", "content": "x", "memory_space_id": "beta"})
    assert r.status_code == 201 and r.json()["memory_space_id"] == "beta"
    assert "deprecation" not in r.headers
    assert stored_in(http, "beta", "via-body")


def test_agreeing_sources_are_fine(http: httpx.Client) -> None:
    r = http.post(
        REMEMBER,
        params={"space": "alpha"},
        headers={"X-Memory-Space": "alpha", "X-Memory-Space-Id": "alpha"},
        json={"id": "agree", "content": "x", "memory_space_id": "alpha"},
    )
    assert r.status_code == 201 and r.json()["memory_space_id"] == "alpha"


@pytest.mark.parametrize(
    "kwargs, first, second",
    [
        (
            {"headers": {"X-Memory-Space": "alpha"}, "params": {"space": "beta"}},
            "header:X-Memory-Space",
            "query:space",
        ),
        (
            {"headers": {"X-Memory-Space": "alpha"}, "body_space": "beta"},
            "header:X-Memory-Space",
            "body:memory_space_id",
        ),
        ({"params": {"space": "alpha"}, "body_space": "beta"}, "query:space", "body:memory_space_id"),
        (
            {"headers": {"X-Memory-Space": "alpha", "X-Engram-Memory-Space": "beta"}},
            "header:X-Memory-Space",
            "header:X-Engram-Memory-Space",
        ),
    ],
)
def test_conflicting_sources_are_rejected_naming_both(
    http: httpx.Client, kwargs: dict[str, Any], first: str, second: str
) -> None:
    body: dict[str, Any] = {"id": "conflict", "content": "x"}
    if "body_space" in kwargs:
        body["memory_space_id"] = kwargs.pop("body_space")
    err = error_of(http.post(REMEMBER, json=body, **kwargs), 400, "MEMORY_SPACE_CONFLICT")
    assert f"{first}='alpha'" in err["message"] and f"{second}='beta'" in err["message"]
    # a body can never override a proxy-set header: nothing was written anywhere
    assert not stored_in(http, "alpha", "conflict") and not stored_in(http, "beta", "conflict")


def test_repeated_header_or_query_must_agree(http: httpx.Client) -> None:
    twice = [("X-Memory-Space", "alpha"), ("X-Memory-Space", "beta")]
    err = error_of(http.post(REMEMBER, headers=twice, json={"content": "x"}), 400, "MEMORY_SPACE_CONFLICT")
    assert "'alpha'" in err["message"] and "'beta'" in err["message"]
    r = http.get(f"{API}/memories", params=[("space", "alpha"), ("space", "beta")])
    error_of(r, 400, "MEMORY_SPACE_CONFLICT")
    same = http.get(f"{API}/memories", params=[("space", "alpha"), ("space", "alpha")])
    assert same.status_code == 200


def test_conflict_on_read_routes_too(http: httpx.Client) -> None:
    r = http.get(f"{API}/memories", headers={"X-Memory-Space": "alpha"}, params={"space": "beta"})
    error_of(r, 400, "MEMORY_SPACE_CONFLICT")


def test_fallback_to_default_is_logged_flagged_and_counted(http: httpx.Client, rest_server) -> None:
    op = "POST /api/v1/memories/remember"
    before = fallback_count(http, op)
    resp = http.post(REMEMBER, json={"id": "no-space", "content": "where am I"})
    host, port = resp.extensions["network_stream"].get_extra_info("client_addr")
    local = f"{host}:{port:d}"
    assert resp.status_code == 201
    assert resp.json()["memory_space_id"] == "default"
    assert resp.headers["deprecation"] == "true"
    assert resp.headers["warning"].startswith("299 ")
    assert "default" in resp.headers["warning"] and "X-Memory-Space" in resp.headers["warning"]
    assert stored_in(http, "default", "no-space")
    assert fallback_count(http, op) == before + 1
    records = [
        r for r in rest_server.log_records() if r.get("route") == op and "default space" in r.get("msg", "")
    ]
    assert records, rest_server.logs()[-2000:]
    assert records[-1]["peer"] == local
    assert records[-1]["level"] == "warning" and records[-1]["memory_space"] == "default"


def test_fallback_headers_also_on_errors_and_reads(http: httpx.Client) -> None:
    r = http.get(f"{API}/memories/not-there")
    error_of(r, 404, "MEMORY_NOT_FOUND")
    assert r.headers["deprecation"] == "true" and "warning" in r.headers
    r = http.get(f"{API}/memories/recall", params={"query": "where"})
    assert r.status_code == 200 and r.headers["deprecation"] == "true"
    assert fallback_count(http, "GET /api/v1/memories/recall") >= 1


@pytest.mark.parametrize("where", ["header", "query", "body"])
def test_invalid_space_names_the_rule(http: httpx.Client, where: str) -> None:
    bad = "Bad Space!"
    kwargs: dict[str, Any] = {"json": {"content": "x"}}
    if where == "header":
        kwargs["headers"] = {"X-Memory-Space": bad}
    elif where == "query":
        kwargs["params"] = {"space": bad}
    else:
        kwargs["json"]["memory_space_id"] = bad
    err = error_of(http.post(REMEMBER, **kwargs), 400, "INVALID_MEMORY_SPACE")
    assert "outside [a-z0-9_-]" in err["message"] and "' '" in err["message"]
    err = error_of(http.get(f"{API}/memories", params={"space": "ab"}), 400, "INVALID_MEMORY_SPACE")
    assert "too short" in err["message"]


def test_unknown_space_404_with_remedy_and_no_other_spaces(http: httpx.Client) -> None:
    for method, path, body in (
        ("POST", REMEMBER, {"content": "x"}),
        ("GET", f"{API}/memories", None),
        ("GET", f"{API}/stream/activities", None),
    ):
        r = http.request(method, path, headers={"X-Memory-Space": "agent-404"}, json=body)
        err = error_of(r, 404, "MEMORY_SPACE_NOT_FOUND")
        assert "agent-404" in err["message"]
        assert "engram space create agent-404" in err["suggestion"]
        assert "POST /api/v1/spaces" in err["suggestion"] and "CreateSpace" in err["suggestion"]
        for other in ("alpha", "beta", "default"):
            assert other not in r.text
    assert http.get(f"{API}/spaces/agent-404").status_code == 404, (
        "a failed request must not create the space"
    )


def test_require_explicit_space(module_server_factory) -> None:
    srv = module_server_factory(spaces=["alpha"], settings={"require_explicit_space": True}, name="explicit")
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        err = error_of(http.post(REMEMBER, json={"content": "x"}), 400, "MEMORY_SPACE_REQUIRED")
        assert "require_explicit_space" in err["message"]
        assert "X-Memory-Space" in err["suggestion"]
        error_of(http.get(f"{API}/memories"), 400, "MEMORY_SPACE_REQUIRED")
        ok = http.post(REMEMBER, headers={"X-Memory-Space": "alpha"}, json={"content": "x"})
        assert ok.status_code == 201 and "deprecation" not in ok.headers
        assert http.post(REMEMBER, json={"content": "x", "memory_space_id": "alpha"}).status_code == 201
        assert fallback_count(http, "POST /api/v1/memories/remember") == 0


def test_auto_create_spaces(module_server_factory) -> None:
    srv = module_server_factory(settings={"auto_create_spaces": True}, name="autocreate")
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        assert http.get(f"{API}/spaces/fresh-agent").status_code == 404
        r = http.post(
            REMEMBER, headers={"X-Memory-Space": "fresh-agent"}, json={"id": "m1", "content": "hello"}
        )
        assert r.status_code == 201, r.text
        desc = http.get(f"{API}/spaces/fresh-agent").json()
        assert desc["id"] == "fresh-agent" and desc["memory_count"] == 1
        assert stored_in(http, "fresh-agent", "m1")
        # invalid ids are still refused, never created
        error_of(
            http.post(REMEMBER, headers={"X-Memory-Space": "NOPE"}, json={"content": "x"}),
            400,
            "INVALID_MEMORY_SPACE",
        )
