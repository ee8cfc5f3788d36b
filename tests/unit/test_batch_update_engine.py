"""Batch and update inside the engine, where commits and orderings can be observed directly.

* A batch is ONE commit of the space's writer (``SpaceStore.commits``), even when it is larger
  than ``group_commit_max_batch`` and other writes are queued around it.
* A group op that fails after its first write is rolled back to its savepoint: nothing of it
  stays, the rest of the group commits.
* An update is an in-place UPDATE: the rowid, and so the associations, survive; the full-text
  row follows the new text.
* A vector computed by the background embedder for the old text must not land after an update
  changed the text (the LSN check), and the row stays pending until its new vector is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.core.embedded import embed_text
from engram.core.models import AssociateInput, MemoryInput, MemoryPatch
from engram.errors import EngramError, MemoryExists
from engram.service import EngramService
from engram.testing.inprocess import make_service


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[EngramService]:
    s = make_service(tmp_path, ["home"], embedder="hash", group_commit_max_batch=16)
    yield s
    s.close()


def test_batch_is_one_commit_whatever_max_batch(tmp_path: Path) -> None:
    # embedder none: no background vector writes, so every commit counted here is the batch's
    svc = make_service(tmp_path, ["home"], group_commit_max_batch=16)
    space = svc.space("home")
    store = space.store
    assert store is not None
    space.remember(MemoryInput(content="before"))
    commits, ops = store.commits, store.ops_committed
    items: list[MemoryInput | EngramError] = [MemoryInput(id=f"b{i}", content=f"item {i}")
                                              for i in range(1000)]
    items[500] = MemoryInput(id="b3", content="duplicate")
    queued = space.submit_remember_batch(items)
    results: list[Any] = []
    for entry in queued:
        assert not isinstance(entry, EngramError)
        fut, build = entry
        try:
            results.append(build(fut.result(30)))
        except MemoryExists as exc:
            results.append(exc)
    assert store.commits == commits + 1, "1,000 items > group_commit_max_batch = 16, still one commit"
    assert store.ops_committed == ops + 1000
    assert isinstance(results[500], MemoryExists)
    lsns = [r.lsn for r in results if not isinstance(r, EngramError)]
    assert len(lsns) == 999 and lsns == sorted(lsns) and len(set(lsns)) == 999
    assert space.count() == 1000
    svc.close()


def test_group_op_failing_after_a_write_leaves_nothing(svc: EngramService) -> None:
    store = svc.space("home").store
    assert store is not None

    def ok(key: str) -> Any:
        def op(conn: sqlite3.Connection, lsn: int) -> str:
            conn.execute("INSERT INTO meta(key, value) VALUES (?, 'x')", (key,))
            return key
        return op

    def half(conn: sqlite3.Connection, lsn: int) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('half', 'x')")
        raise RuntimeError("fails after its first write")

    commits = store.commits
    futs = store.submit_group([ok("g1"), half, ok("g2")], savepoint=False)  # a wrong promise: redone
    assert futs[0].result(10)[0] == "g1" and futs[2].result(10)[0] == "g2"
    with pytest.raises(RuntimeError):
        futs[1].result(10)
    keys = {r[0] for r in store.reader().execute("SELECT key FROM meta")}
    assert {"g1", "g2"} <= keys and "half" not in keys
    assert store.commits == commits + 1


def test_update_keeps_rowid_associations_and_fts(svc: EngramService) -> None:
    space = svc.space("home")
    space.remember(MemoryInput(id="a", content="lighthouse keeper logbook"))
    space.remember(MemoryInput(id="b", content="seagull feathers"))
    svc.cognition("home").associate(AssociateInput(source_id="a", target_id="b", strength=0.8))
    conn = space.store.reader()  # type: ignore[union-attr]
    rowid = conn.execute("SELECT rowid FROM memories WHERE id = 'a'").fetchone()[0]
    before = conn.execute("SELECT count(*) FROM associations WHERE source = ? OR target = ?",
                          (rowid, rowid)).fetchone()[0]
    assert before == 2
    done = space.update("a", patch=MemoryPatch(content="orchard apple harvest"))
    assert not done.created and done.memory.content == "orchard apple harvest"
    assert conn.execute("SELECT rowid FROM memories WHERE id = 'a'").fetchone()[0] == rowid
    assert conn.execute("SELECT count(*) FROM associations WHERE source = ? OR target = ?",
                        (rowid, rowid)).fetchone()[0] == before
    fts = {r[0] for r in conn.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'orchard'")}
    assert rowid in fts
    assert not list(conn.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'lighthouse'"))
    assert conn.execute("SELECT lsn FROM memories WHERE rowid = ?", (rowid,)).fetchone()[0] == done.lsn


def test_stale_background_vector_never_lands_on_new_text(svc: EngramService,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    space = svc.space("home")
    space.backfill = None  # this test drives embedding by hand, in a chosen order
    space.remember(MemoryInput(id="r1", content="penguins on antarctic ice"))
    assert space.embedding_backlog == 1
    assert space.embedders is not None
    embedder = space.embedders.get(space.embedder_spec)
    assert embedder is not None
    original = embedder.embed
    raced: list[bool] = []

    def racing(texts: list[str]) -> Any:
        out = original(texts)
        if not raced:  # the text changes while its old vector is being computed
            raced.append(True)
            space.update("r1", patch=MemoryPatch(content="volcanoes erupt basalt lava"))
        return out

    monkeypatch.setattr(embedder, "embed", racing)
    space.embed_pending(64)
    conn = space.store.reader()  # type: ignore[union-attr]
    assert conn.execute("SELECT embedding FROM memories WHERE id = 'r1'").fetchone()[0] is None
    assert space.embedding_backlog == 1, "still pending: its new text has no vector yet"
    space.embed_pending(64)
    stored = np.frombuffer(conn.execute("SELECT embedding FROM memories WHERE id = 'r1'").fetchone()[0],
                           dtype=np.float32)
    want = np.asarray(original([embed_text("volcanoes erupt basalt lava")])[0], dtype=np.float32)
    assert np.allclose(stored, want)
    assert space.embedding_backlog == 0 and space.wait_embedded(1.0) == 0
    rowid = conn.execute("SELECT rowid FROM memories WHERE id = 'r1'").fetchone()[0]
    ((key, score),) = space.vectors.search(want / np.linalg.norm(want), 1)
    assert key == rowid and score > 0.99
