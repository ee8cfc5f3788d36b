"""GroupedEffect: one post-commit effect per run of a batch, applied before any of the run is acknowledged.

The remember path relies on this (vectors and events of a whole run applied
together); these pin what it relies on: runs split at a failed op and at an op
with a different effect, LSNs stay per op, a failed op gets no effect and fails
alone, and no future resolves before its run's effect ran.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.core.events import Lagged
from engram.core.models import MemoryInput
from engram.core.space import MemorySpace
from engram.errors import MemoryExists
from engram.settings import load_settings
from engram.storage.sqlite_store import GroupedEffect, SpaceStore


def test_runs_split_at_failures_and_other_effects(tmp_path: Path) -> None:
    store = SpaceStore(tmp_path / "s")
    runs: list[list[tuple[Any, int]]] = []
    effect = GroupedEffect(runs.append)
    plain: list[tuple[Any, int]] = []
    gate = threading.Event()
    try:
        # Hold the writer inside a first batch so everything below lands in the next one.
        blocker = store.submit(lambda conn, lsn: gate.wait(10), mutates=False)

        def insert(key: str) -> Any:
            def op(conn: sqlite3.Connection, lsn: int) -> str:
                conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, str(lsn)))
                return key
            return op

        def boom(conn: sqlite3.Connection, lsn: int) -> None:
            raise ValueError("fails before writing")

        futs = [
            store.submit(insert("a"), after=effect, savepoint=False),
            store.submit(insert("b"), after=effect, savepoint=False),
            store.submit(boom, after=effect, savepoint=False),
            store.submit(insert("c"), after=effect, savepoint=False),
            store.submit(insert("d"), after=lambda res, lsn: plain.append((res, lsn))),
            store.submit(insert("e"), after=effect, savepoint=False),
        ]
        gate.set()
        blocker.result(10)
        results = []
        for fut in futs:
            try:
                results.append(fut.result(10))
            except ValueError:
                results.append("failed")
        assert results == [("a", 1), ("b", 2), "failed", ("c", 3), ("d", 4), ("e", 5)]
        assert runs == [[("a", 1), ("b", 2)], [("c", 3)], [("e", 5)]]
        assert plain == [("d", 4)]
    finally:
        gate.set()
        store.close()


def test_remember_run_is_recallable_and_published_before_ack(tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": str(tmp_path)}, use_env=False)
    space = MemorySpace("aaa", tmp_path / "aaa", settings)
    sub = space.events.subscribe(["stored"])
    assert space.store is not None
    gate = threading.Event()
    try:
        space.store.submit(lambda conn, lsn: gate.wait(10), mutates=False)
        rng = np.random.default_rng(1)
        items = [MemoryInput(id=f"m{i}", content=f"memory {i}", embedding=rng.standard_normal(16).tolist())
                 for i in range(5)]
        items.insert(
            3, MemoryInput(id="m1", content="duplicate id", embedding=rng.standard_normal(16).tolist())
        )
        pending = [space.submit_remember(it) for it in items]
        gate.set()
        outcomes: list[Any] = []
        for fut, receipt in pending:
            try:
                r = receipt(fut.result(10))
            except MemoryExists as exc:
                outcomes.append(str(exc))
                continue
            # acknowledged: its vector is already searchable (finds itself, cosine ~1)
            query = np.asarray(items[len(outcomes)].embedding, np.float32)
            ((_key, score),) = space.vectors.search(query / np.linalg.norm(query), 1)
            assert score > 0.99
            outcomes.append(r.memory_id)
        assert outcomes[:3] == ["m0", "m1", "m2"] and outcomes[4:] == ["m3", "m4"]
        assert "already exists" in outcomes[3]  # only the duplicate failed
        assert len(space.vectors) == 5
        lsns = []
        while len(lsns) < 5:
            ev = sub.get_blocking(10)
            assert ev is not None and not isinstance(ev, Lagged)
            lsns.append(ev.lsn)
        assert lsns == sorted(lsns) and len(set(lsns)) == 5  # one event per write, LSN order
    finally:
        gate.set()
        space.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
