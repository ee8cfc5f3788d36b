"""Expiry (core/expiry.py) on PostgreSQL: every read hides an expired memory before any sweep;
the sweep deletes in batches with one ``expired`` event each; a write reusing an expired id
takes the old memory first, as the sweep would."""

from __future__ import annotations

import numpy as np
import pytest

from engram.core.filters import parse
from engram.core.models import from_epoch
from engram.core.postgres import MemoryRow, PostgresStore
from engram.errors import MemoryNotFound

from .conftest import Clock, new_space

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
