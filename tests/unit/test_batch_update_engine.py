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


# -- full text of a batch, indexed once after its INSERTs (SpaceStore.defer_fts) --------------------
def _fts_rowids(conn: sqlite3.Connection, word: str) -> set[int]:
    rows = conn.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?", (word,))
    return {int(r[0]) for r in rows}


def test_batch_full_text_matches_row_by_row_indexing(svc: EngramService) -> None:
    """A batch's memories (and episodes' fields) get exactly the full-text entries the insert
    trigger gives a memory stored alone, and the deferral leaves nothing behind."""
    from datetime import UTC, datetime

    from engram.core.models import EpisodeInput

    space = svc.space("home")
    store = space.store
    assert store is not None
    alone = space.remember(MemoryInput(id="alone", content="kestrel above the quarry"))
    items: list[MemoryInput | EngramError] = [
        MemoryInput(id=f"k{i}", content=f"kestrel number {i}", tags=["bird"]) for i in range(5)]
    items.append(EpisodeInput(id="ep", when=datetime(2026, 1, 2, tzinfo=UTC), what="saw a kestrel",
                              where_location="windy moor"))
    for entry in space.submit_remember_batch(items):
        assert not isinstance(entry, EngramError)
        entry[1](entry[0].result(30))
    conn = sqlite3.connect(store.path)
    try:
        rowids = {str(r[1]): int(r[0]) for r in conn.execute("SELECT rowid, id FROM memories")}
        want = {rowids[k] for k in ("alone", "k0", "k1", "k2", "k3", "k4", "ep")}
        assert _fts_rowids(conn, "kestrel") == want
        assert _fts_rowids(conn, "moor") == {rowids["ep"]}
        assert conn.execute("SELECT count(*) FROM fts_deferred").fetchone()[0] == 0
        # FTS5's own check of its index structures
        conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    finally:
        conn.close()
    assert alone.lsn > 0
    space.remember(MemoryInput(id="after", content="kestrel again"))  # the trigger indexes singles again
    conn = sqlite3.connect(store.path)
    try:
        after = conn.execute("SELECT rowid FROM memories WHERE id = 'after'").fetchone()[0]
        assert after in _fts_rowids(conn, "kestrel")
    finally:
        conn.close()


def test_group_bracket_failure_fails_the_whole_commit(svc: EngramService) -> None:
    """A bracket op that fails (here the closing one) fails every op of the commit: nothing stays."""
    space = svc.space("home")
    store = space.store
    assert store is not None

    def write(key: str) -> Any:
        def op(conn: sqlite3.Connection, lsn: int) -> None:
            conn.execute("INSERT INTO meta(key, value) VALUES (?, 'x')", (key,))
        return op

    def broken(conn: sqlite3.Connection, lsn: int) -> None:
        raise sqlite3.OperationalError("the closing op failed")

    last = store.last_lsn
    futures = store.submit_group([write("g1"), write("g2")], savepoint=False, bracket=(write("g0"), broken))
    for fut in futures:
        with pytest.raises(EngramError):
            fut.result(30)
    assert store.last_lsn == last
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("SELECT count(*) FROM meta WHERE key IN ('g0', 'g1', 'g2')").fetchone()[0] == 0
    finally:
        conn.close()
    space.remember(MemoryInput(content="the writer goes on"))  # the store still works


def test_open_installs_deferrable_trigger_and_repairs_a_stray_deferral(tmp_path: Path) -> None:
    """An older database gets the trigger a batch can defer; a deferral row found on open (rows
    committed without full text) makes the index be rebuilt from the rows."""
    s = make_service(tmp_path, ["old"], embedder="none")
    s.space("old").remember(MemoryInput(id="a", content="heron by the weir"))
    db = s.space("old").store.path  # type: ignore[union-attr]
    s.close()
    conn = sqlite3.connect(db)
    conn.executescript("""
        DROP TRIGGER memories_fts_ai;
        CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts(rowid, content, tags) VALUES (new.rowid, new.content, new.tags);
        END;
        INSERT INTO fts_deferred(since) VALUES (0);
        INSERT INTO memories_fts(memories_fts) VALUES ('delete-all');
    """)
    conn.close()
    s = make_service(tmp_path, ["old"], embedder="none")
    try:
        s.space("old").remember(MemoryInput(id="b", content="heron on the bank"))
        conn = sqlite3.connect(db)
        try:
            sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'memories_fts_ai'").fetchone()[0]
            assert "fts_deferred" in sql
            assert conn.execute("SELECT count(*) FROM fts_deferred").fetchone()[0] == 0
            assert len(_fts_rowids(conn, "heron")) == 2, "the stray deferral's rows were re-indexed"
        finally:
            conn.close()
    finally:
        s.close()


def test_concurrent_remembers_in_one_commit_are_all_full_text_indexed(tmp_path: Path) -> None:
    """Remembers that share a group commit (a run of inserts) get their full text after the run:
    every one is found by its words, and a later PATCH of one of them re-indexes it correctly."""
    s = make_service(tmp_path, ["home"], embedder="none", group_commit_max_batch=64)
    try:
        space = s.space("home")
        store = space.store
        assert store is not None
        commits = store.commits
        queued = [space.submit_remember(MemoryInput(id=f"w{i}", content=f"otter {i} swims"))
                  for i in range(64)]
        for fut, build in queued:
            build(fut.result(30))
        assert store.commits - commits < 64, "the remembers shared commits (runs of inserts)"
        space.update("w3", patch=MemoryPatch(content="badger digs"))
        conn = sqlite3.connect(store.path)
        try:
            ids = {int(r[0]): str(r[1]) for r in conn.execute("SELECT rowid, id FROM memories")}
            assert {ids[r] for r in _fts_rowids(conn, "otter")} == {f"w{i}" for i in range(64)} - {"w3"}
            assert {ids[r] for r in _fts_rowids(conn, "badger")} == {"w3"}
            assert conn.execute("SELECT count(*) FROM fts_deferred").fetchone()[0] == 0
            conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
        finally:
            conn.close()
    finally:
        s.close()


def test_batch_ids_are_uuid4_hex_and_distinct(tmp_path: Path) -> None:
    """New ids come from ``IdPool`` (``os.urandom`` in bulk); each is what ``uuid.uuid4().hex``
    gives, all differ (across refills too), and an item's own id is kept."""
    import uuid

    from engram.core.space import IdPool

    pool = IdPool()
    ids = pool.take(1000) + [pool.take(1)[0] for _ in range(700)] + pool.take(300)
    assert len(set(ids)) == 2000
    for mid in ids:
        assert len(mid) == 32 and uuid.UUID(hex=mid).version == 4 and uuid.UUID(hex=mid).hex == mid
        assert mid[16] in "89ab", "RFC 4122 variant"
    svc = make_service(tmp_path, ["home"])
    space = svc.space("home")
    items: list[MemoryInput | EngramError] = [MemoryInput(content=f"n{i}") for i in range(300)]
    items[7] = MemoryInput(id="mine", content="own id")
    got = [build(fut.result(30)).memory_id for fut, build in space.submit_remember_batch(items)]  # type: ignore[misc]
    assert got[7] == "mine" and len(set(got)) == 300
    assert all(uuid.UUID(hex=m).version == 4 for i, m in enumerate(got) if i != 7)
    assert {space.get(m).content for m in got} == {f"n{i}" for i in range(300) if i != 7} | {"own id"}
    alone = [space.remember(MemoryInput(content=f"alone {i}")).memory_id for i in range(300)]
    assert len(set(alone) | set(got)) == 600 and all(uuid.UUID(hex=m).version == 4 for m in alone)
    svc.close()
