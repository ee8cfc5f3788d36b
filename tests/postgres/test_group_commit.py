"""Group commit on PostgreSQL (core/postgres/group.py): concurrent writes of one space on one server
share one transaction; each writer gets its own result or its own error, only after the commit.

The store-level tests build a group deterministically: a first operation holds the space's lane
(its transaction open) until the writers under test have queued behind it; released, they commit
as the next group. ``GroupCommitter.stats`` counts the commits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from engram.core.filters import parse
from engram.core.models import AssociateInput, DeleteByFilter, ForgetMode, MemoryInput
from engram.core.postgres import MemoryRow, PostgresDatabase, PostgresStore
from engram.core.postgres.connection import SpaceTx
from engram.core.postgres.listener import WriteListener
from engram.core.postgres.store import Write, WritePolicy
from engram.errors import MemoryNotFound, QuotaExceeded
from engram.service_pg import PostgresService
from engram.settings import Settings
from engram.testing.clients import RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, new_space, pg_servers, start_pg_server
from .test_server import new_space as served_space
from .test_server import vec


@pytest.fixture
def grouping(db: PostgresDatabase) -> PostgresStore:
    return PostgresStore(db, vector_index=False, group_max=64)


class Held:
    """Holds ``sid``'s lane: a group of one operation that waits, transaction open, for release."""

    def __init__(self, store: PostgresStore, sid: str) -> None:
        self.store, self.sid = store, sid
        self.entered, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()
        assert self.entered.wait(30)

    def _hold(self) -> None:
        def op(tx: SpaceTx) -> tuple[None, int]:
            self.entered.set()
            self.release.wait(60)
            return None, 0

        self.store.grouped(self.sid, op)

    def queued(self) -> int:
        lane = self.store.groups._lanes.get(self.sid)
        return 0 if lane is None else len(lane.pending)

    def wait_queued(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while self.queued() < n:
            assert time.monotonic() < deadline, f"only {self.queued()} of {n} writes queued"
            time.sleep(0.005)

    def done(self) -> None:
        self.release.set()
        self.thread.join(30)


def run_all(calls: list[Callable[[], Any]], held: Held, *, in_order: bool = False) -> list[Any]:
    """Each call in its own thread, queued behind ``held``; then released: results or errors.
    ``in_order``: each call has queued before the next starts, so the group runs them in this order."""
    out: list[Any] = [None] * len(calls)

    def one(i: int) -> None:
        try:
            out[i] = calls[i]()
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(calls))]
    for i, t in enumerate(threads):
        t.start()
        if in_order:
            held.wait_queued(i + 1)
    held.wait_queued(len(calls))
    held.done()
    for t in threads:
        t.join(60)
    return out


def run_in_order(calls: list[Callable[[], Any]], held: Held) -> list[Any]:
    return run_all(calls, held, in_order=True)


def test_queued_writes_commit_as_one_group_and_a_failing_one_fails_alone(grouping: PostgresStore) -> None:
    store = grouping
    sid = new_space(store, dim=None)
    first = store.remember(sid, MemoryRow(id="dup", content="already here"))
    assert first == 1
    before, retried = store.groups.stats.groups, store.groups.stats.retried
    held = Held(store, sid)
    good = [lambda i=i: store.remember(sid, MemoryRow(id=f"g{i}", content=f"good {i}")) for i in range(6)]
    calls: list[Callable[[], Any]] = [
        *good[:2],
        lambda: store.remember(sid, MemoryRow(id="dup", content="same id again")),  # UniqueViolation
        *good[2:4],
        lambda: store.write_many(sid, [Write(MemoryRow(id="over", content="past the quota"))],
                                 WritePolicy(max_memories=1)),  # QuotaExceeded
        lambda: store.patch(sid, "nobody", {"content": "x"}),  # MemoryNotFound
        lambda: store.forget(sid, "nobody"),  # nothing to forget: None
        *good[4:],
    ]
    out = run_all(calls, held)
    assert isinstance(out[2], psycopg.errors.UniqueViolation), out[2]
    assert isinstance(out[5], QuotaExceeded), out[5]
    assert isinstance(out[6], MemoryNotFound), out[6]
    assert out[7] is None
    lsns = [o for i, o in enumerate(out) if i not in (2, 5, 6, 7)]
    assert all(isinstance(x, int) for x in lsns), lsns
    assert sorted(lsns) == list(range(2, 8))  # the failures gave their LSNs back: no gap
    # the holder's group, then ONE commit for all ten queued writes (a second pass, with savepoints)
    assert store.groups.stats.groups - before == 2
    assert store.groups.stats.retried - retried == 1
    assert store.groups.stats.largest >= len(calls)
    info = store.space(sid)
    assert info is not None and info.last_lsn == 7 and info.memory_rows == 7
    assert {m.id for m in store.list_memories(sid)} == {"dup", *(f"g{i}" for i in range(6))}
    assert store.get(sid, "dup").content == "already here"  # type: ignore[union-attr]
    events = store.events_after(sid)
    assert [(e.lsn, e.type) for e in events] == [(n, "stored") for n in range(1, 8)]
    by_lsn = {e.lsn: e.data["memory_id"] for e in events}
    for i in range(6):
        assert by_lsn[lsns[i]] == f"g{i}"  # each writer was told its own memory's LSN


