"""Row width of the exact store: float32 up to ``float32_max`` rows, float16 beyond, same answers.

A set kept in float16 from the start (``float32_max=0``) is fed the very same operations and
must answer every read identically, bit for bit: the width is a speed/memory trade, never a
change of results.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engram.core.models import MemoryInput
from engram.core.space import MemorySpace
from engram.index.vector import BLOCK_ROWS, VectorSet
from engram.settings import Settings

DIM = 24


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, DIM)).astype(np.float32)
    data = centres[rng.integers(0, 16, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def widths(vs: VectorSet) -> set[str]:
    return {str(v[0].dtype) for v in vs.views()}


def assert_same_answers(wide: VectorSet, narrow: VectorSet, queries: np.ndarray) -> None:
    assert len(wide) == len(narrow)
    keys = wide.keys()
    assert sorted(keys.tolist()) == sorted(narrow.keys().tolist())
    for q in queries:
        for k in (1, 10, 57):
            assert wide.search_exact(q, k) == narrow.search_exact(q, k)
        mid = wide.next_seq // 2
        assert wide.search_exact(q, 10, from_seq=mid) == narrow.search_exact(q, 10, from_seq=mid)
        some = keys[:: max(1, len(keys) // 40)]
        assert wide.score_keys(q, some) == narrow.score_keys(q, some)
    assert wide.search_many(queries, 10) == narrow.search_many(queries, 10)
    for key in keys[:: max(1, len(keys) // 20)].tolist():
        a, b = wide.vector(key), narrow.vector(key)
        assert a is not None and b is not None and a.dtype == b.dtype == np.float32
        assert np.array_equal(a, b)
    pa, pb = wide.pending(0, 10**9), narrow.pending(0, 10**9)
    assert pa[1].dtype == pb[1].dtype == np.float16  # the ANN index is always fed float16
    for x, y in zip(pa, pb, strict=True):
        assert np.array_equal(x, y)


def test_rows_are_float32_up_to_the_limit_then_float16_with_identical_answers() -> None:
    limit = BLOCK_ROWS + 300  # the float32 phase spans two blocks
    data = clustered(limit + 700, 1)
    queries = clustered(12, 2)
    wide, narrow = VectorSet(DIM, float32_max=limit), VectorSet(DIM, float32_max=0)
    for vs in (wide, narrow):
        vs.add_many(np.arange(BLOCK_ROWS) + 1, data[:BLOCK_ROWS], 1)
        for i in range(BLOCK_ROWS, limit - 50):  # the one-row path too
            vs.add(i + 1, data[i], i + 1)
        for key in range(5, 400, 3):  # removals, enough to compact the first block
            vs.remove(key)
        vs.add_many(np.arange(limit - 50, limit) + 1, data[limit - 50 : limit], 2)
    assert len(wide) <= limit
    assert widths(wide) == {"float32"} and widths(narrow) == {"float16"}
    rows = [sum(v[0].nbytes for v in vs.views()) for vs in (wide, narrow)]
    assert rows[0] == 2 * rows[1]  # rows take twice the bytes
    assert_same_answers(wide, narrow, queries)

    # Past the limit: every block turns float16, and stays so as rows keep coming.
    for vs in (wide, narrow):
        extra = limit - len(vs) + 1
        vs.add_many(np.arange(limit, limit + extra) + 1, data[limit : limit + extra], 3)
    assert len(wide) == limit + 1
    assert widths(wide) == {"float16"}
    assert_same_answers(wide, narrow, queries)
    for vs in (wide, narrow):
        for i in range(limit + len(data) - limit - 600, len(data)):
            vs.add(i + 10**6, data[i], 4)
    assert widths(wide) == {"float16"}
    assert_same_answers(wide, narrow, queries)


def test_the_stored_values_are_float16_rounded_in_either_width() -> None:
    data = clustered(300, 3)
    wide = VectorSet(DIM, float32_max=1000)
    wide.add_many(np.arange(300) + 1, data)
    wide.add(1000, data[0])
    stored = wide.views()[0][0]
    assert stored.dtype == np.float32
    assert np.array_equal(stored[:300], data.astype(np.float16).astype(np.float32))
    assert np.array_equal(stored[300], data[0].astype(np.float16).astype(np.float32))


def test_the_setting_reaches_a_spaces_vectors_live_and_reopened(
    tmp_path: Path, engine_settings: Callable[..., Any]
) -> None:
    assert Settings().vector_float32_max == 20_000
    data = clustered(12, 4)
    for limit, width in ((10, "float16"), (100, "float32")):
        d = tmp_path / f"s{limit}"
        d.mkdir()
        settings = engine_settings(vector_float32_max=limit)
        space = MemorySpace("w", d, settings)
        for i, row in enumerate(data):
            space.remember(MemoryInput(id=f"m{i}", content="", embedding=row.tolist()))
        assert widths(space.vectors) == {width}
        space.close()
        space = MemorySpace("w", d, settings)  # reopened: rows loaded from storage
        try:
            assert len(space.vectors) == len(data) and widths(space.vectors) == {width}
        finally:
            space.close()
