"""Reinforcement of recalled memories, coalesced: many recalls, one background write.

Recall strengthens what it returns (access count, last access, activation; SPEC §5)
without making the read wait on disk. Writing that as one transaction per recall
cost every recall a wake-up of the space's writer thread, a commit and an fsync,
and at 16 concurrent callers those hand-offs of the GIL were a large share of the
server's time (docs/benchmarks.md, "Where a recall's time goes").

So a recall only adds its row ids to a pending table here. One write op drains the
table: it is submitted after ``linger`` seconds (a timer) or, sooner, just before
the space's next write of any kind (the store's ``before_submit`` hook). That keeps
the order a caller can observe: a write submitted after a recall commits after that
recall's reinforcement (the writer is FIFO), so a barrier write still proves it
durable. Reinforcement stays best-effort: if the space closes first, what is pending
is written by ``flush`` on close if the store still takes writes, else dropped, as a
queued reinforcement always could be.

Counts add up exactly: ``n`` recalls of a row in one drain raise ``access_count`` by
``n`` and activation by ``0.05 n`` (capped at 1), the same as ``n`` separate writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import StorageError

if TYPE_CHECKING:
    from ..storage.sqlite_store import SpaceStore

ACTIVATION_STEP = 0.05  # activation gained per recall that returned the memory


class Reinforcer:
    """The pending reinforcement of one space and the one write that applies it."""

    def __init__(self, store: SpaceStore, linger: float) -> None:
        self.store = store
        self.linger = linger
        self._lock = threading.Lock()
        self._due: dict[int, tuple[int, float]] = {}  # rowid -> (recalls, latest recall time)
        self._timer: threading.Timer | None = None

    def add(self, rowids: Iterable[int], now: float) -> None:
        """Note one recall of ``rowids``; the write follows within ``linger`` seconds."""
        with self._lock:
            for r in rowids:
                n, _ = self._due.get(r, (0, now))
                self._due[r] = (n + 1, now)
            if self._timer is not None or not self._due:
                return
            if self.linger <= 0:
                start_timer = False
            else:
                start_timer = True
                self._timer = threading.Timer(self.linger, self.flush)
                self._timer.daemon = True
        if start_timer:
            assert self._timer is not None
            self._timer.start()
        else:
            self.flush()

    def flush(self) -> None:
        """Submit one write of everything pending (called by the timer, before any other write
        of the space, and on close). Never raises: reinforcement is best-effort."""
        # The drain and its submit happen under one lock: a write whose hook finds nothing
        # pending can only be queued after the drain that took its recall's rows (FIFO).
        with self._lock:
            due, self._due = self._due, {}
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()  # no-op when this *is* the timer's thread
            if not due:
                return
            rows = [(n, t, ACTIVATION_STEP * n, r) for r, (n, t) in due.items()]

            def op(conn: sqlite3.Connection, _lsn: int) -> None:
                conn.executemany(
                    "UPDATE memories SET access_count = access_count + ?, last_access = max(last_access, ?), "
                    "activation = min(1.0, activation + ?) WHERE rowid = ?",
                    rows,
                )

            # StorageError means closing (or broken): the recalls themselves succeeded.
            with contextlib.suppress(StorageError):
                self.store.submit(op, mutates=False, wait=False, flush_first=False, quiet=True)
