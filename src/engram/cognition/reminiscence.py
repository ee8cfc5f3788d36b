"""Reminiscence: the episodes of this space about a topic and/or in a time window, in time order.

With a topic (text, embedding or both) the most relevant episodes are chosen
first (up to ``limit``), then told in the order they happened; with only a
window, the first ``limit`` episodes of the window are told. Suppressed
episodes are never told.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.models import Reminiscence, ReminisceQuery, to_epoch
from ..core.text import text_candidates
from ..index.vector import normalise

if TYPE_CHECKING:
    from ..core.space import MemorySpace

K = TypeVar("K", bound=Hashable)  # a row's key: SQLite's rowid, PostgreSQL's memory id

# An embedding topic keeps episodes at least this similar to it.
MIN_TOPIC_SIMILARITY = 0.5


def reminisce(space: MemorySpace, query: ReminisceQuery) -> Reminiscence:
    conn = space.check_healthy().reader()
    start = to_epoch(query.time_start) if query.time_start is not None else None
    end = to_epoch(query.time_end) if query.time_end is not None else None
    topical = bool(query.topic and query.topic.strip()) or query.embedding is not None

    def in_window(when: Any) -> bool:
        return when is not None and (start is None or when >= start) and (end is None or when <= end)

    if not topical:
        where, args = ["kind = 'episode'", "suppressed = 0"], []  # type: tuple[list[str], list[Any]]
        if start is not None:
            where.append("ep_when >= ?")
            args.append(start)
        if end is not None:
            where.append("ep_when <= ?")
            args.append(end)
        try:
            rowids = [
                int(r)
                for (r,) in conn.execute(
                    f"SELECT rowid FROM memories WHERE {' AND '.join(where)} ORDER BY ep_when, id LIMIT ?",
                    (*args, query.limit),
                )
            ]
        except sqlite3.DatabaseError as exc:
            space.guard_read(exc)
        rows = space.rows_by_rowid(rowids)
        return Reminiscence(
            episodes=[space.to_memory(rows[r]) for r in rowids if r in rows], memory_space_id=space.id
        )

    relevance: dict[int, float] = {}
    wide = max(200, query.limit * 4)
    if query.topic and query.topic.strip():
        relevance.update(text_candidates(space, query.topic, wide, episodes_only=True))
    if query.embedding is not None and space.dim is not None:
        space.vectors.check_dim(len(query.embedding))
        for rowid, sim in space.vectors.search(normalise(query.embedding), wide):
            if sim >= MIN_TOPIC_SIMILARITY:
                relevance[rowid] = max(relevance.get(rowid, 0.0), sim)
    rows = space.rows_by_rowid(relevance)
    # row[1] id, row[2] kind, row[14] suppressed, row[16] ep_when
    told = {r: (rows[r][16], str(rows[r][1])) for r in relevance
            if r in rows and rows[r][2] == "episode" and not rows[r][14] and in_window(rows[r][16])}
    keep = tell(relevance, told, query.limit)
    return Reminiscence(episodes=[space.to_memory(rows[r]) for r in keep], memory_space_id=space.id)


def tell(relevance: dict[K, float], told: dict[K, tuple[float, str]], limit: int) -> list[K]:
    """Which episodes a topical reminiscence tells, in order, whatever the backend: the ``limit``
    most relevant of ``told`` (``key -> (when, memory id)``: the live episodes in the window),
    ties by id, then in time order."""
    keep = sorted(told, key=lambda r: (-relevance[r], told[r][1]))[:limit]
    keep.sort(key=lambda r: told[r])
    return keep
