"""The stored float32 embeddings of a space's vectors, kept in memory for exact rescoring.

Recall rescores its vector candidates against the embeddings exactly as stored (the
float32 bytes of ``memories.embedding``, not normalised: ``cognition.candidates``).
Reading them from SQLite costs a query per recall; this keeps the same bytes beside
the ``VectorSet``, keyed by the memory's rowid, so a similarity recall reads none.

It is a cache of the database, never the truth:

* filled once when the space opens (``MemorySpace._load_vectors`` reads every
  embedding anyway) and then on demand, from what a recall read from SQLite;
* emptied of a key whenever the ``VectorSet`` replaces or removes that key's vector
  (remember, update, forget, delete, expiry, a new embedding), under the set's
  writer lock, so it never outlives the vector it belongs to;
* bounded: at most ``capacity`` rows (the set's ``vector_float32_max``); past it no
  row is added and misses are read from SQLite as before.

The race a read-through cache has: a recall reads a row's old bytes, an update then
commits and drops the key here, and the recall stores its old bytes after the drop.
:meth:`fill` prevents it with ``version``, which every change of the set bumps (under
the same lock): bytes read by a reader are stored only if nothing changed since the
reader took the version *before* its read; a write that commits meanwhile bumps the
version when its effect is applied, so either the fill is refused or the write's
drop comes after the fill and removes it.

Memory: one ``bytes`` object per row, dim x 4 bytes plus ~33 bytes of header
(384-d: 1.6 KB per memory, ~31 MB at the default capacity of 20,000).
"""

from __future__ import annotations

import threading
from collections.abc import Container, Iterable


class RawVectors:
    """rowid -> stored embedding bytes, invalidated by the owning ``VectorSet``."""

    def __init__(self, lock: threading.Lock, capacity: int) -> None:
        self._lock = lock  # the VectorSet's writer lock: drops and fills are serialised with its writes
        self.capacity = max(0, capacity)
        self._rows: dict[int, bytes] = {}
        self.version = 0  # bumped (under the lock) by every change of the owning set

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: int) -> bytes | None:
        return self._rows.get(key)

    def split(self, keys: list[int]) -> tuple[list[tuple[int, bytes]], list[int]]:
        """``(key, bytes)`` of the ``keys`` held here, and the keys that are not (order kept)."""
        get = self._rows.get
        have: list[tuple[int, bytes]] = []
        missing: list[int] = []
        for key in keys:
            blob = get(key)
            if blob is None:
                missing.append(key)
            else:
                have.append((key, blob))
        return have, missing

    def nbytes(self) -> int:
        return sum(len(b) for b in self._rows.values())

    # -- called by the VectorSet, its lock held ----------------------------------
    def changed_locked(self) -> None:
        self.version += 1

    def drop_locked(self, key: int) -> None:
        self._rows.pop(key, None)

    def put(self, pairs: Iterable[tuple[int, bytes]]) -> None:
        """Store rows the loader knows are current (read while no write can commit: the
        space's opening, or a re-embedding's rebuild on the writer thread)."""
        with self._lock:
            self.put_locked(pairs)

    def put_locked(self, pairs: Iterable[tuple[int, bytes]]) -> None:
        rows = self._rows
        for key, blob in pairs:
            if len(rows) >= self.capacity and key not in rows:
                return
            rows[key] = blob

    # -- readers -------------------------------------------------------------------
    def fill(self, pairs: Iterable[tuple[int, bytes]], version: int, live: Container[int]) -> bool:
        """Store rows a reader read from SQLite, if the set has not changed since it took
        ``version`` (before its read); only keys ``live`` holds (the set's current keys: a
        suppressed memory keeps its bytes in SQLite but has no vector). Returns whether the
        rows were stored."""
        with self._lock:
            if version != self.version:
                return False
            self.put_locked((k, b) for k, b in pairs if k in live)
            return True
