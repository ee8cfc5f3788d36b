"""What each commit changed in a space's vectors, kept for read workers' copies (engram.readpool).

A read worker's copy of a space carries the server's read token ``(space, store epoch, fans
version)``. When the copy is behind only by commits to the same space object, the server sends
it the vector changes of the epochs it missed instead of having it reload the whole space: this
ring holds them. The ``VectorSet`` records every add (the float16 rows exactly as it stores them,
with their keys and LSNs) and every removal, in the order it applies them, into the open entry;
the store seals the open entry under the epoch it is about to publish (``SpaceStore.on_epoch``,
called after the commit's in-memory effects and before ``epoch`` moves). Replaying the entries in
order on a copy with the same ``VectorSet`` code applies the same operations in the same order,
so the copy's rows, their order and the caches that hang on them end as the server's.

Bounded: at most ``MAX_EPOCHS`` entries and ``MAX_ROWS`` recorded rows (the oldest entries go
first); a copy further behind than the ring reaches is reloaded whole, as without it. Started
lazily (``MemorySpace.track_changes``) and only by the read pool: with ``read_workers = 0``
nothing is recorded.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

#: Sealed epochs kept (the newest): at 50 commits a second, ~20 s of history.
MAX_EPOCHS = 1024
#: Rows kept over all entries (float16; 384-d: 768 bytes a row, ~3 MiB at most). An entry with
#: more rows than this (a bulk import) is not kept: copies behind it reload.
MAX_ROWS = 4096

#: One operation: ``(keys, float16 rows, lsns)`` for an add (``VectorSet.add_many``), or
#: ``(keys, None, lsns)`` for removals (``VectorSet.remove`` of each key).
Op = tuple[np.ndarray, np.ndarray | None, np.ndarray]


class ChangeLog:
    """The ring of per-epoch vector changes of one ``VectorSet`` (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[Op] = []
        self._open_rows = 0
        self._entries: deque[tuple[int, list[Op], int]] = deque()  # (epoch, ops, rows), consecutive
        self._rows = 0
        self.first: int | None = None  # the oldest epoch whose entry is complete and kept
        self.last = -1  # the newest epoch sealed here

    def begin(self, epoch: int, idle: bool) -> None:
        """Start keeping entries, the store being at ``epoch`` (read *after* this log was attached
        to the set). ``idle``: no write was in flight (read after the attachment, before the
        epoch), so every later commit is recorded whole; else the next commit may have applied
        some of its effects before the attachment, and the first entry known complete is the one
        after it."""
        with self._lock:
            if self.first is None:
                self.first = epoch + (1 if idle else 2)

    # -- recording (the VectorSet's writer, under its lock) --------------------------------
    def added(self, keys: np.ndarray, rows: np.ndarray, lsns: np.ndarray) -> None:
        with self._lock:
            self._open.append((keys, rows, lsns))
            self._open_rows += len(keys)

    def removed(self, key: int, lsn: int) -> None:
        with self._lock:
            self._open.append((np.asarray([key], np.int64), None, np.asarray([lsn], np.int64)))
            self._open_rows += 1

    def seal(self, epoch: int) -> None:
        """The open entry is what ``epoch`` changed (the store is about to publish it)."""
        with self._lock:
            ops, rows = self._open, self._open_rows
            self._open, self._open_rows = [], 0
            prev, self.last = self.last, epoch
            first = self.first
            if first is None or epoch < first:
                return  # not started, or possibly incomplete (see begin)
            if (epoch != first and epoch != prev + 1) or rows > MAX_ROWS:
                # A gap (never expected: the store seals every epoch it publishes) or an entry too
                # big to keep: nothing before this epoch can be replayed any more.
                self._entries.clear()
                self._rows = 0
                self.first = epoch + 1
                return
            if self._entries and self._entries[-1][0] != epoch - 1:
                self._entries.clear()
                self._rows = 0
                self.first = epoch
            self._entries.append((epoch, ops, rows))
            self._rows += rows
            while len(self._entries) > MAX_EPOCHS or self._rows > MAX_ROWS:
                gone, _, n = self._entries.popleft()
                self._rows -= n
                self.first = gone + 1

    # -- reading (the server's event loop) ------------------------------------------------------
    def reaches(self, have: int) -> bool:
        """Whether a copy at epoch ``have`` could be brought forward from here (now)."""
        first = self.first
        return first is not None and have + 1 >= first

    def since(self, have: int, want: int) -> list[Op] | None:
        """The operations of epochs ``have + 1 .. want`` in order, or None when the ring does not
        hold every one of them."""
        with self._lock:
            first = self.first
            if first is None or have > want or have + 1 < first or want > self.last:
                return None
            if not self._entries:
                return [] if have == want else None
            out: list[list[Op]] = []
            for epoch, ops, _ in reversed(self._entries):
                if epoch <= have:
                    break
                if epoch <= want:
                    out.append(ops)
            if len(out) != want - have:
                return None
            return [op for ops in reversed(out) for op in ops]

    def __len__(self) -> int:
        return len(self._entries)