def test_a_group_sends_one_notify_with_its_last_lsn(pg: PgCluster, grouping: PostgresStore) -> None:
    store = grouping
    sid = new_space(store, dim=None)
    with WriteListener(pg.app) as listener:
        held = Held(store, sid)  # its operation writes nothing: no LSN, no NOTIFY
        out = run_all([lambda i=i: store.remember(sid, MemoryRow(id=f"n{i}", content=f"n {i}"))
                       for i in range(5)], held)
        assert sorted(out) == [1, 2, 3, 4, 5]
        store.remember(sid, MemoryRow(id="alone", content="after the group"))
        woken = [w for w in listener.wait(timeout=10, stop_after=2) if w[0] == sid]
    assert woken == [(sid, 5), (sid, 6)]  # one per commit, the group's last LSN


def test_quota_stays_exact_inside_a_group(grouping: PostgresStore) -> None:
    store = grouping
    sid = new_space(store, dim=None)
    policy = WritePolicy(max_memories=5)
    held = Held(store, sid)
    calls = [lambda i=i: store.write_many(sid, [Write(MemoryRow(id=f"q{i}", content=f"item {i}"))], policy)
             for i in range(12)]
    out = run_all(calls, held)
    stored = [o for o in out if isinstance(o, list)]
    refused = [o for o in out if isinstance(o, QuotaExceeded)]
    assert len(stored) == 5 and len(refused) == 7, out
    assert store.count(sid) == 5
    assert sorted(o[0].lsn for o in stored) == [1, 2, 3, 4, 5]


def test_group_max_bounds_each_group(db: PostgresDatabase) -> None:
    store = PostgresStore(db, vector_index=False, group_max=3)
    sid = new_space(store, dim=None)
    held = Held(store, sid)
    calls = [lambda i=i: store.remember(sid, MemoryRow(id=f"m{i}", content=f"m {i}")) for i in range(7)]
    out = run_all(calls, held)
    assert sorted(out) == list(range(1, 8))
    assert store.groups.stats.largest == 3
    assert store.groups.stats.groups == 1 + 3  # the holder, then 3 + 3 + 1
    assert store.groups.stats.ops == 1 + 7
    assert store.groups.stats.retried == 0  # nothing failed: no group ran twice


def test_a_lone_writer_commits_alone_at_once(grouping: PostgresStore) -> None:
    store = grouping
    sid = new_space(store, dim=None)
    before = (store.groups.stats.groups, store.groups.stats.ops)
    for i in range(5):
        assert store.remember(sid, MemoryRow(id=f"s{i}", content="alone")) == i + 1
    assert (store.groups.stats.groups - before[0], store.groups.stats.ops - before[1]) == (5, 5)


