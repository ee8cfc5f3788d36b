"""The common recall, lean: a query vector, ``rank: "similarity"``, nothing to filter.

The staged path (cognition.recall: gather, filter, rank) reads the light rows of all
``wide`` (100) vector candidates with their stored float32 vectors, makes a
``Candidate`` of each, checks each against the cue's filters and sorts them all, to
return ``k`` (10). When the cue filters nothing (no text, no context, tags, type or
metadata filter) and the order is pure cosine, most of that decides nothing:

* the stored vectors for exact rescoring come from memory (``VectorSet.raw``,
  index.raw), not from SQLite;
* light rows are read only for the candidates that can be answers: the top ``k`` by
  score plus every candidate tied with the ``k``-th (ties are broken by memory id,
  which only the row knows);
* ``Candidate`` objects are made for the answers only.

The answers are the staged path's, bit for bit (bench/notes/recall_cpu.py's golden
check; tests/unit/test_recall_lean.py against the staged path): the rescoring runs
the same arithmetic over the same rows in the same (rowid) order, ranks and ties are
the same. Where the lean path cannot know a row is live without reading all of them
(the space holds an expired memory the sweep has not removed yet) or a row it wants
turns out gone or suppressed (a forget racing the recall), it returns None and the
staged path answers instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import readgate
from ..core.models import Cue, RankMode
from .candidates import Candidate, QueryVector, cached_cosines, has_context, light_matches, light_rows

if TYPE_CHECKING:
    from ..core.space import MemorySpace


@dataclass
class LeanPick:
    cands: list[Candidate]  # the answers, best first
    rows: dict[int, tuple[Any, ...]]  # their light rows
    count: int  # the candidates the staged path would have kept (its metadata "candidates")


def eligible(cue: Cue, qv: QueryVector, filtered: bool) -> bool:
    return (cue.rank is RankMode.similarity and qv.vector is not None and not filtered
            and not (cue.query and cue.query.strip()) and not has_context(cue))


def similarity_top(space: MemorySpace, cue: Cue, query: np.ndarray, k: int, wide: int) -> LeanPick | None:
    """The top ``k`` of a similarity recall by ``query`` (unit), or None: ask the staged path."""
    vectors = space.vectors  # one set throughout (a re-embedding swaps in a new one)
    if space.dim is None or not len(vectors) or vectors.dim != query.shape[0] or k <= 0:
        return None  # the staged path's answer to these (nothing) is cheap already
    if space.has_expired():
        return None  # an expired row among the candidates would leave the staged path's list
    with readgate.native():  # usearch / numpy scan without the GIL: the read gate is let go
        found = vectors.search(query, wide)
    exact = cached_cosines(space, vectors, query, [key for key, _ in found])
    ranked = [(key, exact.get(key, s)) for key, s in found]
    ranked.sort(key=lambda t: (-t[1], t[0]))
    threshold = cue.threshold
    picks: list[tuple[float, float, int, int]] = []  # (score, similarity, rowid, vector rank)
    for rank, (rowid, sim) in enumerate(ranked, 1):
        similarity = max(0.0, sim)
        score = max(0.0, min(1.0, similarity))
        if score >= threshold:
            picks.append((score, similarity, rowid, rank))
    if not picks:
        return LeanPick([], {}, len(ranked))
    kth = picks[min(k, len(picks)) - 1][0]  # picks are in score order: ranked is
    sel = [p for p in picks if p[0] >= kth]
    rows = light_rows(space, [p[2] for p in sel])
    for p in sel:
        row = rows.get(p[2])
        if row is None or not light_matches(cue, row):
            return None  # forgotten or expired meanwhile: the staged path re-reads everything
    sel.sort(key=lambda p: (-p[0], rows[p[2]][1]))
    cands: list[Candidate] = []
    for _score, similarity, rowid, rank in sel[:k]:
        c = Candidate(rowid, similarity=similarity, vector_rank=rank)
        c.sources.add("similarity")
        cands.append(c)
    return LeanPick(cands, rows, len(ranked))
