"""Deterministic, order-independent clustering of episode embeddings.

Episodes are linked when their cosine similarity is at least ``threshold``;
clusters are the connected components of that graph. Connected components are a
property of the *set* of edges, not of the order they were found in, and the
input rows are put in canonical order (by memory id) by the caller, so the same
episodes always give the same clusters, whatever order they were stored in.

To bound memory and time on dense spaces each episode keeps at most
``max_links`` of its strongest links (to episodes later in canonical order):
a dense group stays connected through them, and the edge list is at most
``n * max_links`` long instead of ``n^2``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BLOCK_CELLS = 1 << 24  # similarity cells per block (64 MiB of float32)
MAX_LINKS = 32


def link_edges(
    x: np.ndarray,
    threshold: float,
    *,
    max_links: int = MAX_LINKS,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(i, j)``, ``i < j``, with ``x[i] . x[j] >= threshold`` (rows of ``x`` are unit vectors)."""
    n = x.shape[0]
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    block = max(64, min(1024, BLOCK_CELLS // max(1, n)))
    for start in range(0, n, block):
        stop = min(n, start + block)
        # Upper triangle only: row i is compared with rows i+1.. (half the work).
        sims = x[start:stop] @ x[start:].T
        rows = np.arange(stop - start)
        sims[rows, rows] = -np.inf  # self
        sims[np.tril_indices(stop - start, -1)] = -np.inf  # earlier rows of this block
        if sims.shape[1] > max_links:
            keep = np.argpartition(-sims, max_links - 1, axis=1)[:, :max_links]
            kept = np.take_along_axis(sims, keep, axis=1)
        else:
            keep = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
            kept = sims
        ii, jj = np.nonzero(kept >= threshold)
        src.append((ii + start).astype(np.int64))
        dst.append((keep[ii, jj] + start).astype(np.int64))
        if progress is not None:
            progress(stop / n)
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(src), np.concatenate(dst)


def components(n: int, src: np.ndarray, dst: np.ndarray) -> list[list[int]]:
    """Connected components as sorted index lists, ordered by their smallest index.

    Hook-and-compress in numpy rather than a Python union-find: the work is the
    same, but it runs in C, so a consolidation holds the GIL for milliseconds
    instead of the better part of a second (remember/recall threads of every
    space share that GIL). Each round hooks every root to the smallest root it
    has an edge to, then compresses paths; the root of a component ends as its
    smallest index, whatever the order of the edges.
    """
    labels = np.arange(n, dtype=np.int64)
    if len(src):
        while True:
            ls, ld = labels[src], labels[dst]
            hi, lo = np.maximum(ls, ld), np.minimum(ls, ld)
            cross = hi != lo
            if not np.any(cross):
                break
            np.minimum.at(labels, hi[cross], lo[cross])
            while True:  # compress: point every node at its root
                nxt = labels[labels]
                if np.array_equal(nxt, labels):
                    break
                labels = nxt
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [g.tolist() for g in np.split(order, bounds)] if n else []


def cluster(
    x: np.ndarray,
    threshold: float,
    min_size: int,
    *,
    progress: Callable[[float], None] | None = None,
) -> list[list[int]]:
    """Clusters of at least ``min_size`` rows of ``x`` (unit vectors in canonical order)."""
    if x.shape[0] == 0:
        return []
    src, dst = link_edges(x, threshold, progress=progress)
    return [c for c in components(x.shape[0], src, dst) if len(c) >= min_size]
