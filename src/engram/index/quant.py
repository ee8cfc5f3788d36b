"""An int8 first pass for the exact scan of a full block (index.vector).

The exact scan of a block reads every row: 8,192 x 384 float32 is 12 MiB per block,
and on a shared machine the scan is bound by memory bandwidth (1.5-7 ms per query at
20k x 384, moving with the other processes' use of the memory bus). The same rows in
int8 are a quarter of the bytes, and usearch's exact search over an int8 ``Index``
runs SimSIMD dot-product kernels (VNNI where the CPU has it): measured here 0.35-0.4 ms
per full block against 0.6-1.2 ms for numpy's float32 product.

The int8 pass only *finds*: it returns a net of ``net`` rows by quantised inner
product, and the caller scores the net in float32 exactly as before, so the block's
top ``k`` is the float32 top ``k`` whenever the net holds it. Quantisation: the
block's rows scaled by ``127 / max |row value|`` of the block, the query by
``127 / max |query value|`` (the inner product's order does not depend on the
query's scale), rounded. With a net of ``2 k`` (plus the dead rows) the net held
the float32 top 100 for every one of 200 queries (stored and perturbed) on uniform
random and on clustered 384-d data (bench/notes/recall_profile.md, Round 7).

Only *full* blocks get one: their rows never change in place (a removal clears
``alive``, which the caller filters by; a compaction or a narrowing to float16 gives
the block new arrays, and the pass is rebuilt for them). Building one costs ~40-60
ms per 8,192 rows (usearch builds a sparse graph beside the rows: connectivity 2,
never searched) and ~3.5 MiB of memory.
"""

from __future__ import annotations

import threading

import numpy as np
from usearch.index import Index


class Int8Pass:
    """The int8 copy of one full block's rows, searchable exactly."""

    __slots__ = ("index", "rows")

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows  # the block's vector array it was built from (identity checked by callers)
        top = float(np.abs(rows).max()) if rows.size else 0.0
        scale = 127.0 / top if top > 0 else 1.0
        q = np.clip(np.rint(rows.astype(np.float32) * scale), -127, 127).astype(np.int8)
        self.index = Index(ndim=rows.shape[1], metric="ip", dtype="i8", connectivity=2, expansion_add=4)
        self.index.add(np.arange(len(rows), dtype=np.uint64), q, threads=1)

    def net(self, query: np.ndarray, count: int) -> np.ndarray | None:
        """Row numbers of the ``count`` best rows by quantised inner product (None: no answer)."""
        top = float(np.abs(query).max())
        if not top > 0:  # a zero (or NaN) query: let the float32 scan answer
            return None
        q = np.clip(np.rint(query * (127.0 / top)), -127, 127).astype(np.int8)
        found = self.index.search(q, count, exact=True, threads=1)
        return np.asarray(found.keys[: len(found)], dtype=np.int64)


class PassCache:
    """One ``Int8Pass`` per full block, built on first use by one reader at a time."""

    def __init__(self) -> None:
        self._passes: dict[int, Int8Pass] = {}  # block number -> pass
        self._building = threading.Lock()

    def get(self, block: int, rows: np.ndarray) -> Int8Pass | None:
        """The pass of block ``block`` whose rows are ``rows`` (built now if missing or stale);
        None while another reader builds one (the caller scans in float32 meanwhile)."""
        p = self._passes.get(block)
        if p is not None and p.rows is rows:
            return p
        if not self._building.acquire(blocking=False):
            return None
        try:
            p = self._passes.get(block)
            if p is None or p.rows is not rows:
                p = self._passes[block] = Int8Pass(rows)
            return p
        finally:
            self._building.release()

    def discard(self, block: int) -> None:
        """Forget the pass of a block that is no longer full (compacted: its pass is stale)."""
        if block in self._passes:
            self._passes.pop(block, None)

    def nbytes(self) -> int:
        return sum(int(p.index.memory_usage) for p in self._passes.values())
