"""Store operations on a real PostgreSQL: remember, get, list, delete, text search, the event log."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from engram.core.postgres import MemoryRow, PostgresStore
from engram.storage.eventlog import LAST_SEQ


def _space(store: PostgresStore, dim: int | None = 8) -> str:
    sid = f"s-{uuid.uuid4().hex[:12]}"
    assert store.create_space(sid, dimension=dim)
    return sid


def test_create_space_once_and_listed(store: PostgresStore) -> None:
    sid = _space(store)
    assert not store.create_space(sid, dimension=8)
    info = store.space(sid)
    assert info is not None and info.dimension == 8 and info.last_lsn == 0
    assert sid in store.list_spaces()
    assert store.delete_space(sid)
    assert store.space(sid) is None and sid not in store.list_spaces()
    assert not store.delete_space(sid)


def test_remember_get_list_delete(store: PostgresStore) -> None:
    sid = _space(store)
    vec = np.arange(8, dtype=np.float32) + 1
    row = MemoryRow(id="m1", content="Ann likes green tea", tags=["drink"], created_at=100.0,
                    metadata={"n": 3, "s": "x", "b": True, "z": None, "l": [1]}, what="tea party")
    assert store.remember(sid, row, vec) == 1
    got = store.get(sid, "m1")
    assert got is not None
    assert (got.content, got.tags, got.metadata, got.what, got.lsn) == (
        "Ann likes green tea", ["drink"], {"n": 3, "s": "x", "b": True, "z": None, "l": [1]}, "tea party", 1)
    stored = store.embedding(sid, "m1")
    assert stored is not None and np.allclose(stored, vec)
    with store.db.space(sid) as tx:
        meta = sorted(tx.execute("SELECT mkey, vtype, vnum, vtext FROM engram.memory_meta "
                                 "WHERE space_id = %(space)s").fetchall())
    assert meta == [("b", 1, 1.0, None), ("l", 4, None, None), ("n", 2, 3.0, None), ("s", 3, None, "x"),
                    ("z", 0, None, None)]
    for i in range(2, 6):
        store.remember(sid, MemoryRow(id=f"m{i}", content=f"note {i}", created_at=100.0 + i))
    page1 = store.list_memories(sid, limit=3)
    assert [m.id for m in page1] == ["m1", "m2", "m3"]
    page2 = store.list_memories(sid, after=page1[-1].created_lsn, limit=3)
    assert [m.id for m in page2] == ["m4", "m5"]
    assert store.delete(sid, "m1") == 6
    assert store.delete(sid, "m1") is None
    assert store.get(sid, "m1") is None and store.count(sid) == 4
    with store.db.space(sid) as tx:  # its metadata rows went with it
        assert tx.one("SELECT count(*) FROM engram.memory_meta WHERE space_id = %(space)s") == (0,)


def test_duplicate_id_fails_and_gives_its_lsn_back(store: PostgresStore) -> None:
    sid = _space(store)
    assert store.remember(sid, MemoryRow(id="a", content="one")) == 1
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.remember(sid, MemoryRow(id="a", content="again"))
    assert store.remember(sid, MemoryRow(id="b", content="two")) == 2
    assert [e.lsn for e in store.events_after(sid)] == [1, 2]


def test_text_search_stems_and_covers_episode_fields_and_tags(store: PostgresStore) -> None:
    sid, other = _space(store), _space(store)
    store.remember(sid, MemoryRow(id="cat", content="The cats were sleeping on the mat"))
    store.remember(sid, MemoryRow(id="trip", content="a trip", where_location="Lisbon harbour"))
    store.remember(sid, MemoryRow(id="tag", content="plain", tags=["astronomy"]))
    store.remember(other, MemoryRow(id="cat2", content="cat sleeps"))
    assert [i for i, _ in store.search_text(sid, "cat sleep")] == ["cat"]
    assert [i for i, _ in store.search_text(sid, "lisbon")] == ["trip"]
    assert [i for i, _ in store.search_text(sid, "astronomy")] == ["tag"]
    assert store.search_text(sid, "nothing-like-this") == []
    assert [i for i, _ in store.search_text(other, "cats")] == ["cat2"]


def test_events_after_a_position_in_order(store: PostgresStore) -> None:
    sid = _space(store)
    for i in range(5):
        store.remember(sid, MemoryRow(id=f"e{i}", content=f"event text {i}"))
    events = store.events_after(sid)
    assert [(e.lsn, e.seq, e.type) for e in events] == [(i, 0, "stored") for i in range(1, 6)]
    assert [e.lsn for e in store.events_after(sid, (2, LAST_SEQ))] == [3, 4, 5]
    assert [e.lsn for e in store.events_after(sid, (2, LAST_SEQ), limit=2)] == [3, 4]
    assert store.events_after(sid, (5, LAST_SEQ)) == []
    store.delete(sid, "e1")
    after = store.events_after(sid)
    assert (after[-1].lsn, after[-1].type, after[-1].data) == (
        6, "forgotten", {"memory_id": "e1", "mode": "delete"})
    assert "content" not in after[1].data and after[0].data["content"] == "event text 0"  # scrubbed
