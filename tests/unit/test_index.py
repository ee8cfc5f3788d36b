"""Vector search: the float16 exact store, the HNSW index, its tail, removals and checkpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.core.models import ForgetMode, MemoryInput
from engram.core.space import MemorySpace
from engram.errors import DimensionMismatch
from engram.index.ann import INDEX_FILE, SIDECAR_FILE, AnnIndex
from engram.index.vector import BLOCK_ROWS, VectorSet

DIM = 48


def clustered(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, dim)).astype(np.float32)
    data = centres[rng.integers(0, 32, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def brute(data: dict[int, np.ndarray], q: np.ndarray, k: int) -> list[int]:
    keys = list(data)
    mat = np.stack([data[x] for x in keys])
    order = np.argsort(-(mat @ q), kind="stable")[:k]
    return [keys[i] for i in order]


def recall_at_10(vs: VectorSet, queries: np.ndarray) -> float:
    hits = 0
    for q in queries:
        exact = {k for k, _ in vs.search_exact(q, 10)}
        got = {k for k, _ in vs.search(q, 10)}
        hits += len(exact & got)
    return hits / (10 * len(queries))


# -- VectorSet ---------------------------------------------------------------------------------


def test_vectorset_exact_matches_brute_force_across_blocks() -> None:
    n = BLOCK_ROWS * 2 + 500  # three blocks, the last one partly filled
    data = clustered(n, 1, 16)
    vs = VectorSet()
    vs.add_many(np.arange(n) + 1000, data, np.arange(n) + 1)
    assert len(vs) == n and vs.dim == 16 and vs.next_seq == n
    ref = {1000 + i: data[i].astype(np.float16).astype(np.float32) for i in range(n)}
    for q in clustered(5, 2, 16):
        got = vs.search_exact(q, 10)
        assert [k for k, _ in got] == brute(ref, q, 10)
        assert all(-1.0 <= s <= 1.0 for _, s in got)
        assert got == sorted(got, key=lambda t: -t[1])


def test_vectorset_remove_replace_and_compaction() -> None:
    data = clustered(600, 3, 16)
    vs = VectorSet()
    vs.add_many(np.arange(600), data)
    for key in range(0, 600, 2):  # kill half: compaction of the block kicks in
        assert vs.remove(key)
    assert not vs.remove(0) and len(vs) == 300
    for q in data[:20]:
        res = vs.search_exact(q, 20)
        assert all(k % 2 == 1 for k, _ in res) and len(res) == 20
    assert vs.score_keys(data[1], [0, 1, 2, 999]).keys() == {1}
    assert vs.score_keys(data[1], [1])[1] == pytest.approx(1.0, abs=1e-3)
    vs.add(1, data[5])  # replacing a key moves it to the end, once
    assert len(vs) == 300 and vs.vector(1) == pytest.approx(data[5], abs=1e-3)
    assert vs.search_exact(data[5], 2)[0][1] == pytest.approx(1.0, abs=1e-3)
    assert vs.vector(0) is None
    with pytest.raises(DimensionMismatch) as info:
        vs.add(7, np.ones(3, dtype=np.float32))
    assert info.value.details == {"expected": 16, "received": 3}
    mat, keys, _alive, n = vs.snapshot()
    assert n == 300 and mat.dtype == np.float32 and set(keys.tolist()) == set(vs.keys().tolist())


# -- AnnIndex ----------------------------------------------------------------------------------


def _ann(tmp_path: Path, settings: Any, vs: VectorSet) -> AnnIndex:
    ann = AnnIndex(vs, tmp_path, settings)
    vs.ann = ann
    return ann


def test_ann_recall_tail_and_removal(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    settings = engine_settings(exact_search_max=300, hnsw_expansion_search=64)
    data = clustered(3000, 4)
    vs = VectorSet(DIM)
    ann = _ann(tmp_path, settings, vs)
    vs.add_many(np.arange(2500), data[:2500], np.arange(2500) + 1)
    while ann._step():  # build synchronously: the test decides when the index moves
        pass
    assert ann.ready and ann.indexed_seq == 2500 and ann.state()["pending"] == 0
    queries = clustered(100, 5)
    assert recall_at_10(vs, queries) >= 0.95

    # The tail (added after the last build step) is searched exactly.
    vs.add_many(np.arange(2500, 3000), data[2500:], np.arange(2500, 3000) + 1)
    assert ann.state()["pending"] == 500
    for i in range(2500, 3000, 50):
        assert vs.search(data[i], 1)[0][0] == i
    assert recall_at_10(vs, queries) >= 0.95

    # Removed keys never come back, whether or not the graph has caught up.
    for key in range(0, 3000, 3):
        vs.remove(key)
    for q in np.concatenate([queries, data[:100]]):
        assert all(k % 3 != 0 for k, _ in vs.search(q, 10))
    while ann._step():
        pass
    assert ann.state()["pending"] == 0 and len(ann.index) == 2000  # type: ignore[arg-type]
    assert recall_at_10(vs, queries) >= 0.95


def test_ann_background_thread_and_concurrent_search(
    tmp_path: Path, engine_settings: Callable[..., Any]
) -> None:
    settings = engine_settings(exact_search_max=200)
    data = clustered(2000, 6)
    vs = VectorSet(DIM)
    ann = _ann(tmp_path, settings, vs)
    ann.start()
    try:
        def search_some(i: int) -> None:
            for q in data[i * 50 : i * 50 + 50]:
                res = vs.search(q, 5)
                assert all(k in vs for k, _ in res)

        with ThreadPoolExecutor(4) as pool:
            for start in range(0, 2000, 200):
                vs.add_many(np.arange(start, start + 200), data[start : start + 200])
                list(pool.map(search_some, range(4)))
        assert ann.wait_caught_up(60)
        assert ann.ready and ann.state()["pending"] == 0 and ann.last_error is None
        assert recall_at_10(vs, clustered(50, 7)) >= 0.95
    finally:
        ann.stop()


# -- through a space: checkpoints --------------------------------------------------------------


def _open(tmp_path: Path, settings: Any) -> MemorySpace:
    d = tmp_path / "idx-space"
    d.mkdir(exist_ok=True)
    return MemorySpace("idx-space", d, settings)


def _fill(space: MemorySpace, data: np.ndarray, start: int = 0) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: space.remember(
                    MemoryInput(id=f"m{i}", content="", embedding=data[i - start].tolist())
                ),
                range(start, start + len(data)),
            )
        )


def _assert_consistent(space: MemorySpace, queries: np.ndarray) -> None:
    assert space.ann is not None and space.ann.wait_caught_up(60)
    assert space.ann.ready
    assert recall_at_10(space.vectors, queries) >= 0.95


def test_checkpoint_reload(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    settings = engine_settings(exact_search_max=300)
    data = clustered(1500, 8)
    queries = clustered(50, 9)
    space = _open(tmp_path, settings)
    _fill(space, data[:1200])
    _assert_consistent(space, queries)
    space.close()  # checkpoints the graph
    meta = json.loads((tmp_path / "idx-space" / SIDECAR_FILE).read_text())
    assert meta["count"] == 1200 and meta["dim"] == DIM and meta["lsn"] == 1200

    space = _open(tmp_path, settings)
    assert space.ann is not None and space.ann.loaded_from_checkpoint and space.ann.ready
    assert space.ann.indexed_seq == 1200 and space.ann.state()["pending"] == 0
    _assert_consistent(space, queries)
    # Change things after the checkpoint: forget some, delete the highest rowid and
    # reuse it with another vector, add more. Then crash-free close without a new
    # checkpoint (simulated by removing the sidecar write: reopen from the old one).
    for i in range(0, 1200, 10):
        space.forget(f"m{i}", ForgetMode.suppress if i % 20 else ForgetMode.delete)
    space.forget("m1199", ForgetMode.delete)
    space.remember(MemoryInput(id="reused", embedding=data[1400].tolist()))  # takes rowid 1200 again
    _fill(space, data[1200:1300], 1200)
    old_meta = (tmp_path / "idx-space" / SIDECAR_FILE).read_text()
    old_index = (tmp_path / "idx-space" / INDEX_FILE).read_bytes()
    space.close()
    (tmp_path / "idx-space" / SIDECAR_FILE).write_text(old_meta)  # as if the process died before saving
    (tmp_path / "idx-space" / INDEX_FILE).write_bytes(old_index)

    space = _open(tmp_path, settings)
    try:
        assert space.ann is not None and space.ann.loaded_from_checkpoint
        _assert_consistent(space, queries)
        reused = space.get("reused")
        rowid = int(space.row_by_id("reused")[0])
        top = space.vectors.search(np.asarray(data[1400]), 1)
        assert top[0][0] == rowid and reused.id == "reused"
        forgotten = {int(space.row_by_id(f"m{i}")[0]) for i in range(10, 1200, 20)}
        for q in np.concatenate([queries, data[:200]]):
            assert not forgotten & {k for k, _ in space.vectors.search(q, 10)}
    finally:
        space.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "sidecar", "dimension"])
def test_damaged_checkpoint_is_rebuilt(
    tmp_path: Path, engine_settings: Callable[..., Any], damage: str
) -> None:
    settings = engine_settings(exact_search_max=200)
    data = clustered(600, 10)
    space = _open(tmp_path, settings)
    _fill(space, data)
    assert space.ann is not None and space.ann.wait_caught_up(60)
    space.close()
    idx, side = tmp_path / "idx-space" / INDEX_FILE, tmp_path / "idx-space" / SIDECAR_FILE
    if damage == "flip":
        raw = bytearray(idx.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        idx.write_bytes(bytes(raw))
    elif damage == "truncate":
        idx.write_bytes(idx.read_bytes()[:1000])
    elif damage == "sidecar":
        side.write_text("{not json")
    else:
        meta = json.loads(side.read_text())
        meta["dim"] = 7
        side.write_text(json.dumps(meta))
    space = _open(tmp_path, settings)
    try:
        assert space.ann is not None and not space.ann.loaded_from_checkpoint
        assert "checkpoint ignored" in (space.ann.last_error or "")
        for i in range(0, 600, 60):  # exact search serves while the graph is rebuilt
            assert space.vectors.search(data[i], 1)[0][0] == int(space.row_by_id(f"m{i}")[0])
        _assert_consistent(space, clustered(30, 11))
        assert space.ann.state()["kind"] == "hnsw"
    finally:
        space.close()
    assert json.loads(side.read_text())["count"] == 600  # a good checkpoint replaced the bad one
