"""The int8 first pass of the exact scan (index.quant): the same top k as the float32 scan.

Full blocks (8,192 rows) are searched in int8 for a net, then scored in float32; a set
without the pass scans every row in float32. Both must give the same keys and the same
scores, with removed rows, after a compaction, and once the rows are narrowed to float16.
"""

from __future__ import annotations

import numpy as np

from engram.index.vector import BLOCK_ROWS, VectorSet

DIM = 48


def _unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return out


def _pair(data: np.ndarray, float32_max: int = 100_000) -> tuple[VectorSet, VectorSet]:
    keys = np.arange(1, len(data) + 1)
    fast, plain = VectorSet(DIM, float32_max), VectorSet(DIM, float32_max, int8_pass=False)
    fast.add_many(keys, data)
    plain.add_many(keys, data)
    return fast, plain


def _same(fast: VectorSet, plain: VectorSet, queries: np.ndarray, k: int) -> None:
    for q in queries:
        assert fast.search_exact(q, k) == plain.search_exact(q, k)


def test_int8_pass_gives_the_float32_top_k() -> None:
    rng = np.random.default_rng(11)
    n = 2 * BLOCK_ROWS + 500  # two full blocks (int8 pass) and a partial one (float32 only)
    centres = rng.standard_normal((20, DIM))
    clustered = _unit(centres[rng.integers(0, 20, n)] + 0.25 * rng.standard_normal((n, DIM)))
    uniform = _unit(rng.standard_normal((n, DIM)))
    for data in (clustered, uniform):
        fast, plain = _pair(data)
        assert fast._passes is not None
        queries = np.concatenate([data[rng.integers(0, n, 15)],
                                  _unit(data[rng.integers(0, n, 15)] + 0.2 * rng.standard_normal((15, DIM)))])
        for k in (10, 100):
            _same(fast, plain, queries, k)
        assert len(fast._passes._passes) == 2  # both full blocks were searched through a pass


def test_removed_rows_compaction_and_float16_rows() -> None:
    rng = np.random.default_rng(12)
    n = BLOCK_ROWS + 100
    data = _unit(rng.standard_normal((n, DIM)))
    fast, plain = _pair(data, float32_max=n + 10)
    queries = data[:40]
    for key in range(1, 41):  # the queries' own rows, each the best match of its query: gone
        fast.remove(key)
        plain.remove(key)
    _same(fast, plain, queries, 10)
    assert all(k > 40 for q in queries for k, _ in fast.search_exact(q, 10))
    for key in range(41, 41 + BLOCK_ROWS // 2 + 100):  # past half the block: it is compacted
        fast.remove(key)
        plain.remove(key)
    _same(fast, plain, data[-30:], 10)
    narrow, narrow_plain = _pair(data, float32_max=0)  # rows in float16 (past vector_float32_max)
    assert narrow.views()[0][0].dtype == np.float16
    _same(narrow, narrow_plain, data[-30:], 10)
    assert narrow._passes is not None and len(narrow._passes._passes) == 1


def test_a_block_compacted_and_filled_again_gets_a_new_pass() -> None:
    """The last block, compacted, keeps its capacity and fills up again with other rows: the
    pass built for its old rows must not find the new ones."""
    rng = np.random.default_rng(13)
    data = _unit(rng.standard_normal((BLOCK_ROWS, DIM)))
    fast, plain = _pair(data)
    _same(fast, plain, data[:5], 10)  # the pass of the full block is built
    gone = np.arange(1, BLOCK_ROWS // 2 + 200)
    for key in gone.tolist():
        fast.remove(key)
        plain.remove(key)
    assert fast._passes is not None and 0 in fast._passes._passes
    _same(fast, plain, data[-5:], 10)  # a search over the compacted block frees its stale pass
    assert 0 not in fast._passes._passes
    room = BLOCK_ROWS - fast.views()[0][5]  # compacted once past half dead: room for this many
    assert room > BLOCK_ROWS // 2
    fresh = _unit(rng.standard_normal((room, DIM)))
    keys = np.arange(BLOCK_ROWS + 1, BLOCK_ROWS + 1 + room)
    fast.add_many(keys, fresh)
    plain.add_many(keys, fresh)
    assert len(fast.views()) == 1 and fast.views()[0][5] == BLOCK_ROWS  # full again
    _same(fast, plain, fresh[:30], 10)
