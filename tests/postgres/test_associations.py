"""Explicit associations (cognition/associations.py) on PostgreSQL: create or strengthen, edges of
memories, and deletion cascading to edges."""

from __future__ import annotations

import pytest

from engram.core.models import strengthened
from engram.core.postgres import MemoryRow, PostgresStore
from engram.errors import InvalidInput, MemoryNotFound

from .conftest import new_space


def _three(store: PostgresStore) -> str:
    sid = new_space(store)
    store.remember_many(sid, [(MemoryRow(id=i, content=f"memory {i}"), None) for i in ("a", "b", "c")])
    return sid


def test_associate_creates_then_strengthens(store: PostgresStore) -> None:
    sid = _three(store)
    first = store.associate(sid, "a", "b", 0.4)
    assert (first.strength, first.created, first.lsn) == (0.4, True, 4)
    again = store.associate(sid, "a", "b", 0.5)
    assert again.created is False and again.lsn == 5
    assert again.strength == pytest.approx(strengthened(0.4, 0.5))  # 0.7: saturating, never above 1
    reverse = store.associate(sid, "b", "a", 0.2, bidirectional=True)
    assert reverse.created is True  # b->a is new, although a->b (the other direction) existed
    edges = store.edges_of(sid, ["a"])
    assert [(e.source_id, e.target_id) for e in edges] == [("a", "b"), ("b", "a")]  # strongest first
    assert edges[0].strength == pytest.approx(strengthened(0.7, 0.2)) and edges[0].lsn == 6
    assert edges[0].kind == "explicit"
    ev = store.events_after(sid)[-1]
    assert (ev.type, ev.lsn, ev.data["source_id"], ev.data["bidirectional"]) == ("association", 6, "b", True)


def test_associate_refusals(store: PostgresStore) -> None:
    sid = _three(store)
    with pytest.raises(InvalidInput):
        store.associate(sid, "a", "a", 0.5)
    with pytest.raises(MemoryNotFound):
        store.associate(sid, "a", "zzz", 0.5)
    store.forget(sid, "c", "suppress")
    with pytest.raises(MemoryNotFound, match="suppressed"):
        store.associate(sid, "a", "c", 0.5)
    assert store.space(sid).last_lsn == 4  # type: ignore[union-attr]  # refusals used no LSN


def test_edges_of_several_ids_and_deletion_cascades(store: PostgresStore) -> None:
    sid = _three(store)
    store.associate(sid, "a", "b", 0.9)
    store.associate(sid, "b", "c", 0.5)
    store.associate(sid, "c", "a", 0.1)
    edges = store.edges_of(sid, ["b", "missing"])
    assert [(e.source_id, e.target_id) for e in edges] == [("a", "b"), ("b", "c")]
    assert len(store.edges_of(sid, ["a", "b", "c"], limit=2)) == 2
    assert store.edges_of(sid, []) == []
    store.delete(sid, "b")
    assert [(e.source_id, e.target_id) for e in store.edges_of(sid, ["a", "b", "c"])] == [("c", "a")]
    with store.db.space(sid) as tx:
        assert tx.one("SELECT count(*) FROM engram.associations WHERE space_id = %(space)s") == (1,)
