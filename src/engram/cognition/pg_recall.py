"""Recall on PostgreSQL (``backend = "postgres"``; SPEC §5, §13): the SQLite recall's stages and
scoring over a :class:`~engram.core.postgres.space.PostgresSpace`.

    gather    candidates from the vector (pgvector cosine, top ``wide`` of the space), the
              query's words (``ts_rank`` scaled to the best match) or, neither given, the context
    filter    candidates.light_matches (suppression, time range, location, participants, tags,
              type) and the metadata filter, on each candidate's row (one read for all)
    spread    modes spreading / hybrid: spreading.spread from the best direct candidates over
              ``engram.associations``, one statement per hop (PostgresStore.neighbours)
    rank      "cognitive": recall.relevance_array + recall.fused_scores (the SQLite arithmetic);
              "similarity": cosine order
    answer    buckets, confidence, signals, activation paths; reinforcement is handed to the
              server's PgReinforcer (a background UPDATE), and ``recalled`` is published

What differs from SQLite, by construction (docs/scale-out.md): cosines are of the stored
``halfvec`` (float16) vectors, not rescored in float32; the text score is ``ts_rank`` over the
best match (SQLite: coverage and BM25). The fan adjustment is SQLite's (recall.fan_adjusted):
each memory's neighbourhood density is kept in ``memories.fan`` by the write that stores its
vector (core/postgres/store.py ``_measure``, index/density.py's definition), against the
space's average, read once per recall (``PostgresStore.fans``). Memory ids are interned to small
integers for the run, so that spreading, candidates and paths share the SQLite code's types.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import filters
from ..core.decay import current_activation, recency
from ..core.models import (
    Cue,
    RankMode,
    RecallItem,
    RecallMode,
    RecallResult,
    to_epoch,
)
from .associations import MAX_FANOUT
from .candidates import Candidate, has_context, light_matches
from .candidates import _like_escape as like_escape
from .recall import (
    COSINE_SCALE,
    FAN_LIFT_MAX,
    SPREAD_BEAM,
    SPREAD_SCORED_MIN,
    W_TEXT,
    Scored,
    bucketed,
    fused_scores,
    item_of,
    kept_in_order,
    relevance_array,
    signals_of,
)
from .spreading import spread

if TYPE_CHECKING:
    from ..core.postgres.reinforce import PgReinforcer
    from ..core.postgres.space import PostgresSpace
    from ..core.postgres.store import MemoryRow

BACKEND = "postgres"


class PgRun:
    """The state one recall carries through its stages (cognition.recall.RecallRun's part that
    applies here), with the interning of memory ids."""

    def __init__(self, space: PostgresSpace, cue: Cue) -> None:
        self.space, self.cue = space, cue
        self.t0 = time.perf_counter()
        self.k = min(cue.max_results, space.settings.max_results_limit)
        self.wide = max(50, self.k * 4)
        if cue.rank is RankMode.similarity:
            self.wide = max(self.wide, 10 * self.k)
        self.node = filters.parse(cue.filter) if cue.filter else None
        self.vector: np.ndarray | None = None
        self.origin = "none"
        self.ids: list[str] = []
        self.num: dict[str, int] = {}
        self.cands: dict[int, Candidate] = {}
        self.rows: dict[int, MemoryRow] = {}
        self.context_only = False
        self.meta: dict[str, Any] = {}
        #: Fans read so far (interned ids; recall.fan's value: the excess over the average,
        #: capped below at -FAN_LIFT_MAX), and the space's average (None: not read yet).
        self.crowd: dict[int, float] = {}
        self.fan_mean: tuple[float, int] | None = None

    def intern(self, memory_id: str) -> int:
        n = self.num.get(memory_id)
        if n is None:
            n = self.num[memory_id] = len(self.ids)
            self.ids.append(memory_id)
        return n

    def cand(self, memory_id: str) -> Candidate:
        n = self.intern(memory_id)
        c = self.cands.get(n)
        if c is None:
            c = self.cands[n] = Candidate(n)
        return c

    def keeps(self, row: MemoryRow) -> bool:
        """The cue's context, tags, type and metadata filter admit ``row`` (suppressed never)."""
        if not light_matches(self.cue, light(row)):
            return False
        return self.node is None or filters.evaluate(self.node, row.metadata)


