"""Engram servers serving spaces from PostgreSQL (SPEC §13; issue 17, milestone 3).

Two real ``engram start --backend postgres`` processes on free ports share one database (a fresh
one per module, on the session's PostgreSQL): a write acknowledged by one is read and recalled
through the other, spaces created or deleted through one are seen so by the other, streams on
one deliver the other's writes in LSN order and resume from a cursor, a space's data is never
visible through another space's requests on either server, and start-up refusals exit 2.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from engram.core.postgres import migrate
from engram.testing.clients import ApiError, RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import APP, PgCluster, fresh_database, pg_servers

DIM = 4


@pytest.fixture(scope="module")
def dsn(pg: PgCluster) -> str:
    return fresh_database(pg, "srv")


@pytest.fixture(scope="module")
def servers(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    with pg_servers(dsn, tmp_path_factory) as pair:
        yield pair


def new_space(srv: EngramProcess, dim: int | None = DIM) -> str:
    sid = f"s-{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {"id": sid}
    if dim is not None:
        body["dimension"] = dim
    r = httpx.post(srv.http_url + "/api/v1/spaces", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return sid


def vec(i: int) -> list[float]:
    v = [0.05] * DIM
    v[i % DIM] = 1.0
    return v


def test_a_write_on_one_server_is_read_and_recalled_on_the_other(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        r1 = on_a.remember(content="the heron stands in the reeds", embedding=vec(0), tags=["bird"],
                           metadata={"kind": "bird", "n": 1})
        r2 = on_a.remember(content="the kettle is on the stove", embedding=vec(1), metadata={"kind": "home"})
        assert (r1["lsn"], r2["lsn"]) == (1, 2)
        got = on_b.get(r1["memory_id"])
        assert got["content"] == "the heron stands in the reeds"
        assert got["metadata"] == {"kind": "bird", "n": 1}
        by_vector = on_b.recall(embedding=vec(1), max_results=1)
        assert [i["memory"]["id"] for i in by_vector["results"]] == [r2["memory_id"]]
        by_text = on_b.recall(query="heron reeds")
        assert [i["memory"]["id"] for i in by_text["results"]] == [r1["memory_id"]]
        hybrid = on_b.recall(query="kettle", embedding=vec(1), mode="hybrid")
        assert hybrid["results"][0]["memory"]["id"] == r2["memory_id"]
        filtered = on_b.recall(embedding=vec(1), filter={"kind": "bird"})
        assert [i["memory"]["id"] for i in filtered["results"]] == [r1["memory_id"]]
        # PATCH on B, read on A; forget on A, gone on B
        on_b.call("PATCH", f"/api/v1/memories/{r2['memory_id']}", json={"content": "the kettle boiled"})
        assert on_a.get(r2["memory_id"])["content"] == "the kettle boiled"
        on_a.forget(r2["memory_id"], mode="delete")
        with pytest.raises(ApiError) as gone:
            on_b.get(r2["memory_id"])
        assert gone.value.status == 404


def test_memory_operations_over_rest(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        batch = on_a.call_obj("POST", "/api/v1/memories/batch", json={"memories": [
            {"content": f"batch item {i}", "embedding": vec(i), "metadata": {"i": i}} for i in range(5)
        ] + [{"content": "bad", "embedding": [1.0, 2.0]}]})
        assert batch["stored"] == 5 and len(batch["results"]) == 6
        put = on_b.call("PUT", "/api/v1/memories/fixed-id", json={"content": "put by b", "embedding": vec(2)})
        assert put["created"] is True
        ep = on_a.experience(content="walked to the harbour", when="2026-01-02T10:00:00Z", what="walk",
                             who=["ann"], embedding=vec(3))
        assert on_b.get(ep["memory_id"])["who"] == ["ann"]
        listed = on_b.list_all(limit=3)
        assert {m["id"] for m in listed} >= {"fixed-id", ep["memory_id"]} and len(listed) == 7
        assoc = on_b.associate("fixed-id", ep["memory_id"], 0.7)
        assert assoc["created"] is True
        edges = on_a.call_obj("GET", "/api/v1/associations", params={"memory_id": "fixed-id"})
        assert {(e["source_id"], e["target_id"]) for e in edges["associations"]} == {
            ("fixed-id", ep["memory_id"]), (ep["memory_id"], "fixed-id")}
        deleted = on_a.call_obj("POST", "/api/v1/memories/delete", json={"filter": {"i": {"$lt": 2}},
                                                                          "mode": "delete"})
        assert deleted["count"] == 2
        assert len(on_b.list_all()) == 5


def test_a_space_created_on_one_server_is_seen_on_the_other_and_deleted_everywhere(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    listed = httpx.get(b.http_url + "/api/v1/spaces", params={"limit": 1000}, timeout=30).json()
    assert sid in {s["id"] for s in listed["spaces"]}
    with RestSpaceClient(b.http_url, sid) as on_b:
        on_b.remember(content="kept until the space goes", embedding=vec(0))
    assert httpx.get(a.http_url + f"/api/v1/spaces/{sid}", timeout=30).json()["memory_count"] == 1
    r = httpx.delete(b.http_url + f"/api/v1/spaces/{sid}", timeout=30)
    assert r.status_code == 200, r.text
    for srv in (a, b):
        gone = httpx.post(srv.http_url + "/api/v1/memories/recall", headers={"X-Memory-Space": sid},
                          json={"embedding": vec(0)}, timeout=30)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "MEMORY_SPACE_NOT_FOUND"


def _collect(client: RestSpaceClient, want: int, out: list[dict[str, Any]], opened: threading.Event,
             **params: Any) -> None:
    for frame in client.sse(on_open=opened.set, **params):
        if frame.get("event") in ("stored", "forgotten", "updated"):
            out.append(frame)
            if len(out) >= want:
                return


def test_a_stream_on_one_server_gets_the_other_servers_writes_in_order_and_resumes(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    events: list[dict[str, Any]] = []
    opened = threading.Event()
    with RestSpaceClient(b.http_url, sid) as on_b, RestSpaceClient(a.http_url, sid) as on_a:
        reader = threading.Thread(target=_collect, args=(on_b, 6, events, opened), daemon=True)
        reader.start()
        assert opened.wait(30)
        ids = [on_a.remember(content=f"event {i}", embedding=vec(i))["memory_id"] for i in range(5)]
        on_b.forget(ids[0], mode="suppress")  # a write on B itself comes in the same order
        reader.join(30)
        assert not reader.is_alive(), f"got only {len(events)} events"
        lsns = [e["data"]["lsn"] for e in events]
        assert lsns == [1, 2, 3, 4, 5, 6]
        assert [e["data"]["data"]["memory_id"] for e in events[:5]] == ids
        assert events[5]["event"] == "forgotten"
        # resume on A after the second event: the rest, no gap, no duplicate
        resumed: list[dict[str, Any]] = []
        more = threading.Event()
        again = threading.Thread(target=_collect, args=(RestSpaceClient(a.http_url, sid), 4, resumed, more),
                                 kwargs={"since_lsn": 2}, daemon=True)
        again.start()
        again.join(30)  # a stream that never delivers fails here, not at the suite's timeout
        assert [e["data"]["lsn"] for e in resumed] == [3, 4, 5, 6]


def test_grpc_subscribe_on_one_server_gets_the_other_servers_writes(
        servers: tuple[EngramProcess, ...]) -> None:
    import grpc

    from engram.api.grpc.gen import memory_pb2 as pb
    from engram.api.grpc.gen import service_pb2 as spb
    from engram.api.grpc.gen import service_pb2_grpc as spb_grpc

    a, b = servers
    sid = new_space(a)
    with grpc.insecure_channel(b.grpc_target) as channel:
        stub = spb_grpc.EngramServiceStub(channel)
        call = stub.Stream(spb.StreamRequest(memory_space_id=sid, event_types=[pb.EVENT_TYPE_STORED]),
                           timeout=60)
        call.initial_metadata()  # sent once the subscription exists: later events arrive
        with RestSpaceClient(a.http_url, sid) as on_a:
            ids = [on_a.remember(content=f"grpc event {i}", embedding=vec(i))["memory_id"] for i in range(3)]
        got: list[tuple[int, str]] = []
        for msg in call:
            if msg.WhichOneof("kind") == "event":
                got.append((msg.event.lsn, msg.event.memory_id))
                if len(got) == 3:
                    break
        call.cancel()
        assert got == [(i + 1, ids[i]) for i in range(3)]


def test_a_spaces_data_is_never_visible_from_another_spaces_requests(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    mine, other = new_space(a), new_space(b)
    with RestSpaceClient(a.http_url, mine) as in_mine:
        secret = in_mine.remember(content="the vault code is 4711", embedding=vec(0), metadata={"k": "v"})
    for srv in (a, b):
        with RestSpaceClient(srv.http_url, other) as in_other:
            assert in_other.recall(embedding=vec(0))["results"] == []
            assert in_other.recall(query="vault code")["results"] == []
            assert in_other.recall(filter={"k": "v"})["results"] == []
            assert in_other.list_all() == []
            with pytest.raises(ApiError) as not_there:
                in_other.get(secret["memory_id"])
            assert not_there.value.status == 404
            with pytest.raises(ApiError):
                in_other.forget(secret["memory_id"])
    with RestSpaceClient(b.http_url, mine) as still:
        assert still.get(secret["memory_id"])["content"] == "the vault code is 4711"


def _start_exit(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    penv = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    penv.update(env)
    return subprocess.run([sys.executable, "-m", "engram", "start", "--backend", "postgres", "--data-dir",
                           str(tmp_path / "d"), "--http-port", "0", "--grpc-port", "0"],
                          env=penv, capture_output=True, text=True, timeout=60)


def test_refusals_exit_2_with_a_clear_message(pg: PgCluster, tmp_path: Path) -> None:
    no_dsn = _start_exit(tmp_path, {})
    assert no_dsn.returncode == 2 and "postgres_dsn" in no_dsn.stderr
    with psycopg.connect(pg.superuser, autocommit=True) as su:
        su.execute("ALTER ROLE engram_app PASSWORD 'hunter2-secret'")
    from psycopg.conninfo import make_conninfo

    wrong = make_conninfo(pg.app, password="wrong-hunter2", host="127.0.0.1", port="1")  # nothing listens
    unreachable = _start_exit(tmp_path, {"ENGRAM_POSTGRES_DSN": wrong})
    assert unreachable.returncode == 2 and "cannot connect to PostgreSQL" in unreachable.stderr
    assert "wrong-hunter2" not in unreachable.stderr + unreachable.stdout
    owner = pg.new_database(f"future_{uuid.uuid4().hex[:6]}")
    with psycopg.connect(owner, autocommit=True) as conn:
        migrate(conn, app_role=APP)
        conn.execute("INSERT INTO engram.schema_version (version, name) VALUES (9999, 'from the future')")
    newer = _start_exit(tmp_path, {"ENGRAM_POSTGRES_DSN": owner})
    assert newer.returncode == 2 and "schema version 9999" in newer.stderr


def test_grpc_unary_calls_share_the_database_across_servers(servers: tuple[EngramProcess, ...]) -> None:
    from engram.testing.clients import GrpcSpaceClient

    a, b = servers
    sid = new_space(a)
    with GrpcSpaceClient(a.grpc_target, sid) as on_a, GrpcSpaceClient(b.grpc_target, sid) as on_b:
        first = on_a.remember(content="the lighthouse keeper counts ships", embedding=vec(2))["receipt"]
        second = on_b.remember(content="the baker opens at dawn", embedding=vec(3))["receipt"]
        assert (int(first["lsn"]), int(second["lsn"])) == (1, 2)
        got = on_b.get(first["memory_id"])["memory"]
        assert got["content"] == "the lighthouse keeper counts ships"
        recalled = on_a.recall(embedding=vec(3), max_results=1)["result"]
        assert [r["memory"]["id"] for r in recalled["results"]] == [second["memory_id"]]
        assert {m["id"] for m in on_a.list_all()} == {first["memory_id"], second["memory_id"]}
        on_a.forget(second["memory_id"])
        assert GrpcSpaceClient.status_of(lambda: on_b.get(second["memory_id"])) == "NOT_FOUND"
        assert on_b.introspect()["memory_space_id"] == sid  # cognition answers on PostgreSQL too
        streamed = on_b.streaming_recall([{"embedding": vec(2), "max_results": 1}])
        assert [r["recall_result"]["results"][0]["memory"]["id"] for r in streamed] == [first["memory_id"]]


def test_health_and_space_description_on_postgres(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(b.http_url, sid) as on_b:
        on_b.remember(content="described", embedding=vec(1))
        health = on_b.system_health()
        assert health["status"] == "ok" and health["spaces_total"] >= 2  # default + this one
        summary = httpx.get(b.http_url + "/health", timeout=30)
        assert summary.status_code == 200 and summary.json()["status"] == "ok"
        described = on_b.describe()
        assert (described["memory_count"], described["last_lsn"], described["dimension"]) == (1, 1, DIM)


@pytest.mark.parametrize(("method", "path", "want"), [
    ("POST", "/api/v1/spaces/{sid}/restore", 409),  # the space exists (tests/postgres/test_backup.py)
    ("POST", "/api/v1/spaces/{sid}/reembed", 202),
    ("GET", "/api/v1/spaces/{sid}/reembed", 200),
    ("GET", "/api/v1/episodes/reminisce?topic=x", 200),
    ("GET", "/api/v1/system/introspect", 200),
    ("GET", "/api/v1/consolidations/b-1", 404),
    ("GET", "/api/v1/consolidations", 200),
    ("GET", "/api/v1/memories/recall?query=nothing", 200),
    ("GET", "/metrics", 200),
    ("GET", "/console", 200),
    ("GET", "/api/v1/keys/self", 200),
])
def test_every_other_route_answers_without_a_500(servers: tuple[EngramProcess, ...], method: str, path: str,
                                                  want: int) -> None:
    a, _ = servers
    sid = new_space(a)
    body = b"not a backup" if "restore" in path else None
    r = httpx.request(method, a.http_url + path.format(sid=sid), headers={"X-Memory-Space": sid},
                      content=body, timeout=30)
    assert r.status_code == want, r.text[:300]
    if want == 501:
        assert "PostgreSQL" in r.json()["error"]["message"]


def test_a_space_without_a_dimension_takes_the_embedders(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a, dim=None)
    with RestSpaceClient(b.http_url, sid) as on_b:
        on_b.remember(content="no vector here", metadata={"k": 1})
        # hash embedder: text is embedded (384-d), so a 4-d cue is the wrong length, and says so
        with pytest.raises(ApiError) as wrong:
            on_b.recall(embedding=vec(0))
        assert wrong.value.status == 400
        assert [r["memory"]["content"] for r in on_b.recall(filter={"k": 1})["results"]] == ["no vector here"]
        assert on_b.recall(query="vector")["results"][0]["memory"]["content"] == "no vector here"
