"""REST memories and episodes against a real server: store, recall, list, get, forget, isolation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

API = "/api/v1"


@pytest.fixture(scope="module")
def alpha(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, headers={"X-Memory-Space": "alpha"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def beta(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, headers={"X-Memory-Space": "beta"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def vectors(rest_server) -> Iterator[httpx.Client]:
    """A space that takes its vectors from the client (embedder none): any dimension, set by the first."""
    with httpx.Client(base_url=rest_server.http_url, headers={"X-Memory-Space": "vectors"}, timeout=30) as c:
        resp = c.post(f"{API}/spaces", json={"id": "vectors", "embedder": {"provider": "none"}})
        assert resp.status_code in (200, 201), resp.text
        yield c


def remember(client: httpx.Client, **memory: Any) -> dict[str, Any]:
    resp = client.post(f"{API}/memories/remember", json=memory)
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_remember_returns_durable_receipt(alpha: httpx.Client) -> None:
    first = remember(alpha, content="the espresso machine is on the third floor", confidence=0.9)
    second = remember(alpha, content="the printer is jammed again")
    for r in (first, second):
        assert set(r) >= {
            "memory_id",
            "storage_confidence",
            "consolidation_state",
            "observed_at",
            "stored_at",
            "auto_links",
            "lsn",
        }
        assert r["consolidation_state"] == "recent"
        assert r["durability"] == "fsync"
        assert r["memory_space_id"] == "alpha"
        assert set(r["storage_confidence"]) == {"value", "category", "reasoning"}
    assert first["storage_confidence"]["value"] == 0.9
    assert second["lsn"] > first["lsn"]


def test_get_returns_the_memory(vectors: httpx.Client) -> None:
    alpha = vectors
    remember(
        alpha,
        id="coffee-1",
        content="espresso on three",
        tags=["office"],
        metadata={"src": "chat"},
        embedding=[0.1, 0.2, 0.3, 0.4],
        memory_type="procedural",
        confidence=0.8,
    )
    mem = alpha.get(f"{API}/memories/coffee-1").json()
    assert mem["id"] == "coffee-1" and mem["content"] == "espresso on three"
    assert mem["tags"] == ["office"] and mem["metadata"] == {"src": "chat"}
    assert mem["memory_type"] == "procedural" and mem["confidence"] == 0.8
    assert mem["embedding"] == pytest.approx([0.1, 0.2, 0.3, 0.4], rel=1e-6)
    slim = alpha.get(f"{API}/memories/coffee-1", params={"include_embedding": "false"}).json()
    assert slim["embedding"] is None


def test_get_unknown_memory_is_404(alpha: httpx.Client) -> None:
    resp = alpha.get(f"{API}/memories/never-stored")
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "MEMORY_NOT_FOUND" and "never-stored" in err["message"]


def test_duplicate_id_is_rejected(alpha: httpx.Client) -> None:
    remember(alpha, id="dup-1", content="first")
    resp = alpha.post(f"{API}/memories/remember", json={"id": "dup-1", "content": "second"})
    assert resp.status_code == 409
    err = resp.json()["error"]
    assert err["code"] == "MEMORY_EXISTS" and "already exists" in err["message"]
    assert "PUT" in err["suggestion"]  # says how to change the stored one instead
    assert alpha.get(f"{API}/memories/dup-1").json()["content"] == "first"


def test_memory_ids_with_slashes_and_spaces(alpha: httpx.Client) -> None:
    remember(alpha, id="notes/2026 05/a", content="nested id")
    resp = alpha.get(f"{API}/memories/notes%2F2026%2005%2Fa")
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == "notes/2026 05/a"


def test_episode_round_trip(alpha: httpx.Client) -> None:
    when = "2026-05-01T09:30:00Z"
    resp = alpha.post(
        f"{API}/episodes/remember",
        json={
            "id": "ep-1",
            "when": when,
            "what": "met Ada at the espresso machine",
            "where_location": "third floor",
            "who": ["Ada"],
            "why": "coffee",
            "how": "by chance",
            "emotional_valence": 0.6,
            "importance": 0.7,
        },
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["consolidation_state"] == "recent"
    mem = alpha.get(f"{API}/memories/ep-1").json()
    assert mem["memory_type"] == "episodic"
    assert mem["when"].startswith("2026-05-01T09:30:00")
    assert mem["who"] == ["Ada"] and mem["where_location"] == "third floor" and mem["importance"] == 0.7
    assert mem["content"] == "met Ada at the espresso machine"
    assert mem["consolidation_state"] == "recent"


def test_episode_requires_when(alpha: httpx.Client) -> None:
    resp = alpha.post(f"{API}/episodes/remember", json={"what": "no time"})
    assert resp.status_code == 400
    assert "body.when" in resp.json()["error"]["message"]


def test_recall_by_text_get_and_post(alpha: httpx.Client) -> None:
    remember(alpha, id="rc-1", content="the violin lesson is on thursday")
    got = alpha.get(f"{API}/memories/recall", params={"query": "violin", "max_results": 5})
    assert got.status_code == 200, got.text
    body = got.json()
    assert set(body) >= {"memories", "recall_confidence", "confidence_interval", "metadata"}
    assert set(body["memories"]) == {"vivid", "associated", "reconstructed"}
    ids = [i["memory"]["id"] for b in body["memories"].values() for i in b]
    assert "rc-1" in ids
    assert body["recall_confidence"]["category"] in ("none", "low", "medium", "high", "certain")
    ci = body["confidence_interval"]
    assert ci["lower"] <= ci["point"] <= ci["upper"]
    posted = alpha.post(f"{API}/memories/recall", json={"query": "violin", "max_results": 5}).json()
    assert "rc-1" in [i["memory"]["id"] for b in posted["memories"].values() for i in b]


def test_recall_by_embedding(vectors: httpx.Client) -> None:
    alpha = vectors
    remember(alpha, id="vec-a", content="", embedding=[1.0, 0.0, 0.0, 0.0])
    remember(alpha, id="vec-b", content="", embedding=[0.0, 1.0, 0.0, 0.0])
    body = alpha.post(
        f"{API}/memories/recall", json={"embedding": [0.99, 0.05, 0.0, 0.0], "max_results": 2}
    ).json()
    items = [i for b in body["memories"].values() for i in b]
    assert items and items[0]["memory"]["id"] == "vec-a"
    assert items[0]["confidence"]["category"]


def test_recall_by_context(alpha: httpx.Client) -> None:
    start = (datetime(2026, 5, 1, tzinfo=UTC) - timedelta(hours=1)).isoformat()
    end = (datetime(2026, 5, 1, tzinfo=UTC) + timedelta(hours=12)).isoformat()
    body = alpha.get(
        f"{API}/memories/recall", params={"time_start": start, "time_end": end, "participants": "Ada"}
    ).json()
    assert "ep-1" in [i["memory"]["id"] for b in body["memories"].values() for i in b]


def test_recall_needs_a_cue(alpha: httpx.Client) -> None:
    resp = alpha.get(f"{API}/memories/recall")
    assert resp.status_code == 400
    assert "cue needs at least one" in resp.json()["error"]["message"]


def test_same_id_in_two_spaces_is_isolated(alpha: httpx.Client, beta: httpx.Client) -> None:
    remember(alpha, id="shared", content="alpha's secret pomegranate")
    remember(beta, id="shared", content="beta's quiet tangerine")
    assert alpha.get(f"{API}/memories/shared").json()["content"] == "alpha's secret pomegranate"
    assert beta.get(f"{API}/memories/shared").json()["content"] == "beta's quiet tangerine"
    found = beta.get(f"{API}/memories/recall", params={"query": "pomegranate"}).json()
    assert [i for b in found["memories"].values() for i in b] == []
    assert all(
        m["id"] != "rc-1" for m in beta.get(f"{API}/memories", params={"limit": 1000}).json()["memories"]
    )


def test_list_paginates(beta: httpx.Client) -> None:
    for i in range(7):
        remember(beta, id=f"page-{i}", content=f"page {i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = beta.get(f"{API}/memories", params=params).json()
        assert len(page["memories"]) <= 3
        assert page["memory_space_id"] == "beta"
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [f"page-{i}" for i in range(7)] == [s for s in seen if s.startswith("page-")]
    assert len(seen) == len(set(seen)) == page["total"]
    assert beta.get(f"{API}/memories", params={"cursor": "garbage"}).status_code == 400
    proc = beta.get(f"{API}/memories", params={"memory_type": "episodic"}).json()
    assert proc["memories"] == []


def test_forget_suppress_then_delete(alpha: httpx.Client) -> None:
    remember(alpha, id="fg-1", content="the quokka lives in the atrium")
    r = alpha.delete(f"{API}/memories/fg-1")  # default mode: suppress
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "suppress" and r.json()["lsn"] > 0
    found = alpha.get(f"{API}/memories/recall", params={"query": "quokka"}).json()
    assert "fg-1" not in [i["memory"]["id"] for b in found["memories"].values() for i in b]
    listed = [m["id"] for m in alpha.get(f"{API}/memories", params={"limit": 1000}).json()["memories"]]
    assert "fg-1" not in listed
    with_sup = alpha.get(f"{API}/memories", params={"limit": 1000, "include_suppressed": "true"}).json()
    assert "fg-1" in [m["id"] for m in with_sup["memories"]]
    assert alpha.get(f"{API}/memories/fg-1").json()["suppressed"] is True
    d = alpha.delete(f"{API}/memories/fg-1", params={"mode": "delete"})
    assert d.status_code == 200 and d.json()["mode"] == "delete"
    assert alpha.get(f"{API}/memories/fg-1").status_code == 404
    assert alpha.delete(f"{API}/memories/fg-1").json()["error"]["code"] == "MEMORY_NOT_FOUND"
    bad = alpha.delete(f"{API}/memories/fg-1", params={"mode": "shred"})
    assert bad.status_code == 400 and "suppress" in bad.json()["error"]["message"]
