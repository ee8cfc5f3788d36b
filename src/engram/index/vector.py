"""In-memory vectors of one space: an exact store, plus an ANN index for large spaces.

Every stored embedding lives, L2-normalised and rounded to float16, in rows
grouped in fixed-capacity *blocks* (``BLOCK_ROWS`` rows each). float16 halves
the memory of the exact copy (768-d: 1.5 KB instead of 3 KB per memory) at a
cosine error below 1e-6 for unit vectors; scores are computed in float32
against a float32 query.

Small spaces (up to ``float32_max`` rows, the ``vector_float32_max`` setting)
keep those same float16-rounded values in float32 arrays: twice the memory, and
no float16 -> float32 conversion where whole blocks are read (``search_many``,
``iter_live``: 1.4x and 4x cheaper at 20k x 384); an exact scan is then one BLAS
matrix-vector product per block instead of usearch's float16 brute force, which
measured about the same here (2.2-2.7 ms either way at 20k x 384: the scan is
memory-bound, and float32 rows are twice the bytes). The values are identical
in both widths, so answers do not depend on it. Past the limit every block is
narrowed to float16 once (exactly: the values are float16-representable) and
stays so.

Each row also carries its key (the memory's rowid), a *sequence number* (the
order it was added, strictly increasing across the store) and the LSN of the
write that added it. The ANN index (``AnnIndex``) covers every row whose
sequence number is below its ``indexed_seq``; search asks the index for the
prefix and searches the rows from ``indexed_seq`` on exactly.

Concurrency invariant: one writer (the space's commit thread, or the opening
thread before any reader exists) and any number of lock-free readers. A block
publishes an immutable ``view`` tuple ``(vec, keys, seq, lsn, alive, n)``; a
writer fills rows beyond ``n`` and then swaps in a new view, and a block that
grows or is compacted gets new arrays in the new view, so a reader always sees
arrays and a row count that belong together. Removal clears ``alive`` in place
(a reader racing with it may still see the row, which linearises the read
before the removal); every search result is filtered by ``alive``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from usearch.compiled import MetricKind
from usearch.index import search as _brute_force

from ..errors import DimensionMismatch
from .changes import ChangeLog, Op
from .quant import PassCache
from .raw import RawVectors

BLOCK_ROWS = 8192  # rows per block: 12 MiB of float16 at 768-d
_FIRST_CAPACITY = 64
_NUMPY_MAX_ROWS = 256  # below this, numpy is cheaper than a usearch call

View = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


def normalise(vec: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    # The norm in float64: squares of float32 values above ~1.8e19 overflow float32 to inf,
    # which left such a vector unnormalised (cosines far above 1). float64 holds them all.
    wide = arr.astype(np.float64)
    norm = float(np.sqrt(wide @ wide))
    if norm == 0.0 or not np.isfinite(norm):
        return arr
    return (wide / norm).astype(np.float32)


def unit_rows16(mat: np.ndarray) -> np.ndarray:
    """The float16 unit rows the vectors keep for stored float32 vectors ``mat`` (one per row).

    Every path that adds a vector (a space loading its vectors, a client's vector, the server's
    embedder) rounds through this one function, so a row is the same bits whichever path made it:
    a read worker's copy loaded whole from the stored bytes holds the server's rows exactly
    (engram.readpool). The norm is taken in float64 (float32 squares overflow above ~1.8e19) and
    the division rounded to float16 once: rounding to float32 first, or a float32 norm, gives
    another float16 in ~2 % of 384-d rows (tests/integration/test_readpool.py).
    """
    mat = np.asarray(mat, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat, dtype=np.float64))[:, None]
    norms[norms == 0] = 1.0
    rows: np.ndarray = (mat / norms).astype(np.float16)
    return rows


def stored_row16(blob: bytes) -> np.ndarray:
    """:func:`unit_rows16` of one stored vector (its float32 bytes)."""
    row: np.ndarray = unit_rows16(np.frombuffer(blob, dtype=np.float32).reshape(1, -1))[0]
    return row


class _Block:
    __slots__ = ("dead", "view")

    def __init__(self, dim: int, capacity: int, dtype: type[np.floating] = np.float16) -> None:
        self.view: View = (
            np.zeros((capacity, dim), dtype=dtype),
            np.zeros(capacity, dtype=np.int64),
            np.zeros(capacity, dtype=np.int64),
            np.zeros(capacity, dtype=np.int64),
            np.zeros(capacity, dtype=bool),
            0,
        )
        self.dead = 0


class AnnLike(Protocol):  # pragma: no cover - protocol
    ready: bool

    def notify_added(self) -> None: ...

    def remove(self, key: int) -> None: ...

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]: ...


class VectorSet:
    """Exact cosine search over the normalised vectors of one space."""

    def __init__(self, dim: int | None = None, float32_max: int = 20_000, int8_pass: bool = True) -> None:
        self.dim = dim
        self.float32_max = float32_max
        # Full blocks are scanned first in int8 (index.quant), then their net in float32.
        self._passes = PassCache() if int8_pass else None
        # Row width of new blocks: float32 while the set is small, float16 for good once it
        # grows past float32_max (see the module docstring). Changed only under _lock.
        self._dtype: type[np.floating] = np.float32 if float32_max > 0 else np.float16
        self._blocks: list[_Block] = []
        self._slot_of: dict[int, int] = {}  # key -> block * BLOCK_ROWS + row
        self._next_seq = 0
        self.applied_lsn = 0  # highest LSN of a write applied here
        self._lock = threading.Lock()  # writers only
        self.ann: AnnLike | None = None
        # The stored float32 embeddings for exact rescoring (index.raw): every add and remove
        # below drops the key's bytes there and bumps its version, under _lock.
        self.raw = RawVectors(self._lock, float32_max)
        # What each commit changes here, for read workers' copies (index.changes); off unless a
        # read pool asks for it (MemorySpace.track_changes).
        self.changes: ChangeLog | None = None

    # -- writer side ----------------------------------------------------------
    def check_dim(self, received: int) -> None:
        if self.dim is not None and received != self.dim:
            raise DimensionMismatch(
                f"embedding has {received} dimensions; this memory space expects {self.dim}",
                details={"expected": self.dim, "received": received},
                example=f"an embedding list of exactly {self.dim} floats",
            )

    def add_many(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray,
                 lsns: Sequence[int] | np.ndarray | int = 0) -> None:
        """Add normalised ``vectors`` (n x dim) under integer ``keys``; a key already present is replaced."""
        n = len(keys)
        if n == 0:
            return
        vectors = np.asarray(vectors).reshape(n, -1)
        lsn_arr = np.broadcast_to(np.asarray(lsns, dtype=np.int64), (n,))
        with self._lock:
            if self.dim is None:
                self.dim = int(vectors.shape[1])
            elif vectors.shape[1] != self.dim:
                raise DimensionMismatch(
                    f"embedding has {vectors.shape[1]} dimensions; this memory space expects {self.dim}",
                    details={"expected": self.dim, "received": int(vectors.shape[1])},
                )
            raw = self.raw
            raw.changed_locked()
            for key in keys:
                raw.drop_locked(int(key))
                if int(key) in self._slot_of:
                    self._remove_locked(int(key))
            done = 0
            while done < n:
                done += self._append_locked(keys, vectors, lsn_arr, done)
            if self._dtype is np.float32 and len(self._slot_of) > self.float32_max:
                self._narrow_locked()
            top = int(lsn_arr.max())
            if top > self.applied_lsn:
                self.applied_lsn = top
            if self.changes is not None:
                self.changes.added(np.asarray(keys, dtype=np.int64).copy(), vectors.astype(np.float16),
                                   lsn_arr.copy())
        if self.ann is not None:
            self.ann.notify_added()

    def _append_locked(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray, lsns: np.ndarray,
                       start: int) -> int:
        """Append rows ``start..`` into the last block (growing it or opening a new one)."""
        assert self.dim is not None
        if not self._blocks or self._blocks[-1].view[5] >= BLOCK_ROWS:
            self._blocks.append(_Block(self.dim, _FIRST_CAPACITY, self._dtype))
        bi = len(self._blocks) - 1
        block = self._blocks[bi]
        vec, bkeys, seq, lsn, alive, used = block.view
        take = min(len(keys) - start, BLOCK_ROWS - used)
        need = used + take
        if need > vec.shape[0]:
            cap = vec.shape[0]
            while cap < need:
                cap = min(BLOCK_ROWS, cap * 2)
            vec2 = np.zeros((cap, self.dim), dtype=vec.dtype)
            vec2[:used] = vec[:used]
            vec, bkeys, seq, lsn, alive = (vec2, _grown(bkeys, used, cap), _grown(seq, used, cap),
                                           _grown(lsn, used, cap), _grown(alive, used, cap))
        # Rounded to float16 even in a float32 block: the same values in either width.
        vec[used:need] = np.asarray(vectors[start : start + take]).astype(np.float16)
        bkeys[used:need] = keys[start : start + take]
        seq[used:need] = np.arange(self._next_seq, self._next_seq + take)
        lsn[used:need] = lsns[start : start + take]
        alive[used:need] = True
        self._next_seq += take
        base = bi * BLOCK_ROWS
        for i in range(take):
            self._slot_of[int(keys[start + i])] = base + used + i
        block.view = (vec, bkeys, seq, lsn, alive, need)  # publish
        return take

    def add(self, key: int, vector: np.ndarray, lsn: int = 0) -> None:
        """Add one normalised vector (the per-remember path, kept short)."""
        dim = self.dim
        if (dim is None or key in self._slot_of or not self._blocks or vector.shape[-1] != dim
                or (self._dtype is np.float32 and len(self._slot_of) >= self.float32_max)):
            self.add_many([key], vector.reshape(1, -1), lsn)
            return
        with self._lock:
            self.raw.changed_locked()
            self.raw.drop_locked(key)
            bi = len(self._blocks) - 1
            block = self._blocks[bi]
            vec, keys, seq, lsns, alive, used = block.view
            if used >= vec.shape[0]:  # full or needs to grow: the general path
                self._append_locked([key], vector.reshape(1, -1), np.asarray([lsn], dtype=np.int64), 0)
            else:
                vec[used] = vector.astype(np.float16)
                keys[used] = key
                seq[used] = self._next_seq
                lsns[used] = lsn
                alive[used] = True
                self._next_seq += 1
                self._slot_of[key] = bi * BLOCK_ROWS + used
                block.view = (vec, keys, seq, lsns, alive, used + 1)  # publish
            if lsn > self.applied_lsn:
                self.applied_lsn = lsn
            if self.changes is not None:
                self.changes.added(np.asarray([key], np.int64), vector.astype(np.float16).reshape(1, -1),
                                   np.asarray([lsn], np.int64))
        if self.ann is not None:
            self.ann.notify_added()

    def replay(self, ops: list[Op]) -> None:
        """Apply another set's recorded changes (``ChangeLog.since``) in their order: a read
        worker's copy brought to the server's state (engram.readpool)."""
        for keys, rows, lsns in ops:
            if rows is None:
                for key, lsn in zip(keys.tolist(), lsns.tolist(), strict=True):
                    self.remove(key, lsn)
            else:
                self.add_many(keys, rows, lsns)

    def _narrow_locked(self) -> None:
        """Turn every block's rows into float16 (exact: they hold float16 values) and keep it so.

        Each block publishes a new view whose other arrays are the same objects, so a removal
        that clears ``alive`` in place is seen through old and new views alike, and a reader
        holding the old float32 view still reads consistent rows.
        """
        self._dtype = np.float16
        for block in self._blocks:
            vec, keys, seq, lsn, alive, n = block.view
            if vec.dtype != np.float16:
                block.view = (vec.astype(np.float16), keys, seq, lsn, alive, n)

    def remove(self, key: int, lsn: int = 0) -> bool:
        with self._lock:
            self.raw.changed_locked()
            self.raw.drop_locked(key)
            found = self._remove_locked(key)
            if lsn > self.applied_lsn:
                self.applied_lsn = lsn
            if self.changes is not None:
                self.changes.removed(key, lsn)
        if found and self.ann is not None:
            self.ann.remove(key)
        return found

    def _remove_locked(self, key: int) -> bool:
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return False
        bi, row = divmod(slot, BLOCK_ROWS)
        block = self._blocks[bi]
        block.view[4][row] = False
        block.dead += 1
        n = block.view[5]
        if block.dead > 64 and block.dead * 2 > n:
            self._compact_locked(bi)
        return True

    def _compact_locked(self, bi: int) -> None:
        """Rewrite block ``bi`` without its dead rows (order, and so seq order, is kept)."""
        block = self._blocks[bi]
        vec, keys, seq, lsn, alive, n = block.view
        live = np.nonzero(alive[:n])[0]
        m = len(live)
        cap = max(_FIRST_CAPACITY, m) if bi < len(self._blocks) - 1 else vec.shape[0]
        vec2 = np.zeros((cap, vec.shape[1]), dtype=vec.dtype)
        vec2[:m] = vec[live]
        keys2, seq2, lsn2 = (np.zeros(cap, np.int64) for _ in range(3))
        keys2[:m], seq2[:m], lsn2[:m] = keys[live], seq[live], lsn[live]
        alive2 = np.zeros(cap, dtype=bool)
        alive2[:m] = True
        base = bi * BLOCK_ROWS
        for row, key in enumerate(keys2[:m].tolist()):
            self._slot_of[key] = base + row
        block.dead = 0
        block.view = (vec2, keys2, seq2, lsn2, alive2, m)

    # -- reader side ----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: object) -> bool:
        return key in self._slot_of

    @property
    def next_seq(self) -> int:
        """Sequence number the next added row will get (rows below it exist or existed)."""
        return self._next_seq

    def views(self) -> list[View]:
        return [b.view for b in list(self._blocks)]

    def vector(self, key: int) -> np.ndarray | None:
        """The stored (normalised) vector of ``key`` as float32, or None."""
        slot = self._slot_of.get(key)
        if slot is None:
            return None
        bi, row = divmod(slot, BLOCK_ROWS)
        out: np.ndarray = self._blocks[bi].view[0][row].astype(np.float32)  # a copy either way
        return out

    def keys(self) -> np.ndarray:
        return np.fromiter(self._slot_of.keys(), dtype=np.int64, count=len(self._slot_of))

    def iter_live(self, batch: int = BLOCK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(keys, float32 vectors)`` of the live rows, block by block (for cognition scans)."""
        for vec, keys, _seq, _lsn, alive, n in self.views():
            idx = np.nonzero(alive[:n])[0]
            for i in range(0, len(idx), batch):
                part = idx[i : i + batch]
                yield keys[part].copy(), vec[part].astype(np.float32, copy=False)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Compatibility: ``(float32 matrix, keys, alive, n)`` of every live row (a copy)."""
        parts = list(self.iter_live())
        if not parts:
            return np.zeros((0, self.dim or 1), np.float32), np.zeros(0, np.int64), np.zeros(0, bool), 0
        keys = np.concatenate([p[0] for p in parts])
        mat = np.concatenate([p[1] for p in parts])
        return mat, keys, np.ones(len(keys), dtype=bool), len(keys)

    def pending(self, from_seq: int, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``limit`` live rows with seq >= ``from_seq``: ``(keys, float16 vectors, seqs)`` copies."""
        out_k, out_v, out_s, have = [], [], [], 0
        for vec, keys, seq, _lsn, alive, n in self.views():
            if n == 0 or seq[n - 1] < from_seq:
                continue
            start = int(np.searchsorted(seq[:n], from_seq))
            idx = start + np.nonzero(alive[start:n])[0]
            idx = idx[: limit - have]
            if len(idx):
                out_k.append(keys[idx].copy())
                out_v.append(vec[idx].astype(np.float16))  # a copy; exact from a float32 block
                out_s.append(seq[idx].copy())
                have += len(idx)
            if have >= limit:
                break
        if not out_k:
            return np.zeros(0, np.int64), np.zeros((0, self.dim or 1), np.float16), np.zeros(0, np.int64)
        return np.concatenate(out_k), np.concatenate(out_v), np.concatenate(out_s)

    def min_lsn_from(self, from_seq: int) -> int | None:
        """Smallest LSN among live rows with seq >= ``from_seq`` (None if there are none)."""
        best: int | None = None
        for _vec, _keys, seq, lsn, alive, n in self.views():
            if n == 0 or seq[n - 1] < from_seq:
                continue
            start = int(np.searchsorted(seq[:n], from_seq))
            live = lsn[start:n][alive[start:n]]
            if len(live):
                m = int(live.min())
                best = m if best is None else min(best, m)
        return best

    def count_from(self, from_seq: int) -> int:
        total = 0
        for _vec, _keys, seq, _lsn, alive, n in self.views():
            if n == 0 or seq[n - 1] < from_seq:
                continue
            start = int(np.searchsorted(seq[:n], from_seq))
            total += int(np.count_nonzero(alive[start:n]))
        return total

    def search_exact(self, query: np.ndarray, k: int, from_seq: int = 0) -> list[tuple[int, float]]:
        """Top-``k`` (key, cosine) over the live rows with seq >= ``from_seq``."""
        if k <= 0 or self.dim is None:
            return []
        q32 = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if q32.shape[0] != self.dim:
            self.check_dim(q32.shape[0])
        q16 = q32.astype(np.float16)
        cand_keys: list[np.ndarray] = []
        cand_scores: list[np.ndarray] = []
        passes = self._passes
        for bi, (vec, keys, seq, _lsn, alive, n) in enumerate(self.views()):
            if n == 0 or seq[n - 1] < from_seq:
                continue
            start = int(np.searchsorted(seq[:n], from_seq)) if from_seq > 0 else 0
            rows = n - start
            if rows <= 0:
                continue
            net = None
            if passes is not None and n == BLOCK_ROWS and start == 0 and 4 * k < n:
                first = passes.get(bi, vec)
                if first is not None:
                    net = first.net(q32, min(n, 2 * k + n - int(np.count_nonzero(alive[:n]))))
            elif passes is not None and n < BLOCK_ROWS:
                passes.discard(bi)  # compacted since its pass was built: free the stale pass
            if net is not None:
                # The int8 net, scored in float32 row by row (as the winners are below): the
                # block's k best of it.
                idx = net[alive[net]]
                if len(idx) > k:
                    part = (vec[idx].astype(np.float32, copy=False) * q32).sum(axis=1)
                    idx = idx[np.argpartition(part, len(idx) - k)[len(idx) - k :]]
            elif vec.dtype == np.float32:
                # One BLAS matrix-vector product over the block (it lets the GIL go) picks the
                # block's k best live rows.
                scores = vec[start:n] @ q32
                live = alive[start:n]
                if live.all():  # the usual case: no copy of the scores, no negation
                    idx = np.argpartition(scores, rows - k)[rows - k :] if rows > k else np.arange(rows)
                else:
                    idx = np.nonzero(live)[0]
                    if len(idx) > k:
                        idx = idx[np.argpartition(scores[idx], len(idx) - k)[len(idx) - k :]]
            elif rows <= _NUMPY_MAX_ROWS:
                idx = np.nonzero(alive[start:n])[0]
            else:
                want = min(rows, k + int(rows - np.count_nonzero(alive[start:n])))
                found = _brute_force(vec[start:n], q16, want, MetricKind.IP, exact=True, threads=1)
                got = np.asarray(found.keys, dtype=np.int64)[: len(found)]
                idx = got[alive[start + got]]
            if len(idx):
                idx = np.sort(idx)  # row order: equal scores rank the same whatever picked them
                # The winners' cosines in float32, computed one way whatever the width and the
                # kernel that picked them: a BLAS product's last bit depends on a row's place in
                # the matrix, a row-wise sum does not, so both widths give equal scores.
                rows32 = vec[start + idx].astype(np.float32, copy=False)
                cand_scores.append((rows32 * q32).sum(axis=1))
                cand_keys.append(keys[start + idx])
        if not cand_keys:
            return []
        all_keys = np.concatenate(cand_keys)
        all_scores = np.concatenate(cand_scores)
        top = np.argpartition(-all_scores, k)[:k] if len(all_scores) > k else np.arange(len(all_scores))
        top = top[np.argsort(-all_scores[top], kind="stable")]
        # float16 rows carry ~1e-4 of rounding: keep cosines inside [-1, 1].
        # (.tolist() once: indexing numpy scalars one by one cost ~5 % of a REST recall's GIL time)
        return list(zip(all_keys[top].tolist(), np.clip(all_scores[top], -1.0, 1.0).tolist(), strict=True))

    def score_keys(self, query: np.ndarray, keys: Sequence[int] | np.ndarray) -> dict[int, float]:
        """Exact cosine of ``query`` against the given keys; keys not (or no longer) stored are skipped."""
        q32 = np.asarray(query, dtype=np.float32).reshape(-1)
        by_block: dict[int, tuple[list[int], list[int]]] = {}
        for key in keys:
            slot = self._slot_of.get(int(key))
            if slot is not None:
                bi, row = divmod(slot, BLOCK_ROWS)
                rows, found = by_block.setdefault(bi, ([], []))
                rows.append(row)
                found.append(int(key))
        out: dict[int, float] = {}
        for bi, (rows, found) in by_block.items():
            vec, bkeys, _seq, _lsn, alive, n = self._blocks[bi].view
            r = np.asarray(rows)
            # The slot may have moved (compaction) or died since we looked it up:
            # trust a row only if it is live and still holds the same key.
            ok = (
                (r < n)
                & alive[np.minimum(r, len(alive) - 1)]
                & (bkeys[np.minimum(r, len(bkeys) - 1)] == found)
            )
            if not ok.all():
                r = r[ok]
                found = [f for f, good in zip(found, ok, strict=True) if good]
            if len(r) == 0:
                continue
            scores = vec[r].astype(np.float32, copy=False) @ q32
            out.update(zip(found, np.clip(scores, -1.0, 1.0).tolist(), strict=True))
        return out

    def search_many(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-``k`` (key, cosine) of each row of ``queries``, exactly, in one pass over the rows.

        For a batch (the background embedder's): one matrix product per block instead of a
        search per query, which at 10k x 384 is ~20x less work for a batch of 64. Beyond
        ``exact_search_max`` rows the caller should search per query through the index.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(len(queries), -1)
        if k <= 0 or self.dim is None or len(q) == 0 or q.shape[1] != self.dim:
            return [[] for _ in range(len(q))]
        keys_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        for vec, keys, _seq, _lsn, alive, n in self.views():
            live = np.nonzero(alive[:n])[0]
            if len(live) == 0:
                continue
            keys_parts.append(keys[live])
            score_parts.append(vec[live].astype(np.float32, copy=False) @ q.T)  # rows x queries
        if not keys_parts:
            return [[] for _ in range(len(q))]
        all_keys = np.concatenate(keys_parts)
        scores = np.concatenate(score_parts)
        out: list[list[tuple[int, float]]] = []
        for j in range(len(q)):
            col = scores[:, j]
            top = np.argpartition(-col, k)[:k] if len(col) > k else np.arange(len(col))
            top = top[np.argsort(-col[top], kind="stable")]
            out.append([(int(all_keys[i]), min(1.0, max(-1.0, float(col[i])))) for i in top])
        return out

    def search(self, query: np.ndarray, k: int, exact: bool = False) -> list[tuple[int, float]]:
        """Top-``k`` by cosine: through the ANN index when there is one and it is ready."""
        ann = self.ann
        if not exact and ann is not None and ann.ready:
            return ann.search(query, k)
        return self.search_exact(query, k)

    def nbytes(self) -> int:
        rows = sum(sum(a.nbytes for a in v[:5]) for v in self.views())
        return rows + (self._passes.nbytes() if self._passes is not None else 0)


def _grown(arr: np.ndarray, used: int, cap: int) -> np.ndarray:
    out = np.zeros(cap, dtype=arr.dtype)
    out[:used] = arr[:used]
    return out
