"""Recall: from a cue to scored, bucketed memories of one space.

Pipeline: candidates (vector top-k, FTS5 BM25 top-k, or a context query) ->
context/tag/type filters -> optional spreading activation over associations ->
score (relevance, activation, confidence, recency) -> threshold, buckets,
confidence interval -> background reinforcement.

Candidates are scored from *light* rows (numbers and filter columns only); the
full rows, with content and embedding, are read for the returned top ``k``
alone. Spreading can reach hundreds of memories, and reading every one of them
in full would cost more than the whole rest of a recall.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cognition.associations import neighbour_fetch
from ..cognition.decay import current_activation, recency
from ..cognition.spreading import spread
from ..index.vector import normalise
from ..storage.sqlite_store import episode_text_sql
from .models import (
    ActivationStep,
    ConfidenceInterval,
    Cue,
    RecallBuckets,
    RecallItem,
    RecallMode,
    RecallResult,
    confidence_from,
    to_epoch,
)

if TYPE_CHECKING:
    from .space import MemorySpace

VIVID = 0.7
_TOKEN = re.compile(r"\w+", re.UNICODE)

# Weights of the final score. Relevance dominates; the rest order near-ties the
# way human memory does (stronger, surer, fresher first).
W_RELEVANCE, W_ACTIVATION, W_CONFIDENCE, W_RECENCY = 0.7, 0.1, 0.1, 0.1
# In hybrid mode an association adds at most this share of the gap to 1.
HYBRID_SPREAD_SHARE = 0.5
# Memories reached only by spreading that are scored (most active first).
SPREAD_SCORED_MIN = 100
# Frontier nodes expanded per hop (see cognition.spreading): bounds a hop's edge reads.
SPREAD_BEAM = 32

LIGHT_COLUMNS = (
    "rowid, id, confidence, created_at, last_access, activation, decay_rate, tags, memory_type, suppressed, "
    "ep_when, where_location, who"
)


@dataclass
class Candidate:
    rowid: int
    similarity: float = 0.0
    text: float = 0.0
    context: float = 0.0
    spread: float = 0.0  # activation that arrived over an association (0 for seeds)
    path: list[tuple[int, float]] | None = None
    sources: set[str] = field(default_factory=set)


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def fts_query(text: str) -> str | None:
    """A safe FTS5 query: every word quoted, OR-ed (no user syntax reaches FTS5)."""
    words = list(dict.fromkeys(tokens(text)))[:64]
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def text_candidates(
    space: MemorySpace, query: str, limit: int, episodes_only: bool = False
) -> dict[int, float]:
    """``rowid -> [0, 1]`` text relevance of the best FTS matches (suppressed excluded)."""
    q = fts_query(query)
    if q is None:
        return {}
    conn = space.check_healthy().reader()
    kind = " AND m.kind = 'episode'" if episodes_only else ""
    # Rank inside FTS first and join only the best few: joining every match to its row
    # before sorting cost ~3x more for a common word (20k matches: 31 ms -> 11 ms). The
    # inner window over-fetches for suppressed / non-episode rows; if the filters thin it
    # below `limit` while more matches exist, the full join answers instead (exact).
    window = limit * 4
    columns = f"SELECT m.rowid, f.r, m.content, m.tags, {episode_text_sql('m')} "
    windowed = (
        columns + "FROM (SELECT rowid, bm25(memories_fts) AS r FROM memories_fts WHERE memories_fts MATCH ? "
        "ORDER BY r LIMIT ?) AS f JOIN memories m ON m.rowid = f.rowid "
        f"WHERE m.suppressed = 0{kind} ORDER BY f.r LIMIT ?"
    )
    full = (
        columns + "FROM (SELECT rowid, bm25(memories_fts) AS r FROM memories_fts "
        "WHERE memories_fts MATCH ?) AS f JOIN memories m ON m.rowid = f.rowid "
        f"WHERE m.suppressed = 0{kind} ORDER BY f.r LIMIT ?"
    )
    try:
        rows = conn.execute(windowed, (q, window, limit)).fetchall()
        if len(rows) < limit:
            matched = conn.execute(
                "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
                (q, window + 1),
            ).fetchone()[0]
            if matched > window:
                rows = conn.execute(full, (q, limit)).fetchall()
    except sqlite3.OperationalError:
        return {}
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
    if not rows:
        return {}
    wanted = set(tokens(query))
    best = max(-r[1] for r in rows) or 1.0
    out: dict[int, float] = {}
    for rowid, rank, content, tags, episode in rows:
        have = set(tokens(content)) | set(tokens(tags)) | set(tokens(episode))
        coverage = len(wanted & have) / max(1, len(wanted))
        # BM25 relative to the best hit, blended with absolute word coverage so
        # a lone weak hit in a tiny space is not reported as a perfect match.
        out[int(rowid)] = 0.6 * coverage + 0.4 * max(0.0, -rank) / best
    return out


def context_sql(cue: Cue) -> tuple[list[str], list[Any]]:
    where: list[str] = ["suppressed = 0"]
    args: list[Any] = []
    if cue.time_start is not None:
        where.append("coalesce(ep_when, created_at) >= ?")
        args.append(to_epoch(cue.time_start))
    if cue.time_end is not None:
        where.append("coalesce(ep_when, created_at) <= ?")
        args.append(to_epoch(cue.time_end))
    if cue.location:
        where.append("lower(where_location) LIKE ? ESCAPE '\\'")
        args.append("%" + _like_escape(cue.location.lower()) + "%")
    if cue.memory_type is not None:
        where.append("memory_type = ?")
        args.append(cue.memory_type.value)
    return where, args


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def has_context(cue: Cue) -> bool:
    return bool(
        cue.time_start or cue.time_end or cue.location or cue.participants or cue.tags or cue.memory_type
    )


def light_rows(space: MemorySpace, rowids: Iterable[int]) -> dict[int, tuple[Any, ...]]:
    """Scoring and filter columns (``LIGHT_COLUMNS``) of the given rows."""
    ids = list(rowids)
    out: dict[int, tuple[Any, ...]] = {}
    if not ids:
        return out
    conn = space.check_healthy().reader()
    try:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {LIGHT_COLUMNS} FROM memories WHERE rowid IN ({q})", chunk):
                out[int(row[0])] = tuple(row)
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
    return out


def light_matches(cue: Cue, row: tuple[Any, ...]) -> bool:
    """Suppression, context, tag and type filters applied to one light row."""
    (_rowid, _id, _conf, created, _la, _act, _rate, tags, mtype, suppressed, ep_when, where, who) = row
    if suppressed:
        return False
    t = ep_when if ep_when is not None else created
    if cue.time_start is not None and t < to_epoch(cue.time_start):
        return False
    if cue.time_end is not None and t > to_epoch(cue.time_end):
        return False
    if cue.location and (not where or cue.location.lower() not in where.lower()):
        return False
    if cue.participants:
        people = {p.lower() for p in json.loads(who)} if who else set()
        if not people.intersection(p.lower() for p in cue.participants):
            return False
    if cue.tags and not set(json.loads(tags)).intersection(cue.tags):
        return False
    return cue.memory_type is None or mtype == cue.memory_type.value


def _direct_candidates(space: MemorySpace, cue: Cue, wide: int) -> tuple[dict[int, Candidate], bool]:
    cands: dict[int, Candidate] = {}

    def cand(rowid: int) -> Candidate:
        c = cands.get(rowid)
        if c is None:
            c = cands[rowid] = Candidate(rowid)
        return c

    query_vec: np.ndarray | None = None
    if cue.embedding is not None:
        if space.dim is not None:
            space.vectors.check_dim(len(cue.embedding))
        query_vec = normalise(cue.embedding)
        if space.dim is not None:
            for rowid, sim in space.vectors.search(query_vec, wide):
                c = cand(rowid)
                c.similarity = max(0.0, sim)
                c.sources.add("similarity")
    if cue.query and cue.query.strip():
        for rowid, score in text_candidates(space, cue.query, wide).items():
            c = cand(rowid)
            c.text = score
            c.sources.add("text")
    context_only = query_vec is None and not (cue.query and cue.query.strip())
    if context_only:
        where, args = context_sql(cue)
        conn = space.check_healthy().reader()
        try:
            rows = conn.execute(
                f"SELECT rowid FROM memories WHERE {' AND '.join(where)} "
                "ORDER BY coalesce(ep_when, created_at) DESC LIMIT ?",
                (*args, max(wide, 1000) if cue.participants or cue.tags else wide),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            space.guard_read(exc)
        for (rowid,) in rows:
            c = cand(int(rowid))
            c.context = 1.0
            c.sources.add("context")
    return cands, context_only


def recall(space: MemorySpace, cue: Cue) -> RecallResult:
    t0 = time.perf_counter()
    space.check_healthy()
    k = cue.max_results
    wide = max(50, k * 4)
    cands, context_only = _direct_candidates(space, cue, wide)

    rows = light_rows(space, cands)
    filtering = has_context(cue)
    for rowid in list(cands):
        row = rows.get(rowid)
        if row is None or not light_matches(cue, row):
            cands.pop(rowid)
        elif filtering and not context_only:
            cands[rowid].context = 1.0

    spread_meta: dict[str, Any] = {}
    if cue.mode is not RecallMode.similarity and cands:
        spread_meta = _spread_into(space, cue, cands, rows, k, context_only)

    now = space.clock()
    scored: list[tuple[float, float, Candidate]] = []
    for c in cands.values():
        row = rows[c.rowid]
        direct = max(c.similarity, c.text, c.context if context_only else 0.0)
        if cue.mode is RecallMode.spreading:
            relevance = max(direct, c.spread)
        elif cue.mode is RecallMode.hybrid:
            relevance = direct + (1.0 - direct) * HYBRID_SPREAD_SHARE * c.spread
        else:
            relevance = direct
        act = current_activation(row[5], row[4], row[6], now)
        rec = recency(row[4], now)
        score = W_RELEVANCE * relevance + W_ACTIVATION * act + W_CONFIDENCE * row[2] + W_RECENCY * rec
        score = max(0.0, min(1.0, score))
        if score >= cue.threshold:
            scored.append((score, act, c))
    scored.sort(key=lambda t: (-t[0], rows[t[2].rowid][1]))
    scored = scored[:k]

    full: dict[int, Any] = space.rows_by_rowid(c.rowid for _, _, c in scored)
    items: list[tuple[float, RecallItem]] = []
    for score, act, c in scored:
        row = full.get(c.rowid)
        if row is None:  # deleted between scoring and reading: not an answer any more
            continue
        direct = max(c.similarity, c.text, c.context if context_only else 0.0)
        source = "spreading" if ("spreading" in c.sources and direct == 0.0) else sorted(c.sources)[0]
        path = c.path if cue.trace_activation and c.path is not None else None
        items.append(
            (
                score,
                RecallItem(
                    memory=space.to_memory(row),
                    score=round(score, 6),
                    similarity=round(c.similarity, 6),
                    text_score=round(c.text, 6),
                    activation=round(c.spread if c.spread else act, 6),
                    recency=round(recency(rows[c.rowid][4], now), 6),
                    confidence=confidence_from(score * (0.5 + 0.5 * row[5]), _reason(c, source, act)),
                    source=source,
                    activation_path=None
                    if path is None
                    else [ActivationStep(memory_id=str(r), activation=round(a, 6)) for r, a in path],
                ),
            )
        )
    if cue.trace_activation:
        _resolve_paths(space, [it for _, it in items])
    buckets = RecallBuckets()
    for score, it in items:
        (buckets.vivid if score > VIVID else buckets.associated).append(it)
    interval = confidence_interval([s for s, _ in items])
    overall = confidence_from(
        interval.point,
        f"{len(items)} result(s); mean score {interval.point:.2f}"
        if items
        else "nothing in this space matched the cue",
    )
    space.reinforce([c.rowid for _, _, c in scored if c.rowid in full])
    elapsed_ms = (time.perf_counter() - t0) * 1000
    space.events.publish(
        "recalled",
        space.last_lsn,
        {
            "results": len(items),
            "mode": cue.mode.value,
            "top": [it.memory.id for _, it in items[:5]],
            "confidence": overall.value,
        },
    )
    metadata: dict[str, Any] = {
        "timing_ms": round(elapsed_ms, 3),
        "mode": cue.mode.value,
        "candidates": len(cands),
        "index": space.ann.state() if space.ann else {},
    }
    if spread_meta:
        metadata["spreading"] = spread_meta
    if cue.trace_activation:
        metadata["activation_paths"] = {
            it.memory.id: [s.model_dump() for s in (it.activation_path or [])] for _, it in items
        }
    return RecallResult(
        memories=buckets,
        recall_confidence=overall,
        confidence_interval=interval,
        metadata=metadata,
        memory_space_id=space.id,
    )


def _spread_into(
    space: MemorySpace,
    cue: Cue,
    cands: dict[int, Candidate],
    rows: dict[int, tuple[Any, ...]],
    k: int,
    context_only: bool,
) -> dict[str, Any]:
    """Seed from the best direct candidates, spread, and add what it reached to ``cands``."""
    settings = space.settings

    def direct(c: Candidate) -> float:
        return max(c.similarity, c.text, c.context)

    seeds_sorted = sorted(cands.values(), key=lambda c: (-direct(c), c.rowid))[: max(5, k)]
    seeds = {c.rowid: direct(c) for c in seeds_sorted}
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
    new = new[: max(SPREAD_SCORED_MIN, 10 * k)]
    rows.update(light_rows(space, new))
    for rowid in reached:
        hit = res.hits[rowid]
        c = cands.get(rowid)
        if c is None:
            row = rows.get(rowid)
            if row is None or not light_matches(cue, row):
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
        "activation",
        space.last_lsn,
        {
            "seeds": len(seeds),
            "reached": len(reached),
            "hops": res.hops_done,
            "truncated": res.truncated,
        },
    )
    return {
        "hops": res.hops_done,
        "truncated": res.truncated,
        "reached": len(reached),
        "seeds": len(seeds),
        "ms": round((time.perf_counter() - t0) * 1000, 3),
    }


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
    need = {int(s.memory_id) for it in items for s in (it.activation_path or [])}
    ids = space._ids_for(need)
    for it in items:
        if it.activation_path:
            for s in it.activation_path:
                s.memory_id = ids.get(int(s.memory_id), s.memory_id)
