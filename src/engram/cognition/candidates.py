"""Where recall's candidates come from: vectors, full text and context, each ranked.

Every source yields ``rowid -> value`` plus its own rank order; the stages in
``cognition.recall`` fuse, spread and score them. Candidates are judged from
*light* rows (numbers and filter columns only): full rows (content, embedding)
are read for the returned top ``k`` alone.

Vector scores are exact float32 cosines: the in-memory rows are float16 (and the
HNSW graph approximate), which is fine for finding candidates but reorders
near-ties, so the candidates are rescored against their stored float32 vectors.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import readgate
from ..core.models import Cue, to_epoch
from ..core.text import text_candidates
from ..errors import EmbedderUnavailable
from ..index.vector import normalise
from .filtered import FilterScope, filtered_vectors

if TYPE_CHECKING:
    from ..core.space import MemorySpace
    from ..index.vector import VectorSet


LIGHT_COLUMNS = (
    "rowid, id, confidence, created_at, last_access, activation, decay_rate, tags, memory_type, suppressed, "
    "ep_when, where_location, who"
)


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
    return space.select_rows(LIGHT_COLUMNS, rowids)


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


@dataclass
class Candidate:
    rowid: int
    similarity: float = 0.0  # exact cosine to the query embedding (0 if not a vector candidate)
    text: float = 0.0  # full-text relevance in [0, 1]
    context: float = 0.0  # 1 when the cue's context filters matched
    spread: float = 0.0  # activation that arrived over an association (0 for seeds)
    vector_rank: int | None = None  # 1-based rank in the vector list
    text_rank: int | None = None  # 1-based rank in the full-text list
    path: list[tuple[int, float]] | None = None
    sources: set[str] = field(default_factory=set)


@dataclass
class QueryVector:
    """The query's embedding: given by the client, or computed by the space's embedder."""

    vector: np.ndarray | None
    origin: str  # "client" | "embedder" | "none"
    note: str | None = None  # why there is none (e.g. the embedder is unavailable)
    ms: float = 0.0


def query_vector(space: MemorySpace, cue: Cue) -> QueryVector:
    if cue.embedding is not None:
        if space.dim is not None:
            space.vectors.check_dim(len(cue.embedding))
        return QueryVector(normalise(cue.embedding), "client")
    text = (cue.query or "").strip()
    if not text or not space.embedding_active or space.embedders is None:
        return QueryVector(None, "none")
    t0 = time.perf_counter()
    try:
        # Unless the caller waits for embeddings, a model still loading is not waited for.
        vec = space.embedders.embed_query(space.embedder_spec, text, wait=bool(cue.wait_for_embeddings))
    except EmbedderUnavailable as exc:
        # Recall still answers, by words: meaning is missing, and the metadata says so.
        return QueryVector(None, "none", f"query not embedded: {exc.message}")
    return QueryVector(np.asarray(vec, dtype=np.float32), "embedder", ms=(time.perf_counter() - t0) * 1000)


def exact_cosines(space: MemorySpace, query: np.ndarray, rowids: Iterable[int],
                  light: dict[int, tuple[Any, ...]] | None = None) -> dict[int, float]:
    """Cosine of ``query`` (unit) against the stored float32 vectors of ``rowids``.

    ``light``: filled with the rows' ``LIGHT_COLUMNS`` on the way, so that scoring needs no
    second read of the same rows (one SQLite query per recall instead of two).
    """
    if light is None:
        rows = list(space.select_rows("rowid, embedding", rowids, "embedding IS NOT NULL").values())
    else:
        got = space.select_rows(LIGHT_COLUMNS + ", embedding", rowids)
        for rowid, row in got.items():
            light[rowid] = row[:-1]
        rows = [(rowid, row[-1]) for rowid, row in got.items() if row[-1] is not None]
    return cosines_of(query, rows)


def cosines_of(query: np.ndarray, rows: list[tuple[int, bytes]]) -> dict[int, float]:
    """Cosine of ``query`` (unit) against stored float32 vectors ``(rowid, bytes)``, in the order
    given (a BLAS product's last bit depends on a row's place in the matrix: callers pass rowid
    order, the order SQLite returns ``rowid IN (...)`` in, so every path gives the same floats)."""
    if not rows:
        return {}
    mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
    if mat.size != len(rows) * query.shape[0]:
        return {}  # vectors of another model (a re-embedding switched meanwhile)
    mat = mat.reshape(len(rows), -1)
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat, dtype=np.float64))  # float32 squares can overflow
    norms[norms == 0] = 1.0
    sims = (mat @ query) / norms
    return dict(zip((int(r[0]) for r in rows), np.clip(sims, -1.0, 1.0).tolist(), strict=True))


def cached_cosines(space: MemorySpace, vectors: VectorSet, query: np.ndarray,
                   rowids: list[int]) -> dict[int, float]:
    """:func:`exact_cosines` without reading light rows: the stored vectors come from memory
    (``VectorSet.raw``, index.raw) and only the ones it lacks from SQLite, which are then kept
    there. The same floats as :func:`exact_cosines` for the same live rows."""
    raw = vectors.raw
    have, missing = raw.split(sorted(rowids))
    if missing:
        version = raw.version  # before the read: see RawVectors.fill
        got = [(rowid, row[1]) for rowid, row in
               space.select_rows("rowid, embedding", missing, "embedding IS NOT NULL").items()]
        raw.fill(got, version, vectors)
        have.extend(got)
        have.sort()
    return cosines_of(query, have)


def vector_candidates(space: MemorySpace, query: np.ndarray, wide: int,
                      scope: FilterScope | None = None,
                      light: dict[int, tuple[Any, ...]] | None = None) -> list[tuple[int, float]]:
    """Top-``wide`` by exact float32 cosine, best first (found in float16 / HNSW, rescored);
    with a filter, the top ``wide`` of the memories it keeps (cognition.filtered). ``light``:
    see :func:`exact_cosines`."""
    vectors = space.vectors  # one set throughout (a re-embedding swaps in a new one)
    if space.dim is None or not len(vectors) or vectors.dim != query.shape[0]:
        return []  # nothing to search, or a query of the model being switched away from
    if scope is None:
        with readgate.native():  # usearch / numpy scan without the GIL: the read gate is let go
            found = vectors.search(query, wide)
    else:
        found = filtered_vectors(space, scope, query, wide)
    exact = exact_cosines(space, query, (k for k, _ in found), light)
    ranked = [(k, exact.get(k, s)) for k, s in found]
    ranked.sort(key=lambda t: (-t[1], t[0]))
    return ranked


def direct_candidates(
    space: MemorySpace, cue: Cue, qv: QueryVector, wide: int, scope: FilterScope | None = None,
    light: dict[int, tuple[Any, ...]] | None = None,
) -> tuple[dict[int, Candidate], bool]:
    """Candidates from the query vector, the query's words, or (neither given) the context.
    ``light``: filled with the light rows of the vector candidates (read with their vectors)."""
    cands: dict[int, Candidate] = {}

    def cand(rowid: int) -> Candidate:
        c = cands.get(rowid)
        if c is None:
            c = cands[rowid] = Candidate(rowid)
        return c

    if qv.vector is not None:
        for rank, (rowid, sim) in enumerate(vector_candidates(space, qv.vector, wide, scope, light), 1):
            c = cand(rowid)
            c.similarity = max(0.0, sim)
            c.vector_rank = rank
            c.sources.add("similarity")
    has_query = bool(cue.query and cue.query.strip())
    if has_query:
        assert cue.query is not None
        condition = scope.where if scope is not None else None
        texts = sorted(text_candidates(space, cue.query, wide, where=condition).items(),
                       key=lambda t: (-t[1], t[0]))
        for rank, (rowid, score) in enumerate(texts, 1):
            c = cand(rowid)
            c.text = score
            c.text_rank = rank
            c.sources.add("text")
    context_only = qv.vector is None and not has_query
    if context_only:
        where, args = context_sql(cue)
        if scope is not None:
            fsql, fargs = scope.sql("memories")
            where.append(fsql)
            args.extend(fargs)
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
