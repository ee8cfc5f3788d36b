"""A consolidation run over a space in PostgreSQL (``backend = "postgres"``; issue 17).

The same run as SQLite's (``consolidation.Run``: snapshot in id order, the same clustering, the
same belief building), so the same episodes give the same beliefs on both backends: the same ids
(a hash of the space and the cited episodes), citations, contents; strengths and centroids agree
to ~1e-3, because PostgreSQL keeps vectors as ``halfvec`` (float16). The run id hashes the input
vectors, so it differs between the backends (and is stable within one).

What differs is around it. The whole run is ONE transaction holding the space's consolidation
lock (``core.postgres.beliefs``: an advisory lock, so at most one run per space across every
server): snapshot, clustering in Python, then the write under one LSN (beliefs replaced, cited
episodes marked ``consolidated``, the ``consolidation`` event logged, other servers notified).
Clustering holds no row lock and blocks no writer: the LSN (the counter row that orders the
space's writers) is taken only for the write, and what the run cites is re-checked after it.

An abandoned run (a dream whose client went away) rolls back when its generator is closed: the
transaction, and with it the lock, ends; nothing is written.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ..core.models import Belief, ConsolidateInput, from_epoch
from ..core.postgres import beliefs as pgb
from ..core.postgres.connection import SpaceTx
from ..core.postgres.store import PostgresStore
from ..settings import Settings
from .consolidation import Run, Snapshot, build_belief

if TYPE_CHECKING:
    from ..core.postgres.space import PostgresSpace

__all__ = ["PgConsolidationRun"]

BUSY = "skipped: another run of this memory space is in progress (on this or another server)"


class PgConsolidationRun(Run):
    """One run; ``scheduled`` runs do not wait for a run in progress and stop early when no
    episode changed since the last run of any server."""

    def __init__(self, space: PostgresSpace, settings: Settings, item: ConsolidateInput,
                 cancel: threading.Event | None = None, *, scheduled: bool = False) -> None:
        super().__init__(space.id, space.clock, space.embedding_active, settings, item, cancel)
        self.space = space
        self.scheduled = scheduled
        self._tx: SpaceTx | None = None

    @contextmanager
    def _held(self) -> Iterator[str | None]:
        with self.space.store.db.space(self.space.id) as tx:
            if not pgb.lock(tx, wait=not self.scheduled):
                yield BUSY
                return
            self._tx = tx
            try:
                yield None
            finally:
                self._tx = None

    def _session(self) -> AbstractContextManager[str | None]:
        return self._held()

    @property
    def tx(self) -> SpaceTx:
        assert self._tx is not None, "a run reads and writes inside its session"
        return self._tx

    def _read(self) -> tuple[tuple[int, int, float], Snapshot, dict[str, int]]:
        now = self.clock()
        rows = pgb.episodes(self.tx, now)
        dim = self.space.dim or (int(rows[0].vector.shape[0]) if rows else 1)
        x = np.stack([r.vector for r in rows]) if rows else np.zeros((0, dim), np.float32)
        norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        # "rowids" are positions here: the write re-checks episodes by id
        snap = Snapshot(list(range(len(rows))), [r.id for r in rows], [r.content for r in rows],
                        [r.lsn for r in rows], (x / norms).astype(np.float32))
        # The fingerprint of exactly the rows read (consolidation.fingerprint's columns).
        fp = (len(rows), max(snap.lsns, default=0), float(sum(snap.lsns)))
        missing = pgb.without_vector(self.tx, now)
        reason = "awaiting_embedding" if self.space.embedding_active else "no_embedding"
        skipped = {reason: missing} if missing else {}
        return fp, snap, skipped

    def _unchanged(self, fingerprint: tuple[int, int, float]) -> bool:
        """For a scheduled run: the episodes are those the last run (of any server) read, or there
        are none and there never was a run (so a schedule writes nothing into an idle space)."""
        if not self.scheduled:
            return False
        last = pgb.last_fingerprint(self.tx)
        return last == fingerprint or (last is None and fingerprint[0] == 0)

    def _write(self, snap: Snapshot, built: list[tuple[Belief, list[int]]], rid: str,
               now: float) -> tuple[list[Belief], int, int]:
        tx = self.tx
        lsn = PostgresStore.next_lsn(tx)  # first, before reading what it re-checks (store.py's lock order)
        cited = [snap.ids[r] for _, rows in built for r in rows]
        live = pgb.live_among(tx, cited, self.clock()) if cited else set()
        created = pgb.belief_created(tx)
        final: list[Belief] = []
        rows_out: list[pgb.BeliefRow] = []
        for belief, rows in built:
            if any(snap.ids[r] not in live for r in rows):  # lost episodes while we clustered: rebuild
                survivors = [r for r in rows if snap.ids[r] in live]
                if len(survivors) < self.min_size:
                    continue
                belief, rows = build_belief(self.space_id, snap, survivors, rid, now)
            belief.created_at = from_epoch(created.get(belief.id, now))
            belief.lsn = lsn
            final.append(belief)
            rows_out.append(pgb.BeliefRow(
                id=belief.id, content=belief.content, centroid=belief.centroid, strength=belief.strength,
                schema_confidence=belief.schema_confidence,
                citations=[c.model_dump() for c in belief.citations], cited=[snap.ids[r] for r in rows]))
        beliefs = sorted((b.model_copy(update={"centroid": None}) for b in final),
                         key=lambda b: (-b.strength, b.id))
        event = {"run_id": rid, "beliefs": len(beliefs), "episodes_considered": len(snap.ids),
                 "belief_ids": [b.id for b in beliefs[:20]]}
        assert self.fingerprint is not None
        consolidated = pgb.write_run(tx, lsn, rows_out, created, now, rid, self.fingerprint, event)
        return beliefs, lsn, consolidated
