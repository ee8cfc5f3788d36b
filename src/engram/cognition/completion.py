"""Pattern completion: from partial fields and/or a partial embedding to whole episodes.

1. Candidates: this space's episodes that match any given field (text search on
   what/why/how, place, people, time proximity, and cosine on the embedding or
   on its leading components when it is partial).
2. Each candidate's match is the mean of its per-field agreements over the
   *given* fields only, so a cue is judged by what it says.
3. The best candidates become hypotheses. Each field is attributed:
   ``given`` (the caller said it), ``recalled`` (copied from the matching
   episode, with the match as confidence), or ``reconstructed`` (the matching
   episode lacks it, so the other candidates vote, weighted by their match).
   Only candidates with a match above 0 vote: when none does, the field stays
   unfilled rather than being invented (and no weight sum can be zero).

Every confidence is within [0, 1] and finite, whatever the space holds.

``CueTooWeak`` is raised when nothing was given, when a partial embedding is too
short to say anything, or when no episode matches at least ``min_confidence``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.models import (
    CompleteInput,
    Completion,
    CompletionHypothesis,
    FieldSource,
    confidence_from,
    from_epoch,
    to_epoch,
)
from ..core.text import text_candidates, tokens
from ..errors import CueTooWeak, DimensionMismatch
from ..index.vector import normalise

if TYPE_CHECKING:
    from ..core.space import MemorySpace

TEXT_FIELDS = ("what", "where_location", "why", "how")
FIELDS = ("what", "when", "where_location", "who", "why", "how")
WHEN_HALF_LIFE_HOURS = 24.0
VOTERS = 10
# Row positions (core.space.MEMORY_COLUMNS).
R_ID, R_KIND, R_CONTENT, R_EMB, R_SUPP, R_WHEN, R_WHAT, R_WHERE, R_WHO, R_WHY, R_HOW = (
    1,
    2,
    3,
    4,
    14,
    16,
    17,
    18,
    19,
    20,
    21,
)


def coverage(given: str, have: str) -> float:
    """Share of the cue's words present in the episode (and a little for brevity)."""
    g, h = set(tokens(given)), set(tokens(have))
    if not g:
        return 0.0
    cov = len(g & h) / len(g)
    dice = 2 * len(g & h) / (len(g) + len(h)) if h else 0.0
    return 0.8 * cov + 0.2 * dice


def min_prefix(dim: int) -> int:
    return min(dim, max(2, math.ceil(0.05 * dim)))


def _episode_values(row: Any) -> dict[str, Any]:
    return {
        "what": row[R_WHAT] or row[R_CONTENT] or None,
        "when": from_epoch(row[R_WHEN]).isoformat() if row[R_WHEN] is not None else None,
        "where_location": row[R_WHERE] or None,
        "who": json.loads(row[R_WHO]) if row[R_WHO] else None,
        "why": row[R_WHY] or None,
        "how": row[R_HOW] or None,
    }


def _given(item: CompleteInput) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = getattr(item, name)
        if value and value.strip():
            out[name] = value
    if item.when is not None:
        out["when"] = item.when
    if item.who:
        out["who"] = list(item.who)
    return out


