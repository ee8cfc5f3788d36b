"""``SpaceCognition``: the cognitive operations of one memory space.

One instance per loaded space (``space.extensions["cognition"]``). Every method
reads and writes only its own space's store and vectors; the modules it
delegates to receive that one ``MemorySpace`` and nothing else, which is what
keeps edges, beliefs, activation and completions from ever crossing spaces.

Concurrency: at most one consolidation runs per space at a time (``_run_lock``).
An on-demand run waits for a scheduled one in progress; a scheduled tick finding
a run in progress skips (the next tick re-checks the fingerprint). Neither holds
any store lock while clustering: see ``consolidation``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.models import (
    AssociateInput,
    Association,
    Belief,
    BeliefPage,
    Citation,
    CompleteInput,
    Completion,
    ConsolidateInput,
    ConsolidationReport,
    DreamStep,
    Recognition,
    RecognizeInput,
    Reminiscence,
    ReminisceQuery,
    SpaceStats,
    from_epoch,
)
from ..errors import BeliefNotFound, ShuttingDown
from ..settings import Settings
from . import associations, completion, introspection, recognition, reminiscence
from .consolidation import META_LAST_AT, ConsolidationRun, fingerprint
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..core.space import MemorySpace

log = logging.getLogger("engram.cognition")

BELIEF_COLUMNS = (
    "id, content, centroid, strength, schema_confidence, citations, created_at, updated_at, run_id, lsn"
)


class SpaceCognition:
    def __init__(self, space: MemorySpace, settings: Settings) -> None:
        self.space = space
        self.settings = settings
        self._run_lock = threading.Lock()
        self._closing = threading.Event()
        self._last_fingerprint: tuple[int, int, float] | None = None
        self.last_report: ConsolidationReport | None = None
        self.scheduler = Scheduler(
            space.id, settings.consolidation_interval_seconds, self.scheduled_consolidation
        )
        if space.healthy:
            self.scheduler.start()

    # -- associations, recognition, reminiscence, completion --------------------
    def associate(self, item: AssociateInput) -> Association:
        return associations.associate(self.space, item)

    def recognize(self, item: RecognizeInput) -> Recognition:
        return recognition.recognize(self.space, item)

    def reminisce(self, query: ReminisceQuery) -> Reminiscence:
        return reminiscence.reminisce(self.space, query)

    def complete(self, item: CompleteInput) -> Completion:
        return completion.complete(self.space, item)

    def introspect(self) -> SpaceStats:
        return introspection.introspect(self.space)

    # -- consolidation ------------------------------------------------------------
    def consolidate(self, item: ConsolidateInput) -> ConsolidationReport:
        """Run one consolidation now (waits for a run already in progress)."""
        run = ConsolidationRun(self.space, self.settings, item, self._closing)
        for _ in self._locked(run):
            pass
        if run.report is None:
            raise ShuttingDown(
                f"memory space {self.space.id!r} closed during consolidation; nothing was written"
            )
        return run.report

    def dream(self, item: ConsolidateInput) -> Iterator[DreamStep]:
        """One consolidation run as a stream of progress / replay / insight / done steps."""
        return self._locked(ConsolidationRun(self.space, self.settings, item, self._closing))

    def _locked(self, run: ConsolidationRun) -> Iterator[DreamStep]:
        # A plain Lock, not an RLock: the async service advances a dream with
        # ``next`` on worker threads, so it may be released by another thread
        # than the one that took it.
        self.space.check_healthy()
        with self._run_lock:
            yield from run.steps()
            if run.report is not None:
                self.last_report = run.report
                self._last_fingerprint = run.fingerprint

    def scheduled_consolidation(self) -> ConsolidationReport | None:
        """The schedule's tick: consolidate if the episodes changed since the last run."""
        if self._closing.is_set() or not self.space.healthy or self.space.closed:
            return None
        if fingerprint(self.space) == self._last_fingerprint:
            return None
        if not self._run_lock.acquire(blocking=False):
            return None  # a run is in progress; the next tick re-checks
        try:
            run = ConsolidationRun(self.space, self.settings, ConsolidateInput(), self._closing)
            for _ in run.steps():
                pass
            if run.report is not None:
                self.last_report = run.report
                self._last_fingerprint = run.fingerprint
            return run.report
        finally:
            self._run_lock.release()

    # -- beliefs ----------------------------------------------------------------
    def _belief(self, row: Any, with_centroid: bool) -> Belief:
        bid, content, centroid, strength, schema, citations, created, updated, rid, lsn = row
        return Belief(
            id=bid,
            content=content,
            centroid=np.frombuffer(centroid, dtype=np.float32).tolist()
            if (with_centroid and centroid)
            else None,
            strength=strength,
            schema_confidence=schema,
            citations=[Citation(**c) for c in json.loads(citations)],
            created_at=from_epoch(created),
            updated_at=from_epoch(updated),
            run_id=rid,
            lsn=lsn,
        )

    def list_beliefs(
        self, cursor: str | None = None, limit: int = 50, include_centroid: bool = False
    ) -> BeliefPage:
        conn = self.space.check_healthy().reader()  # limit checked by EngramService.page_size
        try:
            rows = conn.execute(
                f"SELECT {BELIEF_COLUMNS} FROM beliefs WHERE id > ? ORDER BY id LIMIT ?",
                (cursor or "", limit + 1),
            ).fetchall()
            last = conn.execute("SELECT value FROM meta WHERE key = ?", (META_LAST_AT,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self.space.guard_read(exc)
            raise
        more = len(rows) > limit
        rows = rows[:limit]
        return BeliefPage(
            beliefs=[self._belief(r, include_centroid) for r in rows],
            next_cursor=str(rows[-1][0]) if more and rows else None,
            last_consolidation=from_epoch(float(last[0])) if last else None,
            memory_space_id=self.space.id,
        )

    def get_belief(self, belief_id: str) -> Belief:
        conn = self.space.check_healthy().reader()
        try:
            row = conn.execute(f"SELECT {BELIEF_COLUMNS} FROM beliefs WHERE id = ?", (belief_id,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self.space.guard_read(exc)
            raise
        if row is None:
            raise BeliefNotFound(
                f"no belief with id {belief_id!r} in memory space {self.space.id!r}",
                details={"belief_id": belief_id, "memory_space_id": self.space.id},
            )
        return self._belief(row, True)

    # -- lifecycle ----------------------------------------------------------------
    def close(self) -> None:
        """Stop the schedule; a run in progress finishes its step and writes nothing more."""
        self._closing.set()
        self.scheduler.stop()
