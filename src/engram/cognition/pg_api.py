"""``PgCognition``: the cognitive operations of one space served from PostgreSQL (issue 17).

The PostgreSQL counterpart of ``api.SpaceCognition``, for ``service_pg.PostgresService``. It
holds nothing per space (a handle is cheap and made per request): every answer is read from the
database, so every server on it answers alike.

Concurrency is the database's, not this process's: a run takes the space's consolidation lock
(``core.postgres.beliefs.lock``, an advisory lock), so at most one run per space runs at a time
across all servers. An on-demand run waits for one in progress; a scheduled one skips.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.models import (
    Belief,
    BeliefPage,
    Citation,
    ConsolidateInput,
    ConsolidationReport,
    DreamStep,
    from_epoch,
)
from ..core.postgres import beliefs as pgb
from ..errors import BeliefNotFound, ShuttingDown
from ..settings import Settings
from .pg_consolidation import PgConsolidationRun

if TYPE_CHECKING:
    from ..core.postgres.space import PostgresSpace


class PgCognition:
    def __init__(self, space: PostgresSpace, settings: Settings,
                 closing: threading.Event | None = None) -> None:
        self.space = space
        self.settings = settings
        self.closing = closing or threading.Event()

    # -- consolidation ------------------------------------------------------------------------------
    def consolidate(self, item: ConsolidateInput) -> ConsolidationReport:
        """Run one consolidation now (waits for a run in progress on any server)."""
        run = PgConsolidationRun(self.space, self.settings, item, self.closing)
        for _ in run.steps():
            pass
        if run.report is None:
            raise ShuttingDown(f"the server closed during the consolidation of memory space "
                               f"{self.space.id!r}; nothing was written")
        return run.report

    def dream(self, item: ConsolidateInput) -> Generator[DreamStep, None, None]:
        """One run as a stream of progress / replay / insight / done steps."""
        return PgConsolidationRun(self.space, self.settings, item, self.closing).steps()

    def scheduled_consolidation(self) -> ConsolidationReport | None:
        """The schedule's run: only if no run is in progress anywhere, and only if the episodes
        changed since the last run (of any server); None when it did not run."""
        run = PgConsolidationRun(self.space, self.settings, ConsolidateInput(), self.closing, scheduled=True)
        for _ in run.steps():
            pass
        return run.report

    # -- beliefs ------------------------------------------------------------------------------------
    def _belief(self, row: tuple[Any, ...], with_centroid: bool) -> Belief:
        bid, content, centroid, strength, schema, citations, created, updated, rid, lsn = row
        return Belief(
            id=str(bid), content=str(content),
            centroid=[float(v) for v in np.asarray(centroid.to_numpy(), dtype=np.float32)]
            if (with_centroid and centroid is not None) else None,
            strength=float(strength), schema_confidence=float(schema),
            citations=[Citation(**c) for c in citations],
            created_at=from_epoch(float(created)), updated_at=from_epoch(float(updated)),
            run_id=str(rid), lsn=int(lsn))

    def list_beliefs(self, cursor: str | None = None, limit: int = 50,
                     include_centroid: bool = False) -> BeliefPage:
        with self.space.store.db.space(self.space.id) as tx:
            rows = pgb.list_beliefs(tx, cursor or "", limit + 1)
            last = pgb.get_meta(tx, pgb.META_LAST_AT)
        more = len(rows) > limit
        rows = rows[:limit]
        return BeliefPage(beliefs=[self._belief(r, include_centroid) for r in rows],
                          next_cursor=str(rows[-1][0]) if more and rows else None,
                          last_consolidation=from_epoch(float(last)) if last else None,
                          memory_space_id=self.space.id)

    def get_belief(self, belief_id: str) -> Belief:
        with self.space.store.db.space(self.space.id) as tx:
            row = pgb.get_belief(tx, belief_id)
        if row is None:
            raise BeliefNotFound(f"no belief with id {belief_id!r} in memory space {self.space.id!r}",
                                 details={"belief_id": belief_id, "memory_space_id": self.space.id})
        return self._belief(row, True)