def light(row: MemoryRow) -> tuple[Any, ...]:
    """``row`` as a light row of cognition/candidates.py (LIGHT_COLUMNS), for light_matches."""
    return (0, row.id, row.confidence, row.created_at, row.last_access, row.activation, row.decay_rate,
            json.dumps(row.tags), row.memory_type, row.suppressed, row.ep_when, row.where_location, row.who)


def recall(space: PostgresSpace, cue: Cue, reinforcer: PgReinforcer | None = None) -> RecallResult:
    run = PgRun(space, cue)
    gather(run)
    filter_candidates(run)
    if cue.mode is not RecallMode.similarity and run.cands and cue.rank is RankMode.cognitive:
        spread_into(run)
    scored = rank(run)
    return answer(run, scored, reinforcer)


# -- stages -----------------------------------------------------------------------------------
def gather(run: PgRun) -> None:
    space, cue = run.space, run.cue
    store, sid = space.store, space.id
    vec, run.origin, note = space.query_vector(cue)
    run.vector = vec
    if note:
        run.meta["note"] = note
    dim = space.dim
    if vec is not None and dim is None:  # another server may have bound it since this handle read it
        info = store.space(sid)
        dim = info.dimension if info is not None else None
    if vec is not None and dim is not None and vec.shape[0] == dim:
        for rank_, (mid, sim) in enumerate(store.recall(sid, vec, run.wide, run.node), 1):
            c = run.cand(mid)
            c.similarity = max(0.0, sim)
            c.vector_rank = rank_
            c.sources.add("similarity")
    has_query = bool(cue.query and cue.query.strip())
    if has_query:
        assert cue.query is not None
        texts = store.search_text(sid, cue.query, run.wide * (4 if run.node is not None else 1))
        best = max((s for _, s in texts), default=0.0) or 1.0
        for rank_, (mid, score) in enumerate(texts, 1):
            c = run.cand(mid)
            c.text = min(1.0, max(0.0, score / best))
            c.text_rank = rank_
            c.sources.add("text")
    run.context_only = vec is None and not has_query
    if run.context_only:
        many = cue.participants or cue.tags
        for row in store.context_candidates(
            sid,
            t_from=to_epoch(cue.time_start) if cue.time_start is not None else -np.inf,
            t_to=to_epoch(cue.time_end) if cue.time_end is not None else np.inf,
            place="%" + like_escape(cue.location.lower()) + "%" if cue.location else "%",
            memory_type=cue.memory_type.value if cue.memory_type is not None else None,
            people=[p.lower() for p in cue.participants], tags=list(cue.tags), filter=run.node,
            limit=max(run.wide, 1000) if many else run.wide,
        ):
            c = run.cand(row.id)
            c.context = 1.0
            c.sources.add("context")
            run.rows[c.rowid] = row


def filter_candidates(run: PgRun) -> None:
    missing = [run.ids[n] for n in run.cands if n not in run.rows]
    for mid, got in run.space.store.rows_by_id(run.space.id, missing).items():
        run.rows[run.num[mid]] = got
    filtering = has_context(run.cue)
    for n in list(run.cands):
        row = run.rows.get(n)
        if row is None or not run.keeps(row):
            run.cands.pop(n)
        elif filtering and not run.context_only:
            run.cands[n].context = 1.0