def test_delete_by_filter_and_associate_join_a_group_in_queue_order(pg: PgCluster,
                                                                     grouping: PostgresStore) -> None:
    """Delete by filter and associate are group-commit operations: queued with writes they commit
    in the same transaction, see the writes queued before them, take their LSNs in queue order,
    and one that fails (or matches nothing) fails alone, its LSN given back."""
    store = grouping
    sid = new_space(store, dim=None)
    store.remember_many(sid, [(MemoryRow(id=f"old{i}", content="old", metadata={"g": 1}), None)
                              for i in range(3)])  # LSN 1..3
    before, retried = store.groups.stats.groups, store.groups.stats.retried
    with WriteListener(pg.app) as listener:
        held = Held(store, sid)
        out = run_in_order([
            lambda: store.remember(sid, MemoryRow(id="a", content="a", metadata={"g": 2})),  # 4
            lambda: store.remember(sid, MemoryRow(id="b", content="b")),  # 5
            lambda: store.associate(sid, "a", "b", 0.5),  # 6: sees a and b, queued before it
            lambda: store.associate(sid, "a", "nobody", 0.5),  # MemoryNotFound: fails alone
            lambda: store.forget_matching(sid, parse({"g": 9}), "delete"),  # matches nothing
            lambda: store.forget_matching(sid, parse({"g": 2}), "delete"),  # 7: deletes a (and its edge)
            lambda: store.forget_matching(sid, parse({"g": 1}), "suppress"),  # 8: the three old ones
            lambda: store.remember(sid, MemoryRow(id="c", content="c")),  # 9
        ], held)
        woken = [w for w in listener.wait(timeout=10, stop_after=1) if w[0] == sid]
    assert out[0] == 4 and out[1] == 5
    assert out[2].lsn == 6 and out[2].created, out[2]
    assert isinstance(out[3], MemoryNotFound), out[3]
    assert out[4] == (0, [])
    assert out[5] == (7, ["a"])
    assert out[6] == (8, ["old0", "old1", "old2"])
    assert out[7] == 9
    assert store.groups.stats.groups - before == 2  # the holder's, then ONE for all eight
    assert store.groups.stats.retried - retried == 1  # the failures made it run again with savepoints
    assert woken == [(sid, 9)]  # one NOTIFY for the group, its last LSN
    info = store.space(sid)
    assert info is not None and info.last_lsn == 9
    events = [(e.lsn, e.type, e.data.get("memory_id")) for e in store.events_after(sid)]
    assert events[3:] == [(4, "stored", "a"), (5, "stored", "b"), (6, "association", None),
                          (7, "forgotten", "a"), (8, "forgotten", "old0"), (8, "forgotten", "old1"),
                          (8, "forgotten", "old2"), (9, "stored", "c")]
    assert store.edges_of(sid, ["b"]) == []  # deleting a took the edge made in the same group


def test_a_delete_queued_before_a_write_frees_its_quota_in_the_same_group(grouping: PostgresStore) -> None:
    store = grouping
    sid = new_space(store, dim=None)
    policy = WritePolicy(max_memories=3)
    store.write_many(sid, [Write(MemoryRow(id=f"m{i}", content="x", metadata={"k": i})) for i in range(3)],
                     policy)

    def add(mid: str) -> Callable[[], Any]:
        return lambda: store.write_many(sid, [Write(MemoryRow(id=mid, content=mid))], policy)

    held = Held(store, sid)
    out = run_in_order([add("over1"), lambda: store.forget_matching(sid, parse({"k": 0}), "delete"),
                        add("fits"), add("over2")], held)
    assert isinstance(out[0], QuotaExceeded), out[0]
    assert out[1] == (4, ["m0"])
    assert isinstance(out[2], list) and out[2][0].lsn == 5, out[2]
    assert isinstance(out[3], QuotaExceeded), out[3]
    assert store.count(sid) == 3
    assert {m.id for m in store.list_memories(sid)} == {"m1", "m2", "fits"}


def test_group_leaders_bounds_the_spaces_committing_at_once(db: PostgresDatabase) -> None:
    """With one leader slot, a write to another space waits (queued, no connection) while a
    group of the first space commits, then commits; without the bound it commits meanwhile."""
    for leaders, waits in ((1, True), (None, False)):
        store = PostgresStore(db, vector_index=False, group_leaders=leaders)
        first, other = new_space(store, dim=None), new_space(store, dim=None)
        held = Held(store, first)
        done = threading.Event()

        def write() -> None:
            store.remember(other, MemoryRow(id="x", content="another space"))  # noqa: B023
            done.set()  # noqa: B023

        t = threading.Thread(target=write, daemon=True)
        t.start()
        finished = done.wait(1.0 if waits else 30.0)  # held: it cannot finish; free: it does
        assert finished is not waits, (leaders, finished)
        held.done()
        t.join(30)
        assert done.is_set() and store.count(other) == 1


