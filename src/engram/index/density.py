"""How crowded each memory's neighbourhood is: the fan of a memory, for recall to discount.

A memory that sits close to many others ("how are you doing?", "right, one of those
weeks") is reached by almost any cue and tells little about any of them: ACT-R's fan
effect (the more a memory is associated with, the less any one cue activates it), and,
in embedding terms, a *hub*. Recall discounts a memory's cosine by how much denser its
neighbourhood is than the space's average (cross-domain similarity local scaling, CSLS).

For each memory this keeps the cosines of its ``k`` nearest neighbours, updated
incrementally: a new memory's search result gives its own list, and each neighbour
found may take the new memory into its list. Entries of deleted memories may linger in
their neighbours' lists until those are recomputed; the effect is a slightly stale
estimate, never a wrong result. Nothing here is persisted: a space recomputes it in the
background after opening.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

import numpy as np

#: Neighbours per memory whose cosines make its density (both backends: SQLite keeps them here,
#: PostgreSQL in its ``fans`` table).
K = 5
#: Changes of the fans remembered for read workers' copies (see LocalDensity.track): one a key
#: set or removed; a measure sets up to K + 1.
CHANGES_KEPT = 16_384


def admitted(top: np.ndarray, sim: float, k: int = K) -> np.ndarray | None:
    """``top`` (up to ``k`` cosines, ascending) after a new neighbour at cosine ``sim``; None when
    ``sim`` does not enter it (a full list whose smallest is at least ``sim``)."""
    if len(top) < k:
        return np.sort(np.append(top, np.float32(sim)))
    if sim > top[0]:
        return np.sort(np.append(top[1:], np.float32(sim)))
    return None


def own_top(cosines: Iterable[float], k: int = K) -> np.ndarray:
    """A newly measured memory's list: the cosines of its ``k`` nearest (given nearest first), ascending."""
    return np.sort(np.asarray(list(cosines)[:k], dtype=np.float32))


def mean_of(top: np.ndarray) -> float:
    """A memory's density: the mean of its list (0 for an empty one)."""
    return float(top.mean()) if len(top) else 0.0


class LocalDensity:
    def __init__(self, k: int = K) -> None:
        self.k = k
        self._top: dict[int, np.ndarray] = {}  # key -> up to k neighbour cosines, ascending
        self._value: dict[int, float] = {}  # key -> mean of _top[key]
        self._total = 0.0
        self._lock = threading.Lock()
        self.version = 0  # bumped by every change: equal versions, equal fans
        # (version, key) of each change, once a read pool asks (track): a copy of the fans at an
        # older version is brought forward with the current values of the keys changed since.
        self._log: deque[tuple[int, int]] | None = None
        self._log_from = 0  # the first version the log holds every change from

    def snapshot(self) -> tuple[dict[int, float], float, int]:
        """The fans as they are now and the version they are at (for a read worker's copy)."""
        with self._lock:
            return dict(self._value), self._total, self.version

    @classmethod
    def restored(cls, values: dict[int, float], total: float, k: int = K) -> LocalDensity:
        """A copy that answers :meth:`excess` as the snapshot's source did (it is not updated)."""
        out = cls(k)
        out._value, out._total = values, total
        return out

    def track(self) -> None:
        """Remember which key each change touched from now on (for :meth:`changes_since`)."""
        with self._lock:
            if self._log is None:
                self._log = deque(maxlen=CHANGES_KEPT)
                self._log_from = self.version + 1

    def changes_since(self, version: int) -> tuple[dict[int, float | None], float, int] | None:
        """What a copy of the fans at ``version`` needs to equal them now: the current value of
        every key changed since (None: removed), the total and the version they are at; None when
        the changes since ``version`` are not all remembered."""
        with self._lock:
            log = self._log
            if log is None or not self._reaches_locked(version):
                return None
            keys: dict[int, None] = {}
            for ver, key in reversed(log):
                if ver <= version:
                    break
                keys[key] = None
            return {k: self._value.get(k) for k in keys}, self._total, self.version

    def reaches(self, version: int) -> bool:
        """Whether :meth:`changes_since` ``version`` would answer (without building it)."""
        with self._lock:
            return self._reaches_locked(version)

    def _reaches_locked(self, version: int) -> bool:
        log = self._log
        if log is None or version > self.version or version + 1 < self._log_from:
            return False
        return version == self.version or (bool(log) and log[0][0] <= version + 1)

    def apply(self, values: dict[int, float | None], total: float) -> None:
        """A copy (:meth:`restored`) given another's :meth:`changes_since`."""
        with self._lock:
            for key, value in values.items():
                if value is None:
                    self._value.pop(key, None)
                else:
                    self._value[key] = value
            self._total = total

    def _set(self, key: int, top: np.ndarray) -> None:
        self.version += 1
        if self._log is not None:
            self._log.append((self.version, key))
        value = mean_of(top)
        self._total += value - self._value.get(key, 0.0)
        self._top[key] = top
        self._value[key] = value

    def observe(self, key: int, neighbours: Iterable[tuple[int, float]]) -> None:
        """``key`` was searched: its nearest other memories and their cosines."""
        pairs = [(int(n), float(s)) for n, s in neighbours if int(n) != key]
        with self._lock:
            self._set(key, own_top((s for _, s in pairs), self.k))
            for other, sim in pairs:
                top = self._top.get(other)
                if top is None:
                    continue  # not measured yet: its own search will see this memory
                new = admitted(top, sim, self.k)
                if new is not None:
                    self._set(other, new)

    def remove(self, key: int) -> None:
        with self._lock:
            self.version += 1
            if self._log is not None:
                self._log.append((self.version, key))
            self._total -= self._value.pop(key, 0.0)
            self._top.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._value

    def __len__(self) -> int:
        return len(self._value)

    def excess(self, key: int) -> float:
        """How much denser ``key``'s neighbourhood is than the average (0 when unknown)."""
        value = self._value.get(key)
        n = len(self._value)
        if value is None or n < 2:
            return 0.0
        return value - self._total / n