def crowding(run: PgRun, cands: list[Candidate]) -> np.ndarray:
    """recall.fan of each candidate: how much more crowded its neighbourhood is than the space's
    average, for the server's own query vectors only (0 otherwise, or when not measured)."""
    if run.origin != "embedder":
        return np.zeros(len(cands))
    missing = [c.rowid for c in cands if c.rowid not in run.crowd]
    if missing:
        got, mean, n = run.space.store.fans(run.space.id, [run.ids[m] for m in missing])
        if run.fan_mean is None:
            run.fan_mean = (mean, n)
        mean, n = run.fan_mean
        for m in missing:
            value = got.get(run.ids[m])
            run.crowd[m] = 0.0 if value is None or n < 2 else max(-FAN_LIFT_MAX, value - mean)
    return np.array([run.crowd[c.rowid] for c in cands], dtype=np.float64)


def direct(run: PgRun, cands: list[Candidate]) -> np.ndarray:
    """Direct relevance (recall.relevance_array) of ``cands``, the fan applied as on SQLite."""
    if run.context_only:
        return np.array([c.context for c in cands], dtype=np.float64)
    sim = np.array([c.similarity for c in cands], dtype=np.float64)
    text = np.array([c.text for c in cands], dtype=np.float64)
    has_vector = np.array([c.vector_rank is not None for c in cands], dtype=bool)
    embedded = run.origin == "embedder"
    scale = COSINE_SCALE.get(run.space.embedder_spec.provider, (0.0, 1.0)) if embedded else None
    return relevance_array(sim, text, has_vector, scale, crowding(run, cands) if embedded else None,
                           W_TEXT if run.vector is not None else 1.0)


def spread_into(run: PgRun) -> None:
    """Seed from the best direct candidates, spread over the space's associations, and add what
    it reached (cognition.recall.spread_into, with a PostgreSQL neighbour fetch)."""
    space, cue, cands, settings = run.space, run.cue, run.cands, run.space.settings
    listed = list(cands.values())
    rel = dict(zip((c.rowid for c in listed), direct(run, listed).tolist(), strict=True))
    best = sorted(listed, key=lambda c: (-rel[c.rowid], run.ids[c.rowid]))[: max(5, run.k)]
    seeds = {c.rowid: rel[c.rowid] for c in best}

    def fetch(nodes: list[int]) -> dict[int, list[tuple[int, float]]]:
        edges = space.store.neighbours(space.id, [run.ids[n] for n in nodes], MAX_FANOUT)
        return {run.num[s]: [(run.intern(t), w) for t, w in out] for s, out in edges.items()}

    t0 = time.perf_counter()
    res = spread(
        seeds, fetch,
        max_hops=cue.max_hops if cue.max_hops is not None else settings.spreading_max_hops,
        decay=settings.spreading_decay,
        threshold=settings.spreading_threshold,
        budget_seconds=settings.spreading_time_budget_ms / 1000.0,
        beam=SPREAD_BEAM,
    )
    reached = [n for n, h in res.hits.items() if h.hops > 0]
    # Only the most active newcomers are scored (as on SQLite): each costs a row read.
    new = sorted((n for n in reached if n not in cands), key=lambda n: (-res.hits[n].activation, run.ids[n]))
    new = new[: max(SPREAD_SCORED_MIN, 10 * run.k)]
    for mid, got in space.store.rows_by_id(space.id, [run.ids[n] for n in new]).items():
        run.rows[run.num[mid]] = got
    for n in reached:
        hit = res.hits[n]
        c = cands.get(n)
        if c is None:
            row = run.rows.get(n)
            # activation passes through what the cue's filters exclude; it is not returned
            if row is None or not run.keeps(row):
                continue
            c = cands[n] = Candidate(n)
            c.sources.add("spreading")
        c.spread = hit.activation
        c.path = hit.path
    for n in seeds:
        c = cands[n]
        if c.path is None:
            c.path = res.hits[n].path
    space.publish_live("activation", space.last_lsn, {
        "seeds": len(seeds), "reached": len(reached), "hops": res.hops_done, "truncated": res.truncated})
    run.meta["spreading"] = {
        "hops": res.hops_done, "truncated": res.truncated, "reached": len(reached), "seeds": len(seeds),
        "ms": round((time.perf_counter() - t0) * 1000, 3),
    }