@pytest.fixture
def service(pg: PgCluster, tmp_path: Path) -> Iterator[PostgresService]:
    svc = PostgresService(Settings(backend="postgres", postgres_dsn=fresh_database(pg, "grpx"),
                                   data_dir=str(tmp_path / "data"), embedder="none",
                                   postgres_pool_size=4, postgres_group_max=40))
    yield svc
    svc.close()


def test_a_server_queues_more_writers_in_a_group_than_asyncios_default_threads(
        service: PostgresService) -> None:
    """The service's write threads (postgres_group_max + half the pool, not asyncio's default
    executor of min(32, cores + 4)): 30 concurrent remembers of one space all wait in its lane
    while a group commits, then commit as one group; reads run in threads of their own."""
    svc, writers = service, 30
    assert (svc.executors.read_threads, svc.executors.write_threads) == (4, 40 + 2)
    asyncio.run(svc.create_space("burst"))
    names: dict[str, str] = {}

    async def burst() -> list[Any]:
        names["read"] = await svc._db(lambda: threading.current_thread().name)
        names["write"] = await svc._write(lambda: threading.current_thread().name)
        return await asyncio.gather(*(svc.remember("burst", MemoryInput(content=f"w {i}"))
                                      for i in range(writers)), return_exceptions=True)

    before = svc.pg.groups.stats.groups
    held = Held(svc.pg, "burst")
    out: list[Any] = []
    runner = threading.Thread(target=lambda: out.extend(asyncio.run(burst())), daemon=True)
    runner.start()
    held.wait_queued(writers)  # with 6 threads only 6 would ever queue: this would time out
    held.done()
    runner.join(60)
    assert names["read"].startswith("engram-pg-db") and names["write"].startswith("engram-pg-write"), names
    assert sorted(r.lsn for r in out) == list(range(1, writers + 1)), out[:3]
    assert svc.pg.groups.stats.groups - before == 2  # the holder's, then ONE commit for the thirty
    assert svc.pg.groups.stats.largest == writers


def test_the_services_writes_go_through_group_commit(service: PostgresService) -> None:
    """Delete by filter and associate through the service: grouped writes (the metric counts them)."""
    svc = service

    async def run() -> tuple[Any, Any]:
        await svc.create_space("sss")
        await svc.remember("sss", MemoryInput(id="a", content="a", metadata={"k": 1}))
        await svc.remember("sss", MemoryInput(id="b", content="b"))
        ops = svc.pg.groups.stats.ops
        edge = await svc.associate("sss", AssociateInput(source_id="a", target_id="b", strength=0.4))
        gone = await svc.delete_memories("sss", DeleteByFilter(filter={"k": 1}, mode=ForgetMode.delete))
        assert svc.pg.groups.stats.ops - ops == 2
        return edge, gone

    edge, gone = asyncio.run(run())
    assert (edge.lsn, gone.lsn, gone.count) == (3, 4, 1)


def test_close_shuts_the_database_threads_down(pg: PgCluster, tmp_path: Path) -> None:
    svc = PostgresService(Settings(backend="postgres", postgres_dsn=fresh_database(pg, "grpc"),
                                   data_dir=str(tmp_path / "data"), embedder="none"))
    asyncio.run(svc.create_space("ccc"))
    asyncio.run(svc.remember("ccc", MemoryInput(content="x")))
    svc.close()
    for executor in (svc.executors.reads, svc.executors.writes):
        with pytest.raises(RuntimeError):
            executor.submit(lambda: None)
    assert not [t for t in threading.enumerate() if t.name.startswith(("engram-pg-db", "engram-pg-write"))]


@pytest.fixture
def victim(pg: PgCluster) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(pg.app, min_size=1, max_size=4)
    yield database
    database.close()