def _candidates(
    space: MemorySpace, item: CompleteInput, given: dict[str, Any], probe: np.ndarray | None
) -> tuple[set[int], dict[int, float]]:
    conn = space.check_healthy().reader()
    found: set[int] = set()
    text = " ".join(str(given[f]) for f in ("what", "why", "how") if f in given)
    if text:
        found.update(text_candidates(space, text, 200, episodes_only=True))
    try:
        if "where_location" in given:
            found.update(
                int(r)
                for (r,) in conn.execute(
                    "SELECT rowid FROM memories WHERE kind = 'episode' AND suppressed = 0 AND "
                    "lower(where_location) LIKE ? LIMIT 200",
                    ("%" + given["where_location"].lower().strip() + "%",),
                )
            )
        for person in given.get("who", [])[:16]:
            found.update(
                int(r)
                for (r,) in conn.execute(
                    "SELECT rowid FROM memories WHERE kind = 'episode' AND suppressed = 0 "
                    "AND lower(who) LIKE ? LIMIT 200",
                    ("%" + json.dumps(person.lower())[1:-1] + "%",),
                )
            )
        if "when" in given:
            t = to_epoch(given["when"])
            found.update(
                int(r)
                for (r,) in conn.execute(
                    "SELECT rowid FROM memories WHERE kind = 'episode' AND suppressed = 0 "
                    "AND ep_when IS NOT NULL "
                    "ORDER BY abs(ep_when - ?) LIMIT 50",
                    (t,),
                )
            )
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
    cosines: dict[int, float] = {}
    if probe is not None:
        # Block by block (never a full float32 copy of the space), keeping the best 200.
        d = probe.shape[0]
        best_k = np.zeros(0, np.int64)
        best_s = np.zeros(0, np.float32)
        for keys, vecs in space.vectors.iter_live():
            part = vecs[:, :d]
            norms = np.linalg.norm(part, axis=1)
            norms[norms == 0] = 1.0
            sims = (part @ probe) / norms
            best_k = np.concatenate([best_k, keys])
            best_s = np.concatenate([best_s, sims.astype(np.float32)])
            if len(best_s) > 200:
                keep = np.argsort(-best_s, kind="stable")[:200]
                best_k, best_s = best_k[keep], best_s[keep]
        for key, sim in zip(best_k.tolist(), best_s.tolist(), strict=True):
            if sim > 0:  # (NaN is not > 0)
                cosines[int(key)] = min(1.0, float(sim))  # float16 rounding can pass 1 by a hair
        found.update(cosines)
    return found, cosines


def _field_match(name: str, value: Any, row: Any) -> float:
    have = _episode_values(row)
    if name == "when":
        if row[R_WHEN] is None:
            return 0.0
        hours = abs(to_epoch(value) - row[R_WHEN]) / 3600.0
        return float(0.5 ** (hours / WHEN_HALF_LIFE_HOURS))
    if name == "who":
        people = {p.lower() for p in (have["who"] or [])}
        return len(people & {p.lower() for p in value}) / max(1, len(value))
    target = have[name] or ""
    if name == "what":
        target = f"{row[R_WHAT] or ''} {row[R_CONTENT] or ''}"
    return coverage(str(value), str(target))


def complete(space: MemorySpace, item: CompleteInput) -> Completion:
    space.check_healthy()
    return complete_with(space.id, space.dim, item,
                         lambda given, probe: _candidates(space, item, given, probe), space.rows_by_rowid)


def complete_with(
    space_id: str,
    dim: int | None,
    item: CompleteInput,
    candidates: Callable[[dict[str, Any], np.ndarray | None], tuple[set[Any], dict[Any, float]]],
    rows_of: Callable[[set[Any]], dict[Any, Any]],
) -> Completion:
    """The completion, whatever the backend: ``candidates(given, probe)`` gives the candidate
    keys and their (prefix) cosines, ``rows_of(keys)`` their rows in the SQLite column layout
    (``core.space.MEMORY_COLUMNS``; the embedding as float32 bytes)."""
    given = _given(item)
    probe: np.ndarray | None = None
    if item.embedding is not None:
        if dim is None:
            raise CueTooWeak("this memory space holds no embeddings, so an embedding cannot be completed")
        if len(item.embedding) > dim:
            raise DimensionMismatch(
                f"embedding has {len(item.embedding)} dimensions; this memory space expects "
                f"at most {dim} (a partial embedding gives the leading components)",
                details={"expected": dim, "received": len(item.embedding)},
            )
        if len(item.embedding) < min_prefix(dim):
            raise CueTooWeak(
                f"a partial embedding needs at least {min_prefix(dim)} of the {dim} components; "
                f"got {len(item.embedding)}"
            )
        probe = normalise(item.embedding)
    if not given and probe is None:
        raise CueTooWeak(
            "nothing to complete from: give at least one of what, when, where_location, who, why, "
            "how or embedding",
            example='{"what": "coffee with Ana"}',
        )
    found, cosines = candidates(given, probe)
    rows = {
        r: row
        for r, row in rows_of(found).items()
        if row[R_KIND] == "episode" and not row[R_SUPP]
    }
    scored: list[tuple[float, Any, dict[str, float]]] = []
    for rowid, row in rows.items():
        parts = {name: _field_match(name, value, row) for name, value in given.items()}
        if probe is not None:
            parts["embedding"] = max(0.0, cosines.get(rowid, 0.0))
        scored.append((sum(parts.values()) / len(parts), rowid, parts))
    scored.sort(key=lambda t: (-t[0], str(rows[t[1]][R_ID])))
    if not scored or scored[0][0] < item.min_confidence:
        best = scored[0][0] if scored else 0.0
        raise CueTooWeak(
            f"no episode in this memory space matches the cue well enough to complete it "
            f"(best match {best:.2f}, min_confidence {item.min_confidence:.2f})",
            details={"best_match": round(best, 6), "min_confidence": item.min_confidence},
        )
    hyps = [
        _hypothesis(item, given, s, rowid, parts, scored, rows)
        for s, rowid, parts in scored[: item.max_hypotheses]
        if s >= item.min_confidence
    ]
    return Completion(best=hyps[0], alternatives=hyps[1:], memory_space_id=space_id)


