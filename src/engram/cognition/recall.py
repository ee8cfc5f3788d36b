"""Recall: from a cue to scored, bucketed memories of one space, in named stages.

    prepare   wait for pending embeddings if asked; embed the query
    gather    candidates from vectors (exact float32 cosine), full text (BM25) and context
    filter    drop what the cue's context, tags and type exclude
    spread    (modes spreading / hybrid) activation from the best candidates over associations
    rank      "similarity": cosine order; "cognitive": fused relevance + activation + recency
    answer    full rows of the top k, buckets, confidence, background reinforcement, event

Fusion (rank "cognitive", documented in docs/cognition.md "Ranking"): each source's
evidence is first put on one scale: the text score is already in [0, 1]; a cosine
is *calibrated* by the space's embedder (cosines of unrelated texts are not 0 for
a sentence model). Evidence is combined as a noisy OR, ``1 - (1 - v)(1 - W_TEXT t)``,
so agreeing sources raise confidence and one strong source suffices. (Reciprocal-rank
fusion was measured too and lost to this on the quality benchmark: it lets a weak
keyword list pull down what meaning found.) Spreading adds, in hybrid mode, a share
of the remaining gap to 1 in proportion to the activation that arrived.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.decay import FLOOR, KNEE_HOURS, POWER, current_activation, recency
from ..core.models import (
    ActivationStep,
    Confidence,
    ConfidenceInterval,
    Cue,
    Memory,
    RankMode,
    RecallBuckets,
    RecallItem,
    RecallMode,
    RecallResult,
    confidence_from,
)
from . import lean
from .associations import neighbour_fetch
from .candidates import Candidate, QueryVector, direct_candidates, has_context, light_matches, light_rows
from .candidates import query_vector as embed_query
from .filtered import FilterScope
from .spreading import spread

if TYPE_CHECKING:
    from ..core.space import MemorySpace

VIVID = 0.7

# Weights of the final score. Relevance dominates; the rest order near-ties the
# way human memory does (stronger, surer, fresher first).
W_RELEVANCE, W_ACTIVATION, W_CONFIDENCE, W_RECENCY = 0.7, 0.1, 0.1, 0.1
# In hybrid mode an association adds at most this share of the gap to 1.
HYBRID_SPREAD_SHARE = 0.5
# Memories reached only by spreading that are scored (most active first).
SPREAD_SCORED_MIN = 100
# Frontier nodes expanded per hop (see cognition.spreading): bounds a hop's edge reads.
SPREAD_BEAM = 32
# Weight of full-text evidence beside a query vector (measured on the quality benchmark:
# sentence-embedding evidence is the more reliable of the two on conversational memory).
W_TEXT = 0.5
# The fan effect: a memory close to many others is reached by any cue and tells little
# (a hub). Its cosine is discounted by this share of how much denser its neighbourhood is
# than the space's average (CSLS, index.density; CSLS itself weighs it 0.5: 1.0 measured
# better on the quality benchmark, 0.86 against 0.81 recall@10 on its quick set).
FAN_WEIGHT = 1.0
FAN_LIFT_MAX = 0.2
# Cosine calibration per embedder provider: (unrelated, same meaning). A cosine at or
# below the first counts as no evidence, at or above the second as full evidence.
# Measured on the quality benchmark's turns (docs/benchmarks.md "Recall quality").
COSINE_SCALE: dict[str, tuple[float, float]] = {
    "local": (0.15, 0.75),
    "hash": (0.05, 0.7),
    "openai": (0.2, 0.8),
}


@dataclass
class RecallRun:
    """The state one recall carries through its stages."""

    space: MemorySpace
    cue: Cue
    k: int
    wide: int
    t0: float
    qv: QueryVector = field(default_factory=lambda: QueryVector(None, "none"))
    cands: dict[int, Candidate] = field(default_factory=dict)
    rows: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    context_only: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    scope: FilterScope | None = None  # the cue's metadata filter (cognition.filtered)
    count: int | None = None  # candidates kept, when ``cands`` holds the answers only (cognition.lean)


def recall(space: MemorySpace, cue: Cue) -> RecallResult:
    return _run_recall(space, cue, lean_path=True)


def recall_staged(space: MemorySpace, cue: Cue) -> RecallResult:
    """:func:`recall` through the stages always, never cognition.lean (tests compare the two)."""
    return _run_recall(space, cue, lean_path=False)


def _run_recall(space: MemorySpace, cue: Cue, *, lean_path: bool) -> RecallResult:
    space.check_healthy()
    run = RecallRun(space, cue, cue.max_results, max(50, cue.max_results * 4), time.perf_counter())
    run.scope = FilterScope.of(cue.filter)
    if run.scope is not None:
        run.scope.need = cue.max_results + max(5, cue.max_results // 2)
    prepare(run)
    if lean_path and lean.eligible(cue, run.qv, run.scope is not None) and run.qv.vector is not None:
        pick = lean.similarity_top(space, cue, run.qv.vector, run.k, run.wide)
        if pick is not None:  # the common case in less work, same answers (cognition.lean)
            run.cands, run.rows, run.count = {c.rowid: c for c in pick.cands}, pick.rows, pick.count
            return answer(run, _similarity_scored(run, pick.cands, space.clock()))
    gather(run)
    filter_context(run)
    if cue.mode is not RecallMode.similarity and run.cands and cue.rank is RankMode.cognitive:
        spread_into(run)
    scored = rank(run)
    return answer(run, scored)


# -- stages -----------------------------------------------------------------------
def prepare(run: RecallRun) -> None:
    space, cue = run.space, run.cue
    if cue.wait_for_embeddings and space.embedding_active:
        t0 = time.perf_counter()
        left = space.wait_embedded(space.settings.embedding_wait_seconds)
        run.meta["embedding_wait_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        if left:
            run.meta["embeddings_pending"] = left
    run.qv = embed_query(space, cue)
    if run.qv.origin == "embedder":
        run.meta["query_embedding_ms"] = round(run.qv.ms, 3)
    if run.qv.note:
        run.meta["note"] = run.qv.note
    if cue.rank is RankMode.similarity:
        # Pure cosine order wants a wider net: the float32 rescoring can only reorder what was found.
        run.wide = max(run.wide, 10 * run.k)


def gather(run: RecallRun) -> None:
    run.rows = {}  # the vector candidates' light rows come with their float32 vectors (one read)
    run.cands, run.context_only = direct_candidates(run.space, run.cue, run.qv, run.wide, run.scope, run.rows)


def filter_context(run: RecallRun) -> None:
    run.rows = {r: row for r, row in run.rows.items() if r in run.cands}
    missing = [r for r in run.cands if r not in run.rows]
    if missing:
        run.rows.update(light_rows(run.space, missing))
    filtering = has_context(run.cue)
    # Every source searched inside the filter already; this check makes it a guarantee.
    kept = run.scope.keep(run.space, run.cands) if run.scope is not None else None
    for rowid in list(run.cands):
        row = run.rows.get(rowid)
        if row is None or not light_matches(run.cue, row) or (kept is not None and rowid not in kept):
            run.cands.pop(rowid)
        elif filtering and not run.context_only:
            run.cands[rowid].context = 1.0


def cosine_scale(run: RecallRun) -> tuple[float, float]:
    return COSINE_SCALE.get(run.space.embedder_spec.provider, (0.0, 1.0))


def calibrated(run: RecallRun, cosine: float) -> float:
    if run.qv.origin != "embedder":
        return max(0.0, cosine)  # a client's vectors: the cosine is all we know
    lo, hi = cosine_scale(run)
    return min(1.0, max(0.0, (cosine - lo) / (hi - lo)))


def fan(run: RecallRun, c: Candidate) -> float:
    """How much more crowded ``c``'s neighbourhood is than the space's average (its fan).

    Applied to the server's own query vectors (whose model the space's neighbourhoods
    come from); a client's vector keeps its plain cosine.
    """
    if run.qv.origin != "embedder":
        return 0.0
    # A sparse neighbourhood raises a memory by at most FAN_LIFT_MAX, so an isolated but
    # unrelated memory cannot climb over relevant ones; crowding is discounted in full.
    return max(-FAN_LIFT_MAX, run.space.density.excess(c.rowid))


def fan_adjusted(run: RecallRun, c: Candidate) -> float:
    """The cosine after the fan effect; a sparse neighbourhood lifts only a cosine that is
    evidence already (above the calibration floor)."""
    crowd = fan(run, c)
    floor = cosine_scale(run)[0]
    if crowd < 0 and c.similarity <= floor:
        return c.similarity
    return c.similarity - FAN_WEIGHT * crowd


def direct_relevance(run: RecallRun, c: Candidate) -> float:
    """Relevance from the cue itself (no spreading), in [0, 1]."""
    if run.context_only:
        return c.context
    v = calibrated(run, fan_adjusted(run, c)) if c.vector_rank is not None else 0.0
    # Word overlap is weaker evidence than meaning when both exist; alone it counts in full.
    t = c.text * (W_TEXT if run.qv.vector is not None else 1.0)
    return 1.0 - (1.0 - v) * (1.0 - t)


def spread_into(run: RecallRun) -> None:
    """Seed from the best direct candidates, spread, and add what it reached to the candidates."""
    space, cue, cands, settings = run.space, run.cue, run.cands, run.space.settings
    seeds_sorted = sorted(cands.values(), key=lambda c: (-direct_relevance(run, c), c.rowid))[: max(5, run.k)]
    seeds = {c.rowid: direct_relevance(run, c) for c in seeds_sorted}
    t0 = time.perf_counter()
    res = spread(
        seeds,
        neighbour_fetch(space),
        max_hops=cue.max_hops if cue.max_hops is not None else settings.spreading_max_hops,
        decay=settings.spreading_decay,
        threshold=settings.spreading_threshold,
        budget_seconds=settings.spreading_time_budget_ms / 1000.0,
        beam=SPREAD_BEAM,
    )
    reached = [r for r, h in res.hits.items() if h.hops > 0]
    # Only the most active newcomers are scored (each costs a row read): the
    # other score terms weigh 0.3 together, so a much weaker newcomer could
    # rarely outrank them, and never by relevance.
    new = sorted((r for r in reached if r not in cands), key=lambda r: (-res.hits[r].activation, r))
    kept: set[int] | None = None
    if run.scope is not None:  # activation passes through what the filter excludes; it is not returned
        kept = run.scope.keep(space, new)
        new = [r for r in new if r in kept]
    new = new[: max(SPREAD_SCORED_MIN, 10 * run.k)]
    run.rows.update(light_rows(space, new))
    for rowid in reached:
        hit = res.hits[rowid]
        c = cands.get(rowid)
        if c is None:
            row = run.rows.get(rowid)
            if row is None or not light_matches(cue, row) or (kept is not None and rowid not in kept):
                continue
            c = cands[rowid] = Candidate(rowid)
            c.sources.add("spreading")
        c.spread = hit.activation
        c.path = hit.path
    for rowid in seeds:
        c = cands[rowid]
        if c.path is None:
            c.path = res.hits[rowid].path
    space.events.publish(
        "activation", space.last_lsn,
        {"seeds": len(seeds), "reached": len(reached), "hops": res.hops_done, "truncated": res.truncated},
    )
    run.meta["spreading"] = {
        "hops": res.hops_done, "truncated": res.truncated, "reached": len(reached), "seeds": len(seeds),
        "ms": round((time.perf_counter() - t0) * 1000, 3),
    }


@dataclass
class Scored:
    score: float
    relevance: float
    activation: float
    recency: float
    cand: Candidate


def rank(run: RecallRun) -> list[Scored]:
    """Score every candidate, apply the threshold, and keep the top ``k``.

    Vectorised over the candidates (numpy): the same arithmetic, in the same order, as the
    scalar ``core.decay`` functions and :func:`direct_relevance` (so the same floats), without
    a Python loop of a dozen calls per candidate.
    """
    cue, now = run.cue, run.space.clock()
    if cue.rank is RankMode.similarity:
        return _rank_similarity(run, now)
    cands = list(run.cands.values())
    if not cands:
        return []
    rows = run.rows
    # confidence, last_access, activation, decay_rate of each candidate's light row
    num = np.array([rows[c.rowid][2:3] + rows[c.rowid][4:7] for c in cands], dtype=np.float64).reshape(-1, 4)
    direct = _direct_relevance_many(run, cands)
    spread = (np.array([c.spread for c in cands], dtype=np.float64)
              if cue.mode is RecallMode.spreading or cue.mode is RecallMode.hybrid else None)
    score, relevance, act, rec = fused_scores(cue.mode, direct, spread, num, now)
    idx = kept_in_order(score, relevance, cue.threshold, run.qv.origin == "embedder",
                        lambda i: rows[cands[i].rowid][1], run.k)
    sc, rl, ac, rc = score.tolist(), relevance.tolist(), act.tolist(), rec.tolist()
    return [Scored(sc[i], rl[i], ac[i], rc[i], cands[i]) for i in idx]


Floats = np.ndarray


def fused_scores(mode: RecallMode, direct: Floats, spread: Floats | None, num: Floats,
                 now: float) -> tuple[Floats, Floats, Floats, Floats]:
    """The cognitive score of candidates (``score, relevance, activation now, recency``), from
    their direct relevance, the activation spreading brought (modes spreading / hybrid) and
    ``num``: one row ``(confidence, last_access, stored activation, decay_rate)`` each.

    Pure: the SQLite and the PostgreSQL recall (cognition/pg_recall.py) score with this one."""
    conf, last_access, act0, rate = num[:, 0], num[:, 1], num[:, 2], num[:, 3]
    act = _activation_now(act0, last_access, rate, now)
    rec = _recency_now(last_access, now)
    if spread is not None and mode is RecallMode.spreading:
        relevance = np.maximum(direct, spread)
    elif spread is not None and mode is RecallMode.hybrid:
        relevance = direct + (1.0 - direct) * HYBRID_SPREAD_SHARE * spread
    else:
        relevance = direct
    score = W_RELEVANCE * relevance + W_ACTIVATION * act + W_CONFIDENCE * conf + W_RECENCY * rec
    score = np.minimum(1.0, np.maximum(0.0, score))
    return score, relevance, act, rec


def kept_in_order(score: Floats, relevance: Floats, threshold: float, needs_evidence: bool,
                  tie: Callable[[int], str], k: int) -> list[int]:
    """Indexes of the best ``k`` scores at or above ``threshold``, best first (ties by ``tie(i)``,
    the memory id). ``needs_evidence``: the server embedded the query, and its vector finds
    *nearest* neighbours even for a query that means nothing here; with no evidence at all
    (relevance 0) they are not answers. (A client's vector keeps its top-k, as it always had.)"""
    keep = score >= threshold
    if needs_evidence:
        keep &= relevance > 0.0
    idx: list[int] = np.nonzero(keep)[0].tolist()
    sc = score.tolist()
    idx.sort(key=lambda i: (-sc[i], tie(i)))
    return idx[:k]


def _rank_similarity(run: RecallRun, now: float) -> list[Scored]:
    """Pure cosine order: the score is the relevance alone, so activation and recency are
    computed for the top ``k`` only (they are reported, not ranked on)."""
    picked: list[tuple[float, float, Candidate]] = []
    for c in run.cands.values():
        if run.context_only:
            relevance = c.context
        elif c.vector_rank is None:
            continue  # pure cosine order: only what the vector search found
        else:
            relevance = c.similarity
        score = max(0.0, min(1.0, relevance))
        if score >= run.cue.threshold:
            picked.append((score, relevance, c))
    rows = run.rows
    picked.sort(key=lambda t: (-t[0], rows[t[2].rowid][1]))
    return _similarity_scored(run, [c for _, _, c in picked[: run.k]], now)


def _similarity_scored(run: RecallRun, top: list[Candidate], now: float) -> list[Scored]:
    """Scored answers of a pure cosine order (``top``: best first, vector candidates only)."""
    rows = run.rows
    out: list[Scored] = []
    for c in top:
        row = rows[c.rowid]
        relevance = c.context if run.context_only else c.similarity
        out.append(Scored(max(0.0, min(1.0, relevance)), relevance,
                          current_activation(row[5], row[4], row[6], now), recency(row[4], now), c))
    return out


def _activation_now(act0: np.ndarray, last_access: np.ndarray, rate: np.ndarray, now: float) -> np.ndarray:
    """:func:`core.decay.current_activation` over arrays (bit for bit: same operations, same order)."""
    elapsed = now - last_access
    hours = elapsed / 3600.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        early = np.exp(-rate * hours / KNEE_HOURS)
        late = np.exp(-rate) * np.power(hours / KNEE_HOURS, -POWER * rate)
    r = np.where(hours <= KNEE_HOURS, early, late)
    r = np.maximum(FLOOR, np.minimum(1.0, r))
    r = np.where((elapsed <= 0.0) | (rate <= 0.0), 1.0, r)
    out: np.ndarray = np.maximum(0.0, np.minimum(1.0, act0 * r))
    return out


def _recency_now(at: np.ndarray, now: float, half_life_hours: float = 24.0 * 7) -> np.ndarray:
    """:func:`core.decay.recency` over an array (bit for bit)."""
    age_h = np.maximum(0.0, now - at) / 3600.0
    return np.power(0.5, age_h / half_life_hours)


def _direct_relevance_many(run: RecallRun, cands: list[Candidate]) -> np.ndarray:
    """:func:`direct_relevance` of each candidate, as one array (bit for bit)."""
    if run.context_only:
        return np.array([c.context for c in cands], dtype=np.float64)
    sim = np.array([c.similarity for c in cands], dtype=np.float64)
    text = np.array([c.text for c in cands], dtype=np.float64)
    has_vector = np.array([c.vector_rank is not None for c in cands], dtype=bool)
    embedded = run.qv.origin == "embedder"
    crowd = np.array([fan(run, c) for c in cands], dtype=np.float64) if embedded else None
    return relevance_array(sim, text, has_vector, cosine_scale(run) if embedded else None, crowd,
                           W_TEXT if run.qv.vector is not None else 1.0)


def relevance_array(sim: Floats, text: Floats, has_vector: Floats, scale: tuple[float, float] | None,
                    crowd: Floats | None, text_weight: float) -> Floats:
    """Direct relevance (no spreading) from cosines, text scores and whether each candidate came
    from the vector search. ``scale``: the embedder's cosine calibration when the server embedded
    the query (then ``crowd``, each candidate's fan, applies too); None for a client's vector."""
    if scale is not None:
        assert crowd is not None
        lo, hi = scale
        adjusted = np.where((crowd < 0) & (sim <= lo), sim, sim - FAN_WEIGHT * crowd)
        v = np.minimum(1.0, np.maximum(0.0, (adjusted - lo) / (hi - lo)))
    else:
        v = np.maximum(0.0, sim - FAN_WEIGHT * 0.0)
    v = np.where(has_vector, v, 0.0)
    t = text * text_weight
    out: Floats = 1.0 - (1.0 - v) * (1.0 - t)
    return out


def answer(run: RecallRun, scored: list[Scored]) -> RecallResult:
    space, cue = run.space, run.cue
    full: dict[int, Any] = space.rows_by_rowid(s.cand.rowid for s in scored)
    items: list[tuple[float, RecallItem]] = []
    for s in scored:
        row = full.get(s.cand.rowid)
        if row is None:  # deleted between scoring and reading: not an answer any more
            continue
        items.append((s.score, item_of(run.context_only, cue.trace_activation, s, space.to_memory(row),
                                       row[5], _signals(run, s, row[5]), str)))
    if cue.trace_activation:
        _resolve_paths(space, [it for _, it in items])
    buckets, interval, overall = bucketed(items)
    space.reinforce([s.cand.rowid for s in scored if s.cand.rowid in full])
    space.events.publish("recalled", space.last_lsn, {
        "results": len(items), "mode": cue.mode.value, "top": [it.memory.id for _, it in items[:5]],
        "confidence": overall.value,
    })
    metadata: dict[str, Any] = dict(run.meta)
    metadata.update({
        "timing_ms": round((time.perf_counter() - run.t0) * 1000, 3),
        "mode": cue.mode.value,
        "rank": cue.rank.value,
        "query_vector": run.qv.origin,
        "candidates": len(run.cands) if run.count is None else run.count,
        "index": space.ann.state() if space.ann else {},
    })
    if space.embedding_active:
        metadata["embedding_backlog"] = space.embedding_backlog
    if run.scope is not None:
        metadata["filter"] = dict(run.scope.stats) or {"strategy": "sql"}
    if cue.trace_activation:
        metadata["activation_paths"] = {
            it.memory.id: [st.model_dump() for st in (it.activation_path or [])] for _, it in items
        }
    return RecallResult(memories=buckets, recall_confidence=overall, confidence_interval=interval,
                        metadata=metadata, memory_space_id=space.id, results=[it for _, it in items])


def item_of(context_only: bool, trace: bool, s: Scored, memory: Memory, confidence: float,
            signals: dict[str, float], step_id: Callable[[Any], str]) -> RecallItem:
    """One answer of a recall (both backends): a scored candidate with its stored memory.
    ``confidence`` is the memory's own; ``step_id`` names an activation path's node."""
    c = s.cand
    direct = max(c.similarity, c.text, c.context if context_only else 0.0)
    source = "spreading" if ("spreading" in c.sources and direct == 0.0) else sorted(c.sources)[0]
    path = c.path if trace and c.path is not None else None
    return RecallItem(
        memory=memory,
        score=round(s.score, 6),
        similarity=round(c.similarity, 6),
        text_score=round(c.text, 6),
        activation=round(c.spread if c.spread else s.activation, 6),
        recency=round(s.recency, 6),
        confidence=confidence_from(s.score * (0.5 + 0.5 * confidence), _reason(c, source, s.activation)),
        source=source,
        activation_path=None if path is None
        else [ActivationStep(memory_id=step_id(n), activation=round(a, 6)) for n, a in path],
        signals=signals,
    )


def bucketed(items: list[tuple[float, RecallItem]]) -> tuple[RecallBuckets, ConfidenceInterval, Confidence]:
    """The answers (score, item), best first, as vivid and associated buckets, with the recall's
    confidence interval and overall confidence (both backends)."""
    buckets = RecallBuckets()
    for score, it in items:
        (buckets.vivid if score > VIVID else buckets.associated).append(it)
    interval = confidence_interval([sc for sc, _ in items])
    overall = confidence_from(
        interval.point,
        f"{len(items)} result(s); mean score {interval.point:.2f}" if items
        else "nothing in this space matched the cue",
    )
    return buckets, interval, overall


def _signals(run: RecallRun, s: Scored, confidence: float) -> dict[str, float]:
    return signals_of(s, confidence, fan(run, s.cand))


def signals_of(s: Scored, confidence: float, crowd: float) -> dict[str, float]:
    """The per-signal values that placed a result (its ``signals``)."""
    c = s.cand
    out = {"relevance": s.relevance, "activation": s.activation, "recency": s.recency,
           "confidence": float(confidence)}
    if c.vector_rank is not None:
        out["vector"] = c.similarity
        out["vector_rank"] = float(c.vector_rank)
    if c.text_rank is not None:
        out["text"] = c.text
        out["text_rank"] = float(c.text_rank)
    if c.context:
        out["context"] = c.context
    if c.spread:
        out["spread"] = c.spread
    if crowd:
        out["fan"] = crowd
    return {k: round(v, 6) for k, v in out.items()}


def confidence_interval(scores: list[float]) -> ConfidenceInterval:
    """A 95 % interval around the mean result score (wide when there is little evidence)."""
    point = float(np.mean(scores)) if scores else 0.0
    if len(scores) > 1:
        half = 1.96 * float(np.std(scores, ddof=1)) / math.sqrt(len(scores))
        half = max(half, 0.05 / math.sqrt(len(scores)))
    else:
        half = 0.15 if scores else 0.5
    return ConfidenceInterval(
        lower=round(max(0.0, point - half), 6), point=round(point, 6), upper=round(min(1.0, point + half), 6)
    )


def _reason(c: Candidate, source: str, act: float) -> str:
    parts = []
    if c.similarity:
        parts.append(f"cosine {c.similarity:.2f}")
    if c.text:
        parts.append(f"text match {c.text:.2f}")
    if c.context:
        parts.append("matches context")
    if c.spread:
        parts.append(f"reached by spreading activation {c.spread:.2f}")
    parts.append(f"strength {act:.2f}")
    return ", ".join(parts)


def _resolve_paths(space: MemorySpace, items: list[RecallItem]) -> None:
    """Activation paths are built on row ids; show memory ids instead."""
    need = {int(st.memory_id) for it in items for st in (it.activation_path or [])}
    ids = space._ids_for(need)
    for it in items:
        if it.activation_path:
            for st in it.activation_path:
                st.memory_id = ids.get(int(st.memory_id), st.memory_id)
