"""``PgCognition``: the cognitive operations of one space served from PostgreSQL (issue 17).

The PostgreSQL counterpart of ``api.SpaceCognition``, for ``service_pg.PostgresService``. It
holds nothing per space (a handle is cheap and made per request): every answer is read from the
database, so every server on it answers alike.

Concurrency is the database's, not this process's: a run takes the space's consolidation lock
(``core.postgres.beliefs.lock``, an advisory lock), so at most one run per space runs at a time
across all servers. An on-demand run waits for one in progress; a scheduled one skips.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.decay import retention_array
from ..core.embedded import known_dimension
from ..core.models import (
    Belief,
    BeliefPage,
    Citation,
    CompleteInput,
    Completion,
    ConsolidateInput,
    ConsolidationReport,
    DreamStep,
    EmbedderInfo,
    Recognition,
    RecognizeInput,
    Reminiscence,
    ReminisceQuery,
    SpaceStats,
    from_epoch,
    to_epoch,
)
from ..core.postgres import beliefs as pgb
from ..core.postgres.cogreads import CognitionReads, stats
from ..core.postgres.store import MemoryRow, Vector
from ..errors import BeliefNotFound, DimensionMismatch, EmbedderUnavailable, ShuttingDown
from ..index.vector import normalise
from ..settings import Settings
from .completion import complete_with
from .pg_consolidation import PgConsolidationRun
from .recognition import judge
from .reminiscence import MIN_TOPIC_SIMILARITY, tell

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

    # -- recognize, reminisce, complete, introspect --------------------------------------------------
    def _reads(self) -> CognitionReads:
        return CognitionReads(self.space.store.db, self.space.id, self.space.clock())

    def _check_dim(self, n: int) -> None:
        if self.space.dim is not None and n != self.space.dim:
            raise DimensionMismatch(f"embedding has {n} dimensions; this memory space expects "
                                    f"{self.space.dim}",
                                    details={"expected": self.space.dim, "received": n},
                                    example=f"an embedding list of exactly {self.space.dim} floats")

    def _nearest(self, query: Vector, k: int) -> list[tuple[str, float]]:
        if self.space.dim is None or query.shape[0] != self.space.dim:
            return []
        return self.space.store.recall(self.space.id, query, k)

    def recognize(self, item: RecognizeInput) -> Recognition:
        """As ``recognition.recognize``: the best of cosine (the cue's vector, or its text embedded)
        and word overlap with the text matches; scored by the same ``judge``."""
        space, reads = self.space, self._reads()
        wide = max(20, item.max_matches * 4)
        query: Vector | None = None
        if item.embedding is not None and space.dim is not None:
            self._check_dim(len(item.embedding))
            query = normalise(item.embedding)
        elif item.content and item.content.strip() and space.embedding_active and space.embedders is not None:
            try:  # familiar by meaning too, in a space that embeds text; else by words alone
                query = np.asarray(space.embedders.embed_query(space.embedder_spec, item.content.strip()),
                                   dtype=np.float32)
            except EmbedderUnavailable:
                query = None
        scores: dict[str, float] = {}
        if query is not None:
            for mid, sim in self._nearest(query, wide):
                scores[mid] = max(scores.get(mid, 0.0), max(0.0, min(1.0, sim)))
        text_rows = list(reads.text_any(item.content, wide)) if item.content and item.content.strip() else []
        rows = reads.rows(list(dict.fromkeys([*scores, *text_rows])))
        live = {mid: (row.id, row.content) for mid, (row, _) in rows.items() if not row.suppressed}
        return judge(space.id, item, scores, text_rows, live)

    def reminisce(self, query: ReminisceQuery) -> Reminiscence:
        """As ``reminiscence.reminisce``: a window alone tells its first episodes in time order; a
        topic (text, embedding) picks the most relevant episodes first (``tell``)."""
        space, reads = self.space, self._reads()
        start = to_epoch(query.time_start) if query.time_start is not None else None
        end = to_epoch(query.time_end) if query.time_end is not None else None
        if not (bool(query.topic and query.topic.strip()) or query.embedding is not None):
            window = reads.episodes_in_window(start, end, query.limit)
            return Reminiscence(episodes=[space.to_memory(row) for row, _ in window],
                                memory_space_id=space.id)
        relevance: dict[str, float] = {}
        wide = max(200, query.limit * 4)
        if query.topic and query.topic.strip():
            relevance.update(reads.text_any(query.topic, wide, episodes_only=True))
        if query.embedding is not None and space.dim is not None:
            self._check_dim(len(query.embedding))
            for mid, sim in self._nearest(normalise(query.embedding), wide):
                if sim >= MIN_TOPIC_SIMILARITY:
                    relevance[mid] = max(relevance.get(mid, 0.0), sim)
        rows = reads.rows(list(relevance))

        def in_window(when: float | None) -> bool:
            return when is not None and (start is None or when >= start) and (end is None or when <= end)

        told = {mid: (float(row.ep_when or 0.0), row.id) for mid, (row, _) in rows.items()
                if row.kind == "episode" and not row.suppressed and in_window(row.ep_when)}
        keep = tell(relevance, told, query.limit)
        return Reminiscence(episodes=[space.to_memory(rows[m][0]) for m in keep], memory_space_id=space.id)

    def complete(self, item: CompleteInput) -> Completion:
        """As ``completion.complete`` (the same scoring and attribution, ``complete_with``), over
        candidates read from the database."""
        reads = self._reads()

        def candidates(given: dict[str, Any], probe: Vector | None) -> tuple[set[Any], dict[Any, float]]:
            found: set[str] = set()
            text = " ".join(str(given[f]) for f in ("what", "why", "how") if f in given)
            if text:
                found.update(reads.text_any(text, 200, episodes_only=True))
            if "where_location" in given:
                found.update(reads.episodes_at_place(str(given["where_location"]).lower().strip()))
            for person in given.get("who", [])[:16]:
                found.update(reads.episodes_with_person(json.dumps(person.lower())[1:-1]))
            if "when" in given:
                found.update(reads.episodes_near_time(to_epoch(given["when"])))
            cosines: dict[Any, float] = {}
            if probe is not None:
                for mid, sim in reads.prefix_cosines(probe):
                    if sim > 0:  # (NaN is not > 0)
                        cosines[mid] = min(1.0, sim)
                found.update(cosines)
            return set(found), cosines

        def rows_of(keys: set[Any]) -> dict[Any, Any]:
            return {mid: sqlite_layout(row, vec) for mid, (row, vec) in reads.rows(sorted(keys)).items()}

        return complete_with(self.space.id, self.space.dim, item, candidates, rows_of)

    def introspect(self) -> SpaceStats:
        space = self.space
        now = space.clock()
        st = stats(space.store.db, space.id, now, pgb.META_LAST_AT)
        act = st.activation
        avg = (float(np.clip(act[:, 0] * retention_array(now - act[:, 1], act[:, 2]), 0.0, 1.0).mean())
               if len(act) else 0.0)
        spec = space.embedder_spec
        embedder = EmbedderInfo(provider=spec.provider, model=spec.model, dimension=None) \
            if spec.provider == "none" else EmbedderInfo(
                provider=spec.provider, model=spec.model,
                dimension=space.dim or known_dimension(spec, space.settings.openai_dimension))
        return SpaceStats(
            memory_space_id=space.id, memories=st.total, by_type=st.by_type,
            by_consolidation_state=st.by_state,
            suppressed=st.suppressed, associations=st.associations, beliefs=st.beliefs,
            average_activation=round(avg, 6), index={"backend": "postgres", "exact_vector_scan": True},
            storage_bytes=st.row_bytes, last_lsn=space.last_lsn,
            last_consolidation=from_epoch(float(st.last_consolidation)) if st.last_consolidation else None,
            dimension=space.dim, embedder=embedder, embedding_backlog=0, healthy=True)


def sqlite_layout(row: MemoryRow, vec: Vector | None) -> tuple[Any, ...]:
    """``row`` as a tuple of the SQLite store's ``MEMORY_COLUMNS`` (what ``completion`` reads)."""
    emb = None if vec is None else np.asarray(vec, dtype=np.float32).tobytes()
    return (None, row.id, row.kind, row.content, emb, row.confidence, row.created_at, row.last_access,
            row.access_count, row.activation, row.decay_rate, json.dumps(row.tags), row.memory_type,
            json.dumps(row.metadata), int(row.suppressed), row.lsn, row.ep_when, row.what, row.where_location,
            row.who, row.why, row.how, row.emotional_valence, row.importance, row.consolidation_state,
            row.expires_at)
