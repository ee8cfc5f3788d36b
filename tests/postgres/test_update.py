"""PUT and PATCH (core/update.py) and forgetting by suppress or delete, on a real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from engram.core.filters import parse
from engram.core.postgres import MemoryRow, PostgresStore
from engram.errors import InvalidInput, MemoryNotFound

from .conftest import new_space

V = np.array([1, 0, 0, 0], dtype=np.float32)
W = np.array([0, 1, 0, 0], dtype=np.float32)


def test_put_replaces_in_place_keeping_associations_and_creation(store: PostgresStore) -> None:
    sid = new_space(store)
    store.remember(sid, MemoryRow(id="a", content="old text", tags=["t"], metadata={"n": 1}, created_at=5.0,
                                  access_count=3), V)
    store.remember(sid, MemoryRow(id="b", content="other"), W)
    store.associate(sid, "a", "b", 0.5)
    store.forget(sid, "a", "suppress")
    done = store.put(sid, MemoryRow(id="a", content="new text", metadata={"n": 2}, confidence=0.4))
    assert (done.created, done.lsn) == (False, 5)
    row = store.get(sid, "a")
    assert row is not None
    assert (row.content, row.tags, row.metadata, row.confidence, row.suppressed, row.lsn) == (
        "new text", [], {"n": 2}, 0.4, False, 5)
    assert (row.created_at, row.access_count) == (5.0, 3)  # the row was updated, not re-inserted
    assert store.embedding(sid, "a") is None  # PUT without a vector drops the old one
    assert [(e.source_id, e.target_id) for e in store.edges_of(sid, ["a"])] == [("a", "b")]
    assert [m.id for m in store.list_memories(sid, filter=parse({"n": 2}))] == ["a"]
    assert store.list_memories(sid, filter=parse({"n": 1})) == []  # the typed metadata followed
    ev = store.events_after(sid)[-1]
    assert (ev.lsn, ev.type, ev.data["replaced"], ev.data["content"]) == (5, "updated", True, "new text")
    assert [i for i, _ in store.search_text(sid, "new")] == ["a"]


def test_put_of_a_missing_memory_creates_it(store: PostgresStore) -> None:
    sid = new_space(store)
    done = store.put(sid, MemoryRow(id="fresh", content="made by put"), V)
    assert (done.created, done.lsn) == (True, 1)
    assert store.events_after(sid)[-1].type == "stored"
    emb = store.embedding(sid, "fresh")
    assert emb is not None and np.allclose(emb, V)


def test_patch_changes_only_the_given_fields(store: PostgresStore) -> None:
    sid = new_space(store)
    store.remember(sid, MemoryRow(id="p", content="keep me", tags=["x"], metadata={"k": "v"}), V)
    store.forget(sid, "p", "suppress")
    done = store.patch(sid, "p", {"confidence": 0.25, "tags": ["y"]})
    assert not done.created and done.lsn == 3
    row = store.get(sid, "p")
    assert row is not None
    assert (row.content, row.tags, row.metadata, row.confidence, row.suppressed) == (
        "keep me", ["y"], {"k": "v"}, 0.25, True)  # PATCH leaves a suppressed memory suppressed
    emb = store.embedding(sid, "p")
    assert emb is not None and np.allclose(emb, V)  # no embedder here: the client's vector stays
    store.patch(sid, "p", {"content": "changed"}, W)
    emb = store.embedding(sid, "p")
    assert emb is not None and np.allclose(emb, W)
    ev = store.events_after(sid)[-1]
    assert (ev.type, ev.data["fields"], ev.data["replaced"]) == ("updated", ["content"], False)


def test_patch_refusals(store: PostgresStore) -> None:
    sid = new_space(store)
    with pytest.raises(MemoryNotFound):
        store.patch(sid, "nobody", {"content": "x"})
    store.remember(sid, MemoryRow(id="t", content="text only"))
    with pytest.raises(InvalidInput):
        store.patch(sid, "t", {"content": ""})  # neither content nor a vector would be left
    with pytest.raises(InvalidInput):
        store.patch(sid, "t", {"created_at": 1.0})
    assert store.space(sid).last_lsn == 1  # type: ignore[union-attr]  # refused updates used no LSN


def test_forget_suppress_hides_from_recall_and_list_but_keeps_edges(store: PostgresStore) -> None:
    sid = new_space(store)
    store.remember(sid, MemoryRow(id="s", content="hide me"), V)
    store.remember(sid, MemoryRow(id="o", content="other"), W)
    store.associate(sid, "s", "o", 0.3, bidirectional=True)
    assert store.forget(sid, "s", "suppress") == (4, 0)
    assert [i for i, _ in store.recall(sid, V, k=5)] == ["o"]
    assert store.search_text(sid, "hide") == []
    assert [m.id for m in store.list_memories(sid)] == ["o"]
    assert {m.id for m in store.list_memories(sid, include_suppressed=True)} == {"s", "o"}
    assert len(store.edges_of(sid, ["s"])) == 2
    assert store.events_after(sid)[-1].data == {"memory_id": "s", "mode": "suppress"}
    assert store.forget(sid, "s", "delete") == (5, 2)  # deleting counts and cascades the edges
    assert store.edges_of(sid, ["o"]) == [] and store.get(sid, "s") is None
    assert store.forget(sid, "s", "delete") is None
    with pytest.raises(InvalidInput):
        store.forget(sid, "o", "vaporize")


def test_forget_matching_one_write(store: PostgresStore) -> None:
    sid = new_space(store)
    for i in range(6):
        user = "ann" if i % 2 else "bob"
        store.remember(sid, MemoryRow(id=f"m{i}", content=f"text {i}", metadata={"user": user}))
    lsn, ids = store.forget_matching(sid, parse({"user": "ann"}), "suppress")
    assert (lsn, ids) == (7, ["m1", "m3", "m5"])
    assert store.forget_matching(sid, parse({"user": "ann"}), "suppress") == (0, [])  # none left to hide
    assert store.space(sid).last_lsn == 7  # type: ignore[union-attr]  # nothing done: no LSN used
    lsn, ids = store.forget_matching(sid, parse({"user": {"$in": ["ann", "bob"]}}), "delete")
    assert (lsn, ids) == (8, [f"m{i}" for i in range(6)])  # delete takes suppressed ones too
    assert store.count(sid) == 0
    events = [e for e in store.events_after(sid) if e.lsn == 8]
    assert [e.seq for e in events] == list(range(6)) and {e.data["mode"] for e in events} == {"delete"}
    assert all("content" not in e.data for e in store.events_after(sid))  # the erased text left the log