def rank(run: PgRun) -> list[Scored]:
    now = run.space.clock()
    if run.cue.rank is RankMode.similarity:
        return _rank_similarity(run, now)
    cands = list(run.cands.values())
    if not cands:
        return []
    rows = [run.rows[c.rowid] for c in cands]
    num = np.array([(r.confidence, r.last_access, r.activation, r.decay_rate) for r in rows],
                   dtype=np.float64).reshape(-1, 4)
    mode = run.cue.mode
    spread_ = (np.array([c.spread for c in cands], dtype=np.float64)
               if mode is RecallMode.spreading or mode is RecallMode.hybrid else None)
    score, relevance, act, rec = fused_scores(mode, direct(run, cands), spread_, num, now)
    idx = kept_in_order(score, relevance, run.cue.threshold, run.origin == "embedder",
                        lambda i: rows[i].id, run.k)
    sc, rl, ac, rc = score.tolist(), relevance.tolist(), act.tolist(), rec.tolist()
    return [Scored(sc[i], rl[i], ac[i], rc[i], cands[i]) for i in idx]


def _rank_similarity(run: PgRun, now: float) -> list[Scored]:
    """Pure cosine order (cognition.recall._rank_similarity): only what the vector search found,
    or the context's candidates when the cue has nothing else."""
    picked: list[tuple[float, float, Candidate]] = []
    for c in run.cands.values():
        if run.context_only:
            relevance = c.context
        elif c.vector_rank is None:
            continue
        else:
            relevance = c.similarity
        score = max(0.0, min(1.0, relevance))
        if score >= run.cue.threshold:
            picked.append((score, relevance, c))
    picked.sort(key=lambda t: (-t[0], run.rows[t[2].rowid].id))
    out: list[Scored] = []
    for score, relevance, c in picked[: run.k]:
        row = run.rows[c.rowid]
        act = current_activation(row.activation, row.last_access, row.decay_rate, now)
        out.append(Scored(score, relevance, act, recency(row.last_access, now), c))
    return out


def answer(run: PgRun, scored: list[Scored], reinforcer: PgReinforcer | None) -> RecallResult:
    space, cue = run.space, run.cue
    items: list[tuple[float, RecallItem]] = []
    crowd = crowding(run, [s.cand for s in scored]).tolist()  # read already, but in similarity order
    for s, fan in zip(scored, crowd, strict=True):
        row = run.rows[s.cand.rowid]
        signals = signals_of(s, row.confidence, fan)
        items.append((s.score, item_of(run.context_only, cue.trace_activation, s, space.to_memory(row),
                                       row.confidence, signals, run.ids.__getitem__)))
    buckets, interval, overall = bucketed(items)
    if reinforcer is not None and items:
        reinforcer.add(space.id, [it.memory.id for _, it in items], space.clock())
    # live-only, as on SQLite (not logged, not replayed), to the streams of every server
    space.publish_live("recalled", space.last_lsn, {
        "results": len(items), "mode": cue.mode.value, "top": [it.memory.id for _, it in items[:5]],
        "confidence": overall.value,
    })
    metadata: dict[str, Any] = dict(run.meta)
    metadata.update({
        "timing_ms": round((time.perf_counter() - run.t0) * 1000, 3),
        "mode": cue.mode.value,
        "rank": cue.rank.value,
        "query_vector": run.origin,
        "candidates": len(run.cands),
        "backend": BACKEND,
        "exact_vector_scan": True,
    })
    if cue.trace_activation:
        metadata["activation_paths"] = {
            it.memory.id: [st.model_dump() for st in (it.activation_path or [])] for _, it in items
        }
    return RecallResult(memories=buckets, recall_confidence=overall, confidence_interval=interval,
                        metadata=metadata, memory_space_id=space.id, results=[it for _, it in items])
