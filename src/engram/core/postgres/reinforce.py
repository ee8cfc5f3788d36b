"""Reinforcement of recalled memories on PostgreSQL: many recalls, one background UPDATE per space.

Recall strengthens what it returns (access count, last access, activation; SPEC §5) without
making the read wait on a write: a recall only notes its memory ids here, and a timer writes
everything pending ``linger`` seconds later (``core/reinforce.py`` does the same on SQLite, where
the write goes through the space's writer thread).

One :class:`PgReinforcer` per server (``PostgresService``), for all its spaces. Any number of
servers reinforce the same rows safely: the UPDATE adds in SQL (``access_count + n``,
``least(1, activation + gain)``, ``greatest(last_access, t)``), so nothing read by one server
is written back over another's increment, and each batch locks its rows in id order, so two
servers' batches queue rather than deadlock (queries.REINFORCE_LOCK).

Best-effort, as on SQLite: a failed write (the database unreachable, the space deleted
meanwhile) is logged and dropped; the recalls themselves succeeded. ``close`` writes what is
pending. Counts add up exactly: ``n`` recalls of a memory in one batch raise its
``access_count`` by ``n`` and its activation by ``0.05 n`` (capped at 1).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import psycopg
import psycopg_pool

from ..reinforce import ACTIVATION_STEP
from .store import PostgresStore

log = logging.getLogger("engram.postgres.reinforce")

#: Attempts of one batch when PostgreSQL aborts it for a deadlock or a serialization failure.
ATTEMPTS = 3


class PgReinforcer:
    """The pending reinforcement of this server's recalls, and the timer that writes it."""

    def __init__(self, store: PostgresStore, linger: float) -> None:
        self.store = store
        self.linger = linger
        self._lock = threading.Lock()
        self._due: dict[str, dict[str, tuple[int, float]]] = {}  # space -> id -> (recalls, latest time)
        self._timer: threading.Timer | None = None
        self._closed = False
        self.written = 0  # rows updated so far (for tests and metrics)

    def add(self, space_id: str, memory_ids: Iterable[str], now: float) -> None:
        """Note one recall of ``memory_ids``; the write follows within ``linger`` seconds."""
        with self._lock:
            if self._closed:
                return
            due = self._due.setdefault(space_id, {})
            for mid in memory_ids:
                n, _ = due.get(mid, (0, now))
                due[mid] = (n + 1, now)
            if not due:
                del self._due[space_id]
                return
            if self._timer is not None:
                return
            if self.linger > 0:
                self._timer = threading.Timer(self.linger, self.flush)
                self._timer.daemon = True
                self._timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Write everything pending, one transaction per space. Never raises."""
        with self._lock:
            pending, self._due = self._due, {}
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()  # no-op when this *is* the timer's thread
        for space_id, due in pending.items():
            rows = [(mid, n, t, ACTIVATION_STEP * n) for mid, (n, t) in due.items()]
            for attempt in range(ATTEMPTS):
                try:
                    self.store.reinforce(space_id, rows)
                    self.written += len(rows)
                    break
                except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    if attempt == ATTEMPTS - 1:
                        log.warning("reinforcement of %d memories of space %s dropped: lock conflicts",
                                    len(rows), space_id)
                except (psycopg.Error, psycopg_pool.PoolTimeout, LookupError) as exc:
                    log.warning("reinforcement of %d memories of space %s dropped: %s",
                                len(rows), space_id, type(exc).__name__)
                    break

    def close(self) -> None:
        """Write what is pending; later recalls are not reinforced (the server is stopping)."""
        with self._lock:
            self._closed = True
        self.flush()
