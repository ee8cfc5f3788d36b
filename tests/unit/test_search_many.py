"""``VectorSet.search_many`` (the background embedder's batched neighbour search) answers
exactly what one exact search per query answers, removed rows excluded."""

from __future__ import annotations

import numpy as np

from engram.index.vector import VectorSet


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_batched_search_equals_one_search_per_query() -> None:
    rng = np.random.default_rng(3)
    data = unit(rng.standard_normal((9000, 32)))  # more than one block
    vs = VectorSet(32)
    vs.add_many(np.arange(9000), data.astype(np.float16), 1)
    for key in range(0, 9000, 7):
        vs.remove(key)
    queries = unit(rng.standard_normal((20, 32)))
    batched = vs.search_many(queries, 6)
    for q, got in zip(queries, batched, strict=True):
        want = vs.search_exact(q, 6)
        assert [k for k, _ in got] == [k for k, _ in want]
        assert all(k % 7 for k, _ in got)
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=2e-3)


def test_batched_search_of_an_empty_set_or_wrong_dimension() -> None:
    vs = VectorSet(8)
    assert vs.search_many(np.ones((2, 8), np.float32), 3) == [[], []]
    vs.add_many([1, 2], unit(np.eye(2, 8)).astype(np.float16), 1)
    assert vs.search_many(np.ones((1, 4), np.float32), 3) == [[]]
    assert [k for k, _ in vs.search_many(unit(np.eye(1, 8)), 5)[0]] == [1, 2]
