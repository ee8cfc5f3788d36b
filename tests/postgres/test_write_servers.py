"""The write path's SQLite semantics through two real Engram servers on one PostgreSQL (issue 17):
quotas (``max_memories``, ``max_space_bytes``) hold when both servers write one space at once,
answered 403 ``QUOTA_EXCEEDED`` / gRPC ``RESOURCE_EXHAUSTED`` as on SQLite; a batch lists in batch
order, and the cursor and ``total`` of a list are SQLite's; ``auto_link`` answers its links."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from engram.testing.clients import ApiError, GrpcSpaceClient, RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers
from .test_server import vec

MAX_MEMORIES = 12
MAX_BYTES = 60_000


@pytest.fixture(scope="module")
def servers(pg: PgCluster,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    dsn = fresh_database(pg, "wr")
    limits = {"max_memories": MAX_MEMORIES, "max_space_bytes": MAX_BYTES}
    with pg_servers(dsn, tmp_path_factory, **limits) as pair:
        yield pair


def new_space(srv: EngramProcess) -> str:
    sid = f"w-{uuid.uuid4().hex[:10]}"
    r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid, "dimension": 4}, timeout=30)
    assert r.status_code == 201, r.text
    return sid


def test_two_servers_racing_store_exactly_max_memories(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    answers: list[tuple[int, str]] = []
    gate = threading.Barrier(8)

    def writer(n: int) -> None:
        srv = (a, b)[n % 2]
        with RestSpaceClient(srv.http_url, sid) as c:
            gate.wait(timeout=30)
            for i in range(5):
                r = c.request("POST", "/api/v1/memories/remember", json={"content": f"w{n} {i}",
                                                                         "embedding": vec(i)})
                answers.append((r.status_code, r.json().get("error", {}).get("code", "")))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(set(answers)) == [(201, ""), (403, "QUOTA_EXCEEDED")], answers
    assert sum(1 for s, _ in answers if s == 201) == MAX_MEMORIES
    for srv in (a, b):
        with RestSpaceClient(srv.http_url, sid) as c:
            page = c.call_obj("GET", "/api/v1/memories", params={"limit": 100})
            assert page["total"] == len(page["memories"]) == MAX_MEMORIES
            lsns = sorted(m["lsn"] for m in page["memories"])
            assert lsns == list(range(1, MAX_MEMORIES + 1))  # refused writes left no LSN gap
    with GrpcSpaceClient(b.grpc_target, sid) as g:
        assert GrpcSpaceClient.status_of(lambda: g.remember(content="one more")) == "RESOURCE_EXHAUSTED"


def test_a_batch_past_the_quota_is_refused_whole(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        on_a.call_obj("POST", "/api/v1/memories/batch", json={"memories": [
            {"content": f"first {i}", "embedding": vec(i)} for i in range(MAX_MEMORIES - 2)]})
        r = on_b.request("POST", "/api/v1/memories/batch", json={"memories": [
            {"content": f"second {i}", "embedding": vec(i)} for i in range(3)]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "QUOTA_EXCEEDED", r.text
        assert set(r.json()["error"]) >= {"code", "message", "suggestion"}
        assert on_a.call_obj("GET", "/api/v1/memories", params={"limit": 1})["total"] == MAX_MEMORIES - 2
        put = on_b.call("PUT", "/api/v1/memories/by-put", json={"content": "fits", "embedding": vec(1)})
        assert put["created"] is True  # one more fits


def test_max_space_bytes_across_servers(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    noise = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(9_000))  # ~27 KB, hardly compressible
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        on_a.remember(content=noise, embedding=vec(0))
        on_b.remember(content=noise[::-1], embedding=vec(1))
        with pytest.raises(ApiError) as refused:
            on_a.remember(content=noise[1:], embedding=vec(2))
        assert (refused.value.status, refused.value.code) == (403, "QUOTA_EXCEEDED")
        assert refused.value.body["error"]["details"]["max_space_bytes"] == MAX_BYTES
        assert on_b.call_obj("GET", "/api/v1/memories", params={"limit": 1})["total"] == 2


def test_a_batch_lists_in_batch_order_and_the_cursor_and_total_are_sqlites(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    ids = ["k-9", "k-1", "k-5", "k-3", "k-7"]
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        on_a.call_obj("POST", "/api/v1/memories/batch", json={"memories": [
            {"id": mid, "content": mid, "embedding": vec(i), "metadata": {"odd": i % 2 == 1}}
            for i, mid in enumerate(ids)]})
        walked: list[str] = []
        cursor: str | None = None
        while True:
            page = on_b.call_obj("GET", "/api/v1/memories", params={"limit": 2, **({"cursor": cursor}
                                                                                    if cursor else {})})
            walked += [m["id"] for m in page["memories"]]
            if walked == ids[:2]:
                on_a.forget("k-9", mode="delete")  # between pages: nothing skipped, nothing twice
                assert page["total"] == 5
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert walked == ids and page["total"] == 4
        filtered = on_b.call_obj("GET", "/api/v1/memories", params={"limit": 1, "filter": '{"odd": true}'})
        assert [m["id"] for m in filtered["memories"]] == ["k-1"] and filtered["total"] == 2
        episodic = on_b.call_obj("GET", "/api/v1/memories", params={"memory_type": "episodic"})
        assert episodic["memories"] == [] and episodic["total"] == 0
        for bad in ("x1", "-3", "1.5", "١٢", " 7"):
            r = on_b.request("GET", "/api/v1/memories", params={"cursor": bad})
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT", (bad, r.text)
        beyond = on_b.call_obj("GET", "/api/v1/memories", params={"cursor": "9" * 32})  # past bigint: empty
        assert beyond["memories"] == [] and beyond["next_cursor"] is None


def test_auto_link_on_remember_answers_its_links(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        east = on_a.remember(content="east", embedding=[1.0, 0.0, 0.0, 0.0])["memory_id"]
        on_a.remember(content="north", embedding=[0.0, 1.0, 0.0, 0.0])
        got: dict[str, Any] = on_b.remember(content="east too", embedding=[1.0, 0.1, 0.0, 0.0],
                                            auto_link=True)
        assert [link["target_id"] for link in got["auto_links"]] == [east]
        assert got["auto_links"][0]["strength"] > 0.99
        edges = on_a.call_obj("GET", "/api/v1/associations", params={"memory_id": got["memory_id"]})
        assert {(e["source_id"], e["target_id"], e["kind"]) for e in edges["associations"]} == {
            (got["memory_id"], east, "auto"), (east, got["memory_id"], "auto")}


def lifetime(memory: dict[str, Any]) -> float:
    return (datetime.fromisoformat(memory["expires_at"])
            - datetime.fromisoformat(memory["created_at"])).total_seconds()


def test_a_space_default_ttl_set_on_one_server_applies_on_the_other(
        servers: tuple[EngramProcess, ...]) -> None:
    """SPEC §11 ``default_ttl_seconds`` per space, on PostgreSQL: kept with the space (created in
    the same transaction), applied to memories stored without an expiry on any server, shown in
    the descriptor; a bad value is a 400 envelope; a space deleted and created again under its id
    on one server is served with its new default by the other."""
    a, b = servers
    sid = f"w-{uuid.uuid4().hex[:10]}"
    spaces_a, space_b = a.http_url + "/api/v1/spaces", b.http_url + f"/api/v1/spaces/{sid}"
    for bad in (0, -5, "soon", 1e11):
        r = httpx.post(spaces_a, json={"id": sid, "default_ttl_seconds": bad}, timeout=30)
        assert r.status_code in (400, 422) and "error" in r.json(), r.text
        assert httpx.get(space_b, timeout=30).status_code == 404  # nothing made
    r = httpx.post(spaces_a, json={"id": sid, "dimension": 4, "default_ttl_seconds": 3600}, timeout=30)
    assert r.status_code == 201, r.text
    assert httpx.get(space_b, timeout=30).json()["default_ttl_seconds"] == 3600
    with RestSpaceClient(b.http_url, sid) as on_b:
        kept = on_b.remember(content="by default", embedding=vec(0))
        own = on_b.remember(content="its own ttl", embedding=vec(1), ttl_seconds=60)
        assert abs(lifetime(on_b.get(kept["memory_id"])) - 3600) < 1
        assert abs(lifetime(on_b.get(own["memory_id"])) - 60) < 1
    # deleted on A and made again without a default: B (which holds a handle) serves the new one
    assert httpx.delete(spaces_a + f"/{sid}", timeout=30).status_code == 200
    assert httpx.post(spaces_a, json={"id": sid, "dimension": 4}, timeout=30).status_code == 201
    with RestSpaceClient(b.http_url, sid) as on_b:
        again = on_b.remember(content="no default now", embedding=vec(2))
        assert on_b.get(again["memory_id"])["expires_at"] is None
