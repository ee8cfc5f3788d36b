"""REST space administration against a real server: create (idempotent), list, get, delete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

API = "/api/v1"


def assert_envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code, err
    for key in ("message", "suggestion", "example"):
        assert isinstance(err[key], str)
    assert err["message"]
    return err


@pytest.fixture(scope="module")
def http(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, timeout=30) as client:
        yield client


def test_create_is_idempotent(http: httpx.Client) -> None:
    first = http.post(f"{API}/spaces", json={"id": "gamma"})
    assert first.status_code == 201, first.text
    desc = first.json()
    assert desc["id"] == "gamma" and desc["memory_count"] == 0 and desc["created_at"]
    again = http.post(f"{API}/spaces", json={"id": "gamma"})
    assert again.status_code == 200
    assert again.json()["id"] == "gamma"
    assert again.json()["created_at"] == desc["created_at"]


def test_create_with_dimension(http: httpx.Client) -> None:
    resp = http.post(f"{API}/spaces", json={"id": "dim-space", "dimension": 4})
    assert resp.status_code == 201
    assert resp.json()["dimension"] == 4


@pytest.mark.parametrize(
    "bad, rule",
    [
        ("ab", "too short"),
        ("Agent7", "outside [a-z0-9_-]"),
        ("-agent", "must start with a letter or digit"),
        ("a" * 65, "too long"),
        ("a/../../etc", "outside [a-z0-9_-]"),
    ],
)
def test_create_invalid_id_names_the_rule(http: httpx.Client, bad: str, rule: str) -> None:
    err = assert_envelope(http.post(f"{API}/spaces", json={"id": bad}), 400, "INVALID_MEMORY_SPACE")
    assert rule in err["message"]
    assert err["example"] == "agent-7"


def test_create_rejects_unknown_fields_and_missing_id(http: httpx.Client) -> None:
    err = assert_envelope(
        http.post(f"{API}/spaces", json={"id": "delta", "colour": "red"}), 400, "INVALID_INPUT"
    )
    assert "body.colour" in err["message"]
    err = assert_envelope(http.post(f"{API}/spaces", json={}), 400, "INVALID_INPUT")
    assert "body.id" in err["message"]


def test_list_sorted_and_paginated(http: httpx.Client) -> None:
    for sid in ("zeta-1", "eta-1", "theta-1"):
        assert http.post(f"{API}/spaces", json={"id": sid}).status_code in (200, 201)
    everything = http.get(f"{API}/spaces", params={"limit": 1000}).json()
    ids = [s["id"] for s in everything["spaces"]]
    assert ids == sorted(ids)
    assert {"alpha", "beta", "default", "zeta-1", "eta-1", "theta-1"} <= set(ids)
    assert everything["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = http.get(f"{API}/spaces", params=params).json()
        assert len(page["spaces"]) <= 2
        seen += [s["id"] for s in page["spaces"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids


def test_list_limit_out_of_range(http: httpx.Client) -> None:
    assert_envelope(http.get(f"{API}/spaces", params={"limit": 0}), 400, "INVALID_INPUT")
    assert_envelope(http.get(f"{API}/spaces", params={"limit": "many"}), 400, "INVALID_INPUT")


def test_get_describes_with_statistics(http: httpx.Client) -> None:
    http.post(f"{API}/memories/remember", headers={"X-Memory-Space": "beta"}, json={"content": "one"})
    desc = http.get(f"{API}/spaces/beta").json()
    assert desc["id"] == "beta"
    assert desc["memory_count"] >= 1
    assert desc["last_lsn"] >= 1
    assert desc["healthy"] is True


def test_get_unknown_space_gives_remedy_without_listing_others(http: httpx.Client) -> None:
    err = assert_envelope(http.get(f"{API}/spaces/nosuch"), 404, "MEMORY_SPACE_NOT_FOUND")
    assert "nosuch" in err["message"]
    assert "engram space create nosuch" in err["suggestion"]
    assert "POST /api/v1/spaces" in err["suggestion"]
    text = str(err)
    for other in ("alpha", "beta", "gamma", "default"):
        assert other not in text


def test_get_invalid_space_id(http: httpx.Client) -> None:
    err = assert_envelope(http.get(f"{API}/spaces/BAD!"), 400, "INVALID_MEMORY_SPACE")
    assert "outside [a-z0-9_-]" in err["message"]


def test_delete_erases_everything(http: httpx.Client) -> None:
    assert http.post(f"{API}/spaces", json={"id": "doomed"}).status_code == 201
    hdr = {"X-Memory-Space": "doomed"}
    for i in range(3):
        assert (
            http.post(
                f"{API}/memories/remember", headers=hdr, json={"content": f"m{i}", "id": f"m{i}"}
            ).status_code
            == 201
        )
    gone = http.delete(f"{API}/spaces/doomed")
    assert gone.status_code == 200, gone.text
    report = gone.json()
    assert report == {**report, "id": "doomed", "deleted": True, "memories_removed": 3}
    assert report["files_removed"] >= 1 and report["bytes_removed"] > 0
    assert_envelope(http.get(f"{API}/spaces/doomed"), 404, "MEMORY_SPACE_NOT_FOUND")
    assert_envelope(http.get(f"{API}/memories/m0", headers=hdr), 404, "MEMORY_SPACE_NOT_FOUND")
    assert_envelope(http.delete(f"{API}/spaces/doomed"), 404, "MEMORY_SPACE_NOT_FOUND")
    # re-created, it starts empty
    assert http.post(f"{API}/spaces", json={"id": "doomed"}).status_code == 201
    assert http.get(f"{API}/memories", headers=hdr).json()["memories"] == []
