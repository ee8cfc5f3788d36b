"""Expiry (core/expiry.py) on PostgreSQL: every read hides an expired memory before any sweep;
the sweep deletes in batches with one ``expired`` event each; a write reusing an expired id
takes the old memory first, as the sweep would."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from engram.core.filters import parse
from engram.core.models import from_epoch
from engram.core.postgres import MemoryRow, PostgresDatabase, PostgresStore
from engram.errors import MemoryNotFound
from engram.testing.clients import RestSpaceClient

from .conftest import Clock, PgCluster, fresh_database, new_space, pg_servers

V = np.array([1, 0, 0, 0], dtype=np.float32)


def test_every_read_hides_an_expired_memory_before_the_sweep(timed: PostgresStore, clock: Clock) -> None:
    sid = new_space(timed)
    at = clock.now + 60
    timed.remember(sid, MemoryRow(id="brief", content="short lived note", metadata={"k": 1},
                                  expires_at=at), V)
    timed.remember(sid, MemoryRow(id="lasting", content="lasting note", metadata={"k": 1}), V)
    timed.associate(sid, "brief", "lasting", 0.5)
    assert timed.get(sid, "brief") is not None and timed.count(sid) == 2
    clock.now = at  # expires_at is the first instant it is gone
    assert timed.get(sid, "brief") is None
    assert timed.embedding(sid, "brief") is None
    assert [m.id for m in timed.list_memories(sid, include_suppressed=True)] == ["lasting"]
    assert [m.id for m in timed.list_memories(sid, filter=parse({"k": 1}))] == ["lasting"]
    assert timed.count(sid) == 1
    assert [i for i, _ in timed.recall(sid, V, k=5)] == ["lasting"]
    assert [i for i, _ in timed.search_text(sid, "note")] == ["lasting"]
    assert timed.forget(sid, "brief", "delete") is None
    assert timed.forget_matching(sid, parse({"k": 1}), "suppress")[1] == ["lasting"]
    with pytest.raises(MemoryNotFound):
        timed.patch(sid, "brief", {"content": "x"})
    with pytest.raises(MemoryNotFound):
        timed.associate(sid, "lasting", "brief", 0.5)
    with timed.db.space(sid) as tx:  # still stored: only the sweep deletes
        assert tx.one("SELECT count(*) FROM engram.memories WHERE space_id = %(space)s") == (2,)


def test_sweep_deletes_in_batches_with_one_event_each(timed: PostgresStore, clock: Clock) -> None:
    sid = new_space(timed)
    t0 = clock.now
    timed.remember_many(sid, [(MemoryRow(id=f"x{i}", content=f"expiring {i}", expires_at=t0 + 10 + i), None)
                              for i in range(5)])
    timed.remember(sid, MemoryRow(id="keep", content="kept", expires_at=t0 + 1000))
    timed.associate(sid, "x0", "keep", 0.5)
    assert timed.sweep_expired(sid, batch=2) == 0 and timed.space(sid).last_lsn == 7  # type: ignore[union-attr]
    clock.now = t0 + 20
    assert timed.has_expired(sid)
    assert timed.sweep_expired(sid, batch=2) == 5
    events = [e for e in timed.events_after(sid) if e.type == "expired"]
    assert [(e.lsn, e.seq) for e in events] == [(8, 0), (8, 1), (9, 0), (9, 1), (10, 0)]  # 3 batches
    assert [e.data["memory_id"] for e in events] == [f"x{i}" for i in range(5)]  # soonest first
    assert events[0].data["expires_at"] == from_epoch(t0 + 10).isoformat()
    assert not timed.has_expired(sid) and timed.sweep_expired(sid) == 0
    assert timed.space(sid).last_lsn == 10  # type: ignore[union-attr]
    assert timed.edges_of(sid, ["keep"]) == []  # the edge went with x0
    assert all("content" not in e.data for e in timed.events_after(sid)
               if e.data.get("memory_id", "keep") != "keep")
    with timed.db.space(sid) as tx:
        assert tx.one("SELECT count(*) FROM engram.memories WHERE space_id = %(space)s") == (1,)


def test_a_write_reusing_an_expired_id_takes_it_first(timed: PostgresStore, clock: Clock) -> None:
    sid = new_space(timed)
    timed.remember(sid, MemoryRow(id="r", content="first life", expires_at=clock.now + 5))
    timed.remember(sid, MemoryRow(id="p", content="put target", expires_at=clock.now + 5))
    clock.now += 5
    assert timed.remember(sid, MemoryRow(id="r", content="second life")) == 3
    got = [(e.lsn, e.seq, e.type) for e in timed.events_after(sid) if e.lsn == 3]
    assert got == [(3, 0, "expired"), (3, 1, "stored")]
    assert timed.get(sid, "r").content == "second life"  # type: ignore[union-attr]
    done = timed.put(sid, MemoryRow(id="p", content="reborn"))
    assert done.created and [e.type for e in timed.events_after(sid) if e.lsn == done.lsn] == [
        "expired", "stored"]
    assert timed.events_after(sid)[0].data == {"memory_id": "r"}  # the first life's text was scrubbed


def _next_expiry(store: PostgresStore, sid: str) -> float | None:
    with store.db.space(sid) as tx:
        row = tx.one("SELECT next_expiry FROM engram.spaces WHERE space_id = %(space)s")
    return None if row is None or row[0] is None else float(row[0])


def test_next_expiry_is_lowered_by_every_write_and_settled_by_the_sweep(timed: PostgresStore,
                                                                        clock: Clock) -> None:
    sid = new_space(timed)
    t0 = clock.now
    timed.remember(sid, MemoryRow(id="late", content="late", expires_at=t0 + 500), V)
    assert _next_expiry(timed, sid) == t0 + 500
    timed.remember(sid, MemoryRow(id="plain", content="never expires"), V)
    assert _next_expiry(timed, sid) == t0 + 500
    timed.put(sid, MemoryRow(id="soon", content="put with a ttl", expires_at=t0 + 50), V)  # created by PUT
    assert _next_expiry(timed, sid) == t0 + 50
    timed.put(sid, MemoryRow(id="plain", content="replaced, now with a ttl", expires_at=t0 + 20), V)
    assert _next_expiry(timed, sid) == t0 + 20
    assert sid not in timed.due_spaces(10_000)
    clock.now = t0 + 60
    assert sid in timed.due_spaces(10_000)
    assert timed.sweep_due() >= 2
    assert timed.get(sid, "late") is not None and timed.get(sid, "soon") is None
    assert _next_expiry(timed, sid) == t0 + 500 and sid not in timed.due_spaces(10_000)
    clock.now = t0 + 600
    timed.sweep_due()
    assert _next_expiry(timed, sid) is None and timed.count(sid) == 0


def test_a_space_another_sweeper_holds_is_skipped_then_swept(timed: PostgresStore, clock: Clock) -> None:
    from engram.core.postgres.store import sweep_key

    sid = new_space(timed)
    t0 = clock.now
    timed.remember(sid, MemoryRow(id="brief", content="brief", expires_at=t0 + 5), V)
    clock.now = t0 + 10
    with timed.db.space(sid) as tx:  # another server sweeping this space
        assert tx.one("SELECT pg_try_advisory_xact_lock(%(key)s)", {"key": sweep_key(sid)}) == (True,)
        timed.sweep_due()
        assert timed.has_expired(sid)
    timed.sweep_due()
    assert not timed.has_expired(sid)
    assert [e.data["memory_id"] for e in timed.events_after(sid) if e.type == "expired"] == ["brief"]


def test_two_servers_sweep_a_space_neither_holds_once(pg: PgCluster,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """A space no server has opened (written here, straight to the database) is swept by the
    servers' maintenance all the same: each memory deleted once, one ``expired`` event each."""
    dsn = fresh_database(pg, "sweep")
    with PostgresDatabase(dsn, min_size=1, max_size=2) as db, \
            pg_servers(dsn, tmp_path_factory, expiry_sweep_interval_seconds=0.3) as (a, _b):
        store = PostgresStore(db, vector_index=False)
        sid, seen = f"untouched-{uuid.uuid4().hex[:8]}", f"recalled-{uuid.uuid4().hex[:8]}"
        soon = time.time() + 1.5
        for space in (sid, seen):
            assert store.create_space(space, dimension=4)
            store.remember_many(space, [(MemoryRow(id=f"x{i}", content=f"short lived {i}",
                                                   expires_at=soon), V) for i in range(30)])
            store.remember(space, MemoryRow(id="keep", content="short lived but kept"), V)
        while time.time() < soon:
            time.sleep(0.05)
        # expired, swept or not: never recalled (through a server, which now opens that space)
        cue = {"query": "short lived", "embedding": V.tolist(), "max_results": 50}
        with RestSpaceClient(a.http_url, seen) as client:
            assert [i["memory"]["id"] for i in client.recall(**cue)["results"]] == ["keep"]
        deadline = time.monotonic() + 20
        while store.space(sid).memory_rows > 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the expired memories were not swept"
            time.sleep(0.1)
        expired = [e.data["memory_id"] for e in store.events_after(sid) if e.type == "expired"]
        assert sorted(expired) == sorted(f"x{i}" for i in range(30))  # each once, by one server
        # The sweeper settles the space's next expiry in the transaction after its last delete.
        while _next_expiry(store, sid) is not None or sid in store.due_spaces():
            assert time.monotonic() < deadline, "the swept space's next expiry was not settled"
            time.sleep(0.1)
