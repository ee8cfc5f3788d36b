"""In-memory vectors of one space: an exact matrix, plus an ANN index for large spaces.

Every stored embedding lives, L2-normalised, in one float32 matrix (slot per
vector). The matrix is the ground truth for scores: the approximate index
(``AnnIndex``) only proposes candidates, which are re-scored exactly here.

Concurrency invariant: there is one writer (the space's commit thread) and any
number of readers. Appends write a slot beyond the ``count`` readers see and
then publish the new count; growing the matrix allocates a new array and swaps
the reference, so a reader holding the old array still reads valid memory.
Removal marks the slot dead and zeroes it; a reader racing with it may score
the dead slot but filters it out by ``alive``. Readers never take a lock.
"""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np

from ..errors import DimensionMismatch

_INITIAL_CAPACITY = 1024


def normalise(vec: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(np.sqrt(arr @ arr))
    if norm == 0.0 or not np.isfinite(norm):
        return arr
    return arr / norm


class VectorSet:
    """Exact cosine search over the normalised vectors of one space."""

    def __init__(self, dim: Optional[int] = None) -> None:
        self.dim = dim
        self._matrix = np.zeros((0, dim or 1), dtype=np.float32)
        self._keys = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._slot_of: dict[int, int] = {}
        self._count = 0  # slots in use (alive or dead)
        self._dead = 0
        self._lock = threading.Lock()  # writers only
        self.ann: Optional["AnnLike"] = None

    # -- writer side ----------------------------------------------------------
    def check_dim(self, received: int) -> None:
        if self.dim is not None and received != self.dim:
            raise DimensionMismatch(
                f"embedding has {received} dimensions; this memory space expects {self.dim}",
                details={"expected": self.dim, "received": received},
                example=f"an embedding list of exactly {self.dim} floats",
            )

    def _grow(self, need: int) -> None:
        cap = self._matrix.shape[0]
        if need <= cap:
            return
        new_cap = max(_INITIAL_CAPACITY, cap * 2)
        while new_cap < need:
            new_cap *= 2
        matrix = np.zeros((new_cap, self.dim or 1), dtype=np.float32)
        matrix[: self._count] = self._matrix[: self._count]
        keys = np.zeros(new_cap, dtype=np.int64)
        keys[: self._count] = self._keys[: self._count]
        alive = np.zeros(new_cap, dtype=bool)
        alive[: self._count] = self._alive[: self._count]
        # Publish fully built arrays; readers use whichever set they grabbed.
        self._keys, self._alive, self._matrix = keys, alive, matrix

    def add_many(self, keys: Sequence[int], vectors: np.ndarray) -> None:
        """Add normalised ``vectors`` (n x dim float32) under integer ``keys``."""
        if len(keys) == 0:
            return
        with self._lock:
            if self.dim is None:
                self.dim = int(vectors.shape[1])
                self._matrix = np.zeros((0, self.dim), dtype=np.float32)
            for key in keys:
                if key in self._slot_of:
                    self._remove_locked(int(key))
            start = self._count
            self._grow(start + len(keys))
            self._matrix[start : start + len(keys)] = vectors
            self._keys[start : start + len(keys)] = keys
            self._alive[start : start + len(keys)] = True
            for i, key in enumerate(keys):
                self._slot_of[int(key)] = start + i
            self._count = start + len(keys)  # publish
        if self.ann is not None:
            self.ann.notify_added()

    def add(self, key: int, vector: np.ndarray) -> None:
        self.add_many([key], vector.reshape(1, -1))

    def remove(self, key: int) -> bool:
        with self._lock:
            found = self._remove_locked(key)
        if found and self.ann is not None:
            self.ann.remove(key)
        return found

    def _remove_locked(self, key: int) -> bool:
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return False
        self._alive[slot] = False
        self._matrix[slot] = 0.0
        self._dead += 1
        if self._dead > 1024 and self._dead > self._count // 4:
            self._compact_locked()
        return True

    def _compact_locked(self) -> None:
        n = self._count
        live = np.nonzero(self._alive[:n])[0]
        cap = max(_INITIAL_CAPACITY, int(len(live) * 1.5) + 1)
        matrix = np.zeros((cap, self.dim or 1), dtype=np.float32)
        matrix[: len(live)] = self._matrix[live]
        keys = np.zeros(cap, dtype=np.int64)
        keys[: len(live)] = self._keys[live]
        alive = np.zeros(cap, dtype=bool)
        alive[: len(live)] = True
        self._slot_of = {int(k): i for i, k in enumerate(keys[: len(live)])}
        # Swap the arrays before shrinking the count: a reader that saw the old
        # count with the new arrays would read zero rows, which score 0 and are
        # not alive, so it can never return a wrong key.
        self._keys, self._alive, self._matrix = keys, alive, matrix
        self._count = len(live)
        self._dead = 0

    # -- reader side ----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: int) -> bool:
        return key in self._slot_of

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        n = self._count
        return self._matrix, self._keys, self._alive, n

    def vector(self, key: int) -> Optional[np.ndarray]:
        slot = self._slot_of.get(key)
        if slot is None:
            return None
        return self._matrix[slot].copy()

    def search_exact(self, query: np.ndarray, k: int, start: int = 0) -> list[tuple[int, float]]:
        """Top-``k`` (key, cosine) over slots ``start..count``."""
        matrix, keys, alive, n = self.snapshot()
        if n <= start or k <= 0:
            return []
        scores = matrix[start:n] @ query
        scores = np.where(alive[start:n], scores, -np.inf)
        m = n - start
        if k < m:
            top = np.argpartition(-scores, k)[:k]
        else:
            top = np.arange(m)
        top = top[np.argsort(-scores[top], kind="stable")]
        out = []
        for i in top:
            s = float(scores[i])
            if s == -np.inf:
                break
            out.append((int(keys[start + i]), s))
        return out

    def score_keys(self, query: np.ndarray, keys: Sequence[int]) -> dict[int, float]:
        """Exact cosine of ``query`` against the given keys (missing keys are skipped)."""
        matrix = self._matrix
        slots, found = [], []
        for key in keys:
            slot = self._slot_of.get(int(key))
            if slot is not None and slot < matrix.shape[0]:
                slots.append(slot)
                found.append(int(key))
        if not slots:
            return {}
        scores = matrix[np.asarray(slots)] @ query
        return {k: float(s) for k, s in zip(found, scores)}

    def search(self, query: np.ndarray, k: int, exact: bool = False) -> list[tuple[int, float]]:
        """Top-``k`` by cosine: through the ANN index when there is one and it is ready."""
        if not exact and self.ann is not None and self.ann.ready:
            return self.ann.search(query, k)
        return self.search_exact(query, k)


class AnnLike:  # pragma: no cover - protocol
    ready: bool

    def notify_added(self) -> None: ...

    def remove(self, key: int) -> None: ...

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]: ...