def _hypothesis(
    item: CompleteInput,
    given: dict[str, Any],
    score: float,
    rowid: Any,
    parts: dict[str, float],
    scored: list[tuple[float, Any, dict[str, float]]],
    rows: dict[Any, Any],
) -> CompletionHypothesis:
    row = rows[rowid]
    mid = str(row[R_ID])
    have = _episode_values(row)
    voters = [(s, r) for s, r, _ in scored if r != rowid][:VOTERS]
    fields: list[FieldSource] = []
    episode: dict[str, Any] = {"memory_id": mid, "content": row[R_CONTENT]}
    sources = {mid}
    for name in FIELDS:
        if name in given:
            value = given[name]
            value = value.isoformat() if name == "when" else value
            fields.append(FieldSource(field=name, value=value, source="given", confidence=1.0))
        elif have[name] is not None:
            value = have[name]
            fields.append(
                FieldSource(
                    field=name,
                    value=value,
                    source="recalled",
                    confidence=round(score, 6),
                    from_memory_ids=[mid],
                )
            )
        else:
            votes: dict[str, tuple[float, list[str], Any]] = {}
            for s, r in voters:
                v = _episode_values(rows[r])[name]
                if v is None or not s > 0:  # a voter that matches nothing has no say (and no weight)
                    continue
                key = json.dumps(v, sort_keys=True)
                w, ids, _ = votes.get(key, (0.0, [], v))
                votes[key] = (w + s, [*ids, str(rows[r][R_ID])], v)
            total = sum(w for w, _, _ in votes.values())
            if not total > 0:  # every weight is positive, so this is only "no votes"
                continue
            w, ids, value = max(votes.values(), key=lambda t: (t[0], json.dumps(t[2], sort_keys=True)))
            fields.append(
                FieldSource(
                    field=name,
                    value=value,
                    source="reconstructed",
                    confidence=round(score * (w / total) * 0.8, 6),
                    from_memory_ids=ids,
                )
            )
            sources.update(ids)
        episode[name] = fields[-1].value
    if item.embedding is not None and row[R_EMB]:
        full = np.frombuffer(row[R_EMB], dtype=np.float32).copy()
        if len(item.embedding) < len(full):
            full[: len(item.embedding)] = np.asarray(item.embedding, dtype=np.float32)
            fields.append(
                FieldSource(
                    field="embedding",
                    value=[float(v) for v in full],
                    source="reconstructed",
                    confidence=round(parts.get("embedding", 0.0), 6),
                    from_memory_ids=[mid],
                )
            )
    reason = f"episode {mid!r} matches " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(parts.items()))
    return CompletionHypothesis(
        episode=episode,
        fields=fields,
        confidence=confidence_from(score, reason),
        source_memory_ids=sorted(sources),
    )
