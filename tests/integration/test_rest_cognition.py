"""REST cognition routes against a real server: associate, recognize, reminisce, consolidate and
beliefs, complete, introspect, spreading recall; each over its own space only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engram.client import GrpcClient

API = "/api/v1"

EPISODES = [
    ("e0", "2026-05-01T09:00:00Z", "coffee with Ada at the corner cafe", [1.0, 0.0, 0.0, 0.1]),
    ("e1", "2026-05-01T09:10:00Z", "coffee with Ada again, she talked about boats", [1.0, 0.05, 0.0, 0.1]),
    ("e2", "2026-05-01T09:20:00Z", "more coffee with Ada", [0.98, 0.02, 0.01, 0.1]),
    ("e3", "2026-05-09T18:00:00Z", "gym session, leg day", [0.0, 1.0, 0.0, 0.0]),
]


@pytest.fixture(scope="module")
def alpha(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, headers={"X-Memory-Space": "alpha"}, timeout=30) as c:
        for mid, when, what, emb in EPISODES:
            r = c.post(
                f"{API}/episodes/remember",
                json={
                    "id": mid,
                    "when": when,
                    "what": what,
                    "who": ["Ada"],
                    "where_location": "cafe",
                    "embedding": emb,
                },
            )
            assert r.status_code == 201, r.text
        yield c


@pytest.fixture(scope="module")
def beta(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, headers={"X-Memory-Space": "beta"}, timeout=30) as c:
        yield c


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text[:600]
    return resp.json()


def err(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:600]
    e = resp.json()["error"]
    assert e["code"] == code and e["message"] and e["suggestion"] and e["example"]
    return e


def test_associate_and_spreading_recall(alpha: httpx.Client, beta: httpx.Client) -> None:
    edge = ok(
        alpha.post(f"{API}/memories/associate", json={"source_id": "e0", "target_id": "e3", "strength": 0.9})
    )
    assert edge["source_id"] == "e0" and edge["target_id"] == "e3" and edge["strength"] == pytest.approx(0.9)
    assert edge["lsn"] > 0 and edge["memory_space_id"] == "alpha" and edge["created"] is True
    again = ok(alpha.post(f"{API}/memories/associate",
                          json={"source_id": "e0", "target_id": "e3", "strength": 0.5}))
    assert again["created"] is False and again["strength"] > 0.9, "an existing edge is strengthened"
    body = ok(
        alpha.post(
            f"{API}/memories/recall",
            json={
                "embedding": [1.0, 0.0, 0.0, 0.1],
                "mode": "spreading",
                "trace_activation": True,
                "max_results": 10,
            },
        )
    )
    items = {i["memory"]["id"]: i for b in body["memories"].values() for i in b}
    assert "e3" in items, "the associated memory is reached by spreading activation"
    assert items["e3"]["activation_path"]
    err(
        alpha.post(f"{API}/memories/associate", json={"source_id": "e0", "target_id": "nope"}),
        404,
        "MEMORY_NOT_FOUND",
    )
    err(
        beta.post(f"{API}/memories/associate", json={"source_id": "e0", "target_id": "e3"}),
        404,
        "MEMORY_NOT_FOUND",
    )
    err(
        alpha.post(f"{API}/memories/associate", json={"source_id": "e0", "target_id": "e3", "strength": 2}),
        400,
        "INVALID_INPUT",
    )


def test_recognize(alpha: httpx.Client, beta: httpx.Client) -> None:
    known = ok(alpha.post(f"{API}/memories/recognize", json={"content": "more coffee with Ada"}))
    assert known["recognized"] is True and known["familiarity"] > 0.8
    assert known["matches"][0]["memory_id"] == "e2"
    assert known["confidence"]["category"] in ("high", "certain")
    novel = ok(beta.post(f"{API}/memories/recognize", json={"content": "more coffee with Ada"}))
    assert novel["recognized"] is False and novel["matches"] == []
    err(alpha.post(f"{API}/memories/recognize", json={}), 400, "INVALID_INPUT")


def test_reminisce_in_time_order(alpha: httpx.Client) -> None:
    body = ok(alpha.get(f"{API}/episodes/reminisce", params={"topic": "coffee"}))
    ids = [e["id"] for e in body["episodes"]]
    assert ids == ["e0", "e1", "e2"]
    window = ok(
        alpha.get(
            f"{API}/episodes/reminisce",
            params={"time_start": "2026-05-08T00:00:00Z", "time_end": "2026-05-10T00:00:00Z"},
        )
    )
    assert [e["id"] for e in window["episodes"]] == ["e3"]
    posted = ok(alpha.post(f"{API}/episodes/reminisce", json={"embedding": [0.0, 1.0, 0.0, 0.0], "limit": 1}))
    assert [e["id"] for e in posted["episodes"]] == ["e3"]
    err(alpha.get(f"{API}/episodes/reminisce", params={"limit": 0}), 400, "INVALID_INPUT")


def test_consolidate_beliefs_and_stream(rest_server, alpha: httpx.Client, beta: httpx.Client) -> None:
    with (
        httpx.Client(base_url=rest_server.http_url, timeout=httpx.Timeout(10.0, read=30.0)) as sc,
        sc.stream("GET", f"{API}/stream/consolidation", headers={"X-Memory-Space": "alpha"}) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith(": subscribed")
        report = ok(alpha.post(f"{API}/consolidate", json={"min_cluster": 2}))
        frame: dict[str, str] = {}
        for line in lines:
            if line.startswith(("event:", "id:", "data:")):
                name, _, value = line.partition(": ")
                frame[name.rstrip(":")] = value
            if line == "" and "data" in frame:
                break
    assert frame["event"] == "consolidation"
    assert json.loads(frame["data"])["memory_space_id"] == "alpha"
    assert report["clusters"] >= 1 and report["episodes_considered"] == 4
    belief = report["beliefs"][0]
    assert {c["episode_id"] for c in belief["citations"]} == {"e0", "e1", "e2"}
    again = ok(alpha.post(f"{API}/consolidate"))  # no body at all is fine
    assert again["run_id"] == report["run_id"], "deterministic for the same input"
    page = ok(alpha.get(f"{API}/consolidations"))
    assert [b["id"] for b in page["beliefs"]] == [belief["id"]]
    one = ok(alpha.get(f"{API}/consolidations/{belief['id']}"))
    assert one["id"] == belief["id"] and one["citations"]
    err(alpha.get(f"{API}/consolidations/belief-nope"), 404, "BELIEF_NOT_FOUND")
    err(beta.get(f"{API}/consolidations/{belief['id']}"), 404, "BELIEF_NOT_FOUND")
    assert ok(beta.get(f"{API}/consolidations"))["beliefs"] == []
    err(alpha.post(f"{API}/consolidate", json={"min_cluster": 1}), 400, "INVALID_INPUT")
    assert ok(alpha.get(f"{API}/memories/e0"))["consolidation_state"] == "consolidated"


def test_consolidation_id_is_named_as_grpc_names_it(rest_server, alpha: httpx.Client) -> None:
    """REST says ``consolidation_id`` (gRPC's ConsolidationRun field) and keeps ``run_id`` beside it."""
    report = ok(alpha.post(f"{API}/consolidate"))
    assert report["consolidation_id"] == report["run_id"] and report["beliefs"]
    for b in report["beliefs"] + ok(alpha.get(f"{API}/consolidations"))["beliefs"]:
        assert b["consolidation_id"] == b["run_id"] == report["run_id"]
    with GrpcClient(rest_server.grpc_target, space="alpha") as g:
        run = g.consolidate()
    assert run.consolidation_id == report["consolidation_id"]


def test_complete_with_attribution(alpha: httpx.Client) -> None:
    body = ok(alpha.post(f"{API}/complete", json={"what": "coffee with Ada", "where_location": "cafe"}))
    fields = {f["field"]: f for f in body["best"]["fields"]}
    assert fields["what"]["source"] == "given"
    assert fields["when"]["source"] in ("recalled", "reconstructed") and fields["when"]["from_memory_ids"]
    assert body["best"]["source_memory_ids"]
    assert body["best"]["confidence"]["category"]
    weak = err(alpha.post(f"{API}/complete", json={}), 422, "CUE_TOO_WEAK")
    assert "what" in weak["message"]


def test_introspect(alpha: httpx.Client, beta: httpx.Client) -> None:
    stats = ok(alpha.get(f"{API}/system/introspect"))
    assert stats["memory_space_id"] == "alpha" and stats["memories"] == 4 and stats["dimension"] == 4
    assert stats["associations"] >= 1 and stats["healthy"] is True
    assert ok(beta.get(f"{API}/system/introspect"))["memories"] == 0
