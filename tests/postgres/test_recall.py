"""Vector recall per space: a small space beside a large one gets its own true top-k."""

from __future__ import annotations

import uuid

import numpy as np

from engram.core.postgres import MemoryRow, PostgresStore

DIM = 64
K = 10


def _fill(store: PostgresStore, sid: str, vectors: np.ndarray) -> list[str]:
    ids = [f"{sid}-{i}" for i in range(len(vectors))]
    for start in range(0, len(vectors), 250):
        store.remember_many(sid, [(MemoryRow(id=ids[i], content=f"v{i}"), vectors[i])
                                  for i in range(start, min(start + 250, len(vectors)))])
    return ids


def _exact(vectors: np.ndarray, ids: list[str], query: np.ndarray) -> list[str]:
    half = vectors.astype(np.float16).astype(np.float32)  # the stored precision
    cos = half @ query / (np.linalg.norm(half, axis=1) * np.linalg.norm(query))
    return [ids[i] for i in np.argsort(-cos, kind="stable")[:K]]


def test_small_space_beside_a_large_one_recalls_its_true_top_k(store: PostgresStore) -> None:
    rng = np.random.default_rng(17)
    big, small = f"big-{uuid.uuid4().hex[:8]}", f"small-{uuid.uuid4().hex[:8]}"
    store.create_space(big, dimension=DIM)
    store.create_space(small, dimension=DIM)
    # the large space crowds the region the small space's queries look in
    centre = rng.standard_normal(DIM).astype(np.float32)
    big_vecs = (centre + 0.3 * rng.standard_normal((2000, DIM))).astype(np.float32)
    small_vecs = (centre + 0.5 * rng.standard_normal((60, DIM))).astype(np.float32)
    _fill(store, big, big_vecs)
    small_ids = _fill(store, small, small_vecs)
    big_ids = [f"{big}-{i}" for i in range(len(big_vecs))]
    hits = total = 0
    for _ in range(20):
        query = (centre + 0.3 * rng.standard_normal(DIM)).astype(np.float32)
        got = [i for i, _ in store.recall(small, query, k=K)]
        assert len(got) == K and all(i.startswith(small) for i in got)
        want = _exact(small_vecs, small_ids, query)
        hits += len(set(got) & set(want))
        total += K
        big_got = [i for i, _ in store.recall(big, query, k=K)]
        assert len(set(big_got) & set(_exact(big_vecs, big_ids, query))) >= K - 1  # float16 near-ties
    assert hits / total >= 0.95, hits / total


def test_recall_scores_are_cosines_best_first(store: PostgresStore) -> None:
    sid = f"cos-{uuid.uuid4().hex[:8]}"
    store.create_space(sid, dimension=4)
    store.remember(sid, MemoryRow(id="same", content="a"), np.array([1, 0, 0, 0], dtype=np.float32))
    store.remember(sid, MemoryRow(id="near", content="b"), np.array([1, 1, 0, 0], dtype=np.float32))
    store.remember(sid, MemoryRow(id="opposite", content="c"), np.array([-1, 0, 0, 0], dtype=np.float32))
    store.remember(sid, MemoryRow(id="textonly", content="d"))
    got = store.recall(sid, np.array([2, 0, 0, 0], dtype=np.float32), k=5)
    assert [i for i, _ in got] == ["same", "near", "opposite"]
    assert np.allclose([s for _, s in got], [1.0, 2 ** -0.5, -1.0], atol=1e-3)
