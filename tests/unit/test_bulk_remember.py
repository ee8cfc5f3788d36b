"""Runs of plain remembers in one commit are written as multi-row INSERTs (storage.BulkRow).

What the merge must keep: each remember gets its own LSN, rowid and event, in submit order,
exactly as one by one; a row that fails (a duplicate id) fails alone while the rest of its
run lands; a row that must run whole (the first vector binds the space's dimension, auto
links) is not merged. Each test also checks, from the writer's statement trace, that the
merged statement really ran, so a test cannot pass by the one-by-one path alone.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.core.models import MemoryInput
from engram.core.space import MemorySpace
from engram.errors import MemoryExists
from engram.settings import load_settings

DIM = 8


def _space(tmp_path: Path) -> tuple[MemorySpace, list[str]]:
    """A space whose writer connection records the INSERTs into ``memories`` it runs."""
    settings = load_settings(overrides={"data_dir": str(tmp_path)}, use_env=False)
    space = MemorySpace("bulk", tmp_path / "bulk", settings)
    assert space.store is not None
    traced: list[str] = []

    def trace(sql: str) -> None:
        # SQLite traces a statement again at each trigger program it starts: keep one per run.
        if sql.startswith("INSERT INTO memories(") and (not traced or traced[-1] != sql):
            traced.append(sql)

    space.store._writer.set_trace_callback(trace)
    return space, traced


def _held(space: MemorySpace, items: list[MemoryInput]) -> list[tuple[Future[Any], Any]]:
    """Submit ``items`` while the writer is held inside an earlier batch, so they share one commit."""
    assert space.store is not None
    gate = threading.Event()
    blocker = space.store.submit(lambda conn, lsn: gate.wait(10), mutates=False)
    try:
        pending = [space.submit_remember(it) for it in items]
    finally:
        gate.set()
    blocker.result(10)
    return pending


def _vec(rng: np.random.Generator) -> list[float]:
    return [float(x) for x in rng.standard_normal(DIM)]


def test_a_run_lands_in_one_statement_with_its_own_lsns_and_rows(tmp_path: Path) -> None:
    space, traced = _space(tmp_path)
    rng = np.random.default_rng(3)
    try:
        space.remember(MemoryInput(id="first", content="binds the dimension", embedding=_vec(rng)))
        traced.clear()
        items = [MemoryInput(id=f"m{i}", content=f"note number {i}", embedding=_vec(rng),
                             tags=[f"t{i}"], metadata={"n": i}) for i in range(6)]
        items.append(MemoryInput(id="text-only", content="no vector at all"))
        receipts = [receipt(fut.result(10)) for fut, receipt in _held(space, items)]
        assert [r.memory_id for r in receipts] == [it.id for it in items]
        lsns = [r.lsn for r in receipts]
        assert lsns == list(range(lsns[0], lsns[0] + len(items))) and lsns[0] == 2
        merged = [sql for sql in traced if "RETURNING rowid" in sql]
        assert len(merged) == 1 and merged[0].count("),(") == len(items) - 1
        reader = space.store.reader()  # type: ignore[union-attr]
        rows = reader.execute("SELECT id, lsn, rowid, tags, metadata FROM memories WHERE id != 'first' "
                              "ORDER BY rowid").fetchall()
        assert [(r[0], r[1]) for r in rows] == [(it.id, lsn) for it, lsn in zip(items, lsns, strict=True)]
        assert [r[2] for r in rows] == list(range(2, 2 + len(items)))  # rowids in submit order
        assert rows[2][3] == '["t2"]' and rows[2][4] == '{"n":2}'
        # each row's vector is under its own rowid, its event at its LSN, its text searchable
        for it, (_id, _lsn, rowid, _t, _m) in zip(items[:-1], rows[:-1], strict=True):
            query = np.asarray(it.embedding, np.float32)
            ((key, score),) = space.vectors.search(query / np.linalg.norm(query), 1)
            assert key == rowid and score > 0.999
        events = reader.execute("SELECT lsn, memory_id FROM events WHERE type = 'stored' AND lsn >= 2 "
                                "ORDER BY lsn").fetchall()
        assert events == [(lsn, it.id) for it, lsn in zip(items, lsns, strict=True)]
        hits = reader.execute("SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'number'").fetchall()
        assert sorted(h[0] for h in hits) == list(range(2, 8))
        assert space.get("m4").tags == ["t4"]
    finally:
        space.close()


def test_a_failing_row_fails_alone_and_the_others_land(tmp_path: Path) -> None:
    space, traced = _space(tmp_path)
    rng = np.random.default_rng(4)
    try:
        space.remember(MemoryInput(id="taken", content="already here", embedding=_vec(rng)))
        traced.clear()
        ids = ["a", "b", "taken", "c", "b", "d"]
        items = [MemoryInput(id=i, content=f"memory {n}", embedding=_vec(rng)) for n, i in enumerate(ids)]
        outcomes: list[Any] = []
        for fut, receipt in _held(space, items):
            try:
                outcomes.append(receipt(fut.result(10)).lsn)
            except MemoryExists as exc:
                outcomes.append(exc.code)
        assert outcomes == [2, 3, "MEMORY_EXISTS", 4, "MEMORY_EXISTS", 5]
        assert any("RETURNING rowid" in sql for sql in traced)  # the merge was tried, and redone
        reader = space.store.reader()  # type: ignore[union-attr]
        rows = reader.execute("SELECT id, lsn, content FROM memories ORDER BY rowid").fetchall()
        assert rows == [("taken", 1, "already here"), ("a", 2, "memory 0"), ("b", 3, "memory 1"),
                        ("c", 4, "memory 3"), ("d", 5, "memory 5")]
        assert len(space.vectors) == 5
        assert space.store.last_lsn == 5  # type: ignore[union-attr]
    finally:
        space.close()


def test_a_row_that_binds_the_dimension_is_not_merged(tmp_path: Path) -> None:
    space, traced = _space(tmp_path)
    rng = np.random.default_rng(5)
    try:
        wrong = MemoryInput(id="short", content="a shorter vector", embedding=[1.0, 2.0])
        items = [MemoryInput(id=f"v{i}", content=f"vector {i}", embedding=_vec(rng)) for i in range(4)]
        outcomes: list[Any] = []
        for fut, receipt in _held(space, [*items[:2], wrong, *items[2:]]):
            try:
                outcomes.append(receipt(fut.result(10)).memory_id)
            except Exception as exc:  # the wrong dimension's own error
                outcomes.append(getattr(exc, "code", repr(exc)))
        assert outcomes[:2] == ["v0", "v1"] and outcomes[3:] == ["v2", "v3"]
        assert outcomes[2] == "EMBEDDING_DIMENSION_MISMATCH"
        assert space.dim == DIM
        # v0 ran whole (it bound the dimension), v1 alone before the refused row; v2 and v3 merged
        assert [sql.count("),(") + 1 for sql in traced if "RETURNING rowid" in sql] == [2]
    finally:
        space.close()


def test_writer_statement_failure_outside_sqlite_constraints_redoes_the_batch(tmp_path: Path) -> None:
    """A row's finish that fails after the merged INSERT went in cannot be undone alone: the whole
    batch is redone with savepoints, and every write still gets the outcome it would have alone."""
    space, traced = _space(tmp_path)
    rng = np.random.default_rng(6)
    try:
        space.remember(MemoryInput(id="first", content="binds", embedding=_vec(rng)))
        conn = space.store._writer  # type: ignore[union-attr]
        conn.execute("CREATE TEMP TRIGGER no_b BEFORE INSERT ON events WHEN new.memory_id = 'b' "
                     "BEGIN SELECT RAISE(ABORT, 'event of b refused'); END")
        traced.clear()
        items = [MemoryInput(id=i, content=i, embedding=_vec(rng)) for i in ("a", "b", "c")]
        outcomes: list[Any] = []
        for fut, receipt in _held(space, items):
            try:
                outcomes.append(receipt(fut.result(10)).lsn)
            except sqlite3.IntegrityError as exc:
                outcomes.append(str(exc))
        assert outcomes == [2, "event of b refused", 3]
        assert any("RETURNING rowid" in sql for sql in traced)
        ids = [r[0] for r in space.store.reader().execute(  # type: ignore[union-attr]
            "SELECT id FROM memories ORDER BY rowid")]
        assert ids == ["first", "a", "c"]
    finally:
        space.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