def test_a_group_whose_commit_fails_acknowledges_none_of_its_writes(victim: PostgresDatabase) -> None:
    """The group's connection dies mid-transaction: every writer of the group gets the error and
    nothing of the group is in the database (a write is acknowledged only after the commit)."""
    store = PostgresStore(victim, vector_index=False)
    sid = new_space(store, dim=None)
    held = Held(store, sid)

    def killer(tx: SpaceTx) -> tuple[None, int]:
        tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return None, 0

    calls: list[Callable[[], Any]] = [
        lambda: store.remember(sid, MemoryRow(id="a", content="before the failure")),
        lambda: store.grouped(sid, killer),
        lambda: store.remember(sid, MemoryRow(id="b", content="after the failure")),
    ]
    out = run_all(calls, held)
    assert all(isinstance(o, psycopg.Error) for o in out), out
    assert store.count(sid) == 0
    info = store.space(sid)
    assert info is not None and info.last_lsn == 0
    assert store.remember(sid, MemoryRow(id="c", content="next")) == 1


# ------------------------------------------------------------------ through real servers

BURST_WRITERS = 32
PER_WRITER = 3


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def burst(srv: EngramProcess, sid: str, writers: int, per_writer: int) -> list[tuple[int, dict[str, Any]]]:
    """``writers`` threads, each ``per_writer`` remembers to ``sid`` at once: (status, body) each."""
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    gate = threading.Barrier(writers)

    def writer(w: int) -> None:
        with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": sid}, timeout=60) as http:
            gate.wait(timeout=30)
            for i in range(per_writer):
                body = {"id": f"w{w}-{i}", "content": f"writer {w} item {i}", "embedding": vec(i)}
                r = http.post("/api/v1/memories/remember", json=body)
                with lock:
                    answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def test_a_burst_through_a_server_is_group_committed_and_streams_in_order(
        pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    n = BURST_WRITERS * PER_WRITER
    with pg_servers(fresh_database(pg, "grp"), tmp_path_factory) as (a, b):
        sid = served_space(a)
        seen: list[tuple[int, str]] = []
        opened = threading.Event()

        def watch() -> None:  # a stream on the OTHER server
            with RestSpaceClient(b.http_url, sid) as c:
                for frame in c.sse(on_open=opened.set):
                    if frame.get("event") == "stored":
                        seen.append((int(frame["data"]["lsn"]), frame["data"]["data"]["memory_id"]))
                        if len(seen) == n:
                            return

        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        assert opened.wait(30)
        with RestSpaceClient(a.http_url, None) as c:
            groups0 = metric(c.metrics(), "engram_pg_write_groups_total")
            writes0 = metric(c.metrics(), "engram_pg_grouped_writes_total")
        answers = burst(a, sid, BURST_WRITERS, PER_WRITER)
        assert [s for s, _ in answers] == [201] * n, [b for s, b in answers if s != 201][:3]
        told = {body["memory_id"]: int(body["lsn"]) for _, body in answers}
        assert sorted(told.values()) == list(range(1, n + 1))  # distinct, consecutive
        with RestSpaceClient(a.http_url, None) as c:
            text = c.metrics()
        groups = metric(text, "engram_pg_write_groups_total") - groups0
        writes = metric(text, "engram_pg_grouped_writes_total") - writes0
        assert writes == n
        assert groups < n, f"{groups:.0f} commits for {n} concurrent writes: nothing was grouped"
        with RestSpaceClient(b.http_url, sid) as c:
            stored = {m["id"]: m["lsn"] for m in c.list_all()}
        assert stored == told  # every write stored, with the LSN its writer was told
        reader.join(60)
        assert [lsn for lsn, _ in seen] == list(range(1, n + 1))  # the other server streams them in order
        assert all(told[mid] == lsn for lsn, mid in seen)


QUOTA = 10


def test_a_concurrent_burst_stores_exactly_max_memories(pg: PgCluster, tmp_path: Path) -> None:
    srv = start_pg_server(tmp_path / "srv", fresh_database(pg, "grpq"), max_memories=QUOTA)
    try:
        sid = served_space(srv)
        answers = burst(srv, sid, 16, 2)
        codes = sorted({(s, body.get("error", {}).get("code", "")) for s, body in answers})
        assert codes == [(201, ""), (403, "QUOTA_EXCEEDED")], codes
        lsns = sorted(int(body["lsn"]) for s, body in answers if s == 201)
        assert lsns == list(range(1, QUOTA + 1))  # refusals left no gap
        with RestSpaceClient(srv.http_url, sid) as c:
            assert len(c.list_all()) == QUOTA
    finally:
        srv.stop()
