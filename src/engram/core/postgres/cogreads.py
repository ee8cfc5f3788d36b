"""The reads of recognize, reminisce, complete and introspect on PostgreSQL (issue 17).

Candidates and statistics for ``cognition/pg_api.py``, which scores them with the same code as
SQLite (``cognition/recognition.py``, ``reminiscence.py``, ``completion.py``). Each function is one
read of one space (its own transaction, row-level security scoped); nothing here writes.

Full text here matches ANY of the query's words (websearch syntax ``a or b``), as SQLite's
``core.text.text_candidates`` does with FTS5 ``OR``; the relevance is ``ts_rank`` scaled to the
best match, where SQLite uses BM25: which rows are found agrees, their relevance does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ..text import key_words
from . import queries as q
from .connection import PostgresDatabase
from .store import MemoryRow, Vector

_COLUMNS = tuple(c.strip() for c in q.MEMORY_COLUMNS.split(","))


def _with_vector(values: Sequence[Any]) -> tuple[MemoryRow, Vector | None]:
    row = MemoryRow(**dict(zip(_COLUMNS, values[:-1], strict=True)))
    emb = values[-1]
    return row, None if emb is None else np.asarray(emb.to_numpy(), dtype=np.float32)


class CognitionReads:
    def __init__(self, db: PostgresDatabase, space_id: str, now: float) -> None:
        self.db = db
        self.space_id = space_id
        self.now = now

    def rows(self, ids: Sequence[str]) -> dict[str, tuple[MemoryRow, Vector | None]]:
        """Live memories (suppressed ones too, flagged) by id, with their vectors."""
        if not ids:
            return {}
        with self.db.space(self.space_id) as tx:
            cur = tx.execute(q.MEMORIES_BY_IDS, {"ids": list(ids), "now": self.now})
            found = [_with_vector(r) for r in cur]
        return {row.id: (row, vec) for row, vec in found}

    def text_any(self, text: str, k: int, episodes_only: bool = False) -> dict[str, float]:
        """``id -> [0, 1]``: memories holding any of ``text``'s key words, relevance scaled to the best."""
        words = list(dict.fromkeys(w for w in key_words(text) if w != "or"))[:64]
        if not words:
            return {}
        with self.db.space(self.space_id) as tx:
            hits = [(str(i), float(r)) for i, r in tx.execute(q.TEXT_ANY, {
                "text": " or ".join(words), "k": k, "now": self.now,
                "kind": "episode" if episodes_only else "memory"})]
        best = max((r for _, r in hits), default=0.0) or 1.0
        return {mid: r / best for mid, r in hits}

    def episodes_in_window(self, start: float | None, end: float | None,
                           limit: int) -> list[tuple[MemoryRow, Vector | None]]:
        with self.db.space(self.space_id) as tx:
            return [_with_vector(r) for r in tx.execute(q.EPISODES_IN_WINDOW, {
                "start": start, "end": end, "limit": limit, "now": self.now})]

    def _ids(self, query: str, params: dict[str, Any]) -> list[str]:
        with self.db.space(self.space_id) as tx:
            return [str(r[0]) for r in tx.execute(query, {**params, "now": self.now})]

    def episodes_at_place(self, needle: str) -> list[str]:
        return self._ids(q.EPISODES_AT_PLACE, {"needle": needle})

    def episodes_with_person(self, needle: str) -> list[str]:
        return self._ids(q.EPISODES_WITH_PERSON, {"needle": needle})

    def episodes_near_time(self, t: float) -> list[str]:
        return self._ids(q.EPISODES_NEAR_TIME, {"t": t})

    def prefix_cosines(self, probe: Vector) -> list[tuple[str, float]]:
        """The 200 live memories most similar to ``probe`` on their leading components."""
        dim = int(probe.shape[0])
        stmt = sql.SQL(q.PREFIX_COSINE).format(dim=sql.Literal(dim))
        with self.db.space(self.space_id) as tx:
            rows = tx.execute(stmt, {"probe": HalfVector(np.asarray(probe, dtype=np.float32)),
                                     "now": self.now}).fetchall()
        return [(str(i), float(s)) for i, s in rows if s is not None]


@dataclass
class Stats:
    by_type: dict[str, int]
    by_state: dict[str, int]
    total: int
    suppressed: int
    row_bytes: int
    activation: np.ndarray[Any, np.dtype[np.float64]]  # rows of (activation, last_access, decay_rate)
    associations: int
    beliefs: int
    last_consolidation: str | None


def stats(db: PostgresDatabase, space_id: str, now: float, last_at_key: str) -> Stats:
    """A space's statistics, read in one transaction."""
    with db.space(space_id) as tx:
        by_type = {str(t): int(n) for t, n in tx.execute(q.STATS_BY_TYPE, {"now": now})}
        by_state = {str(s): int(n) for s, n in tx.execute(q.STATS_BY_STATE, {"now": now})}
        totals = tx.one(q.STATS_TOTALS, {"now": now})
        act = tx.execute(q.STATS_ACTIVATION, {"now": now}).fetchall()
        assoc = tx.one(q.STATS_ASSOCIATIONS)
        beliefs = tx.one(q.STATS_BELIEFS)
        last = tx.one(q.GET_META, {"key": last_at_key})
    assert totals is not None and assoc is not None and beliefs is not None
    return Stats(by_type=by_type, by_state=by_state, total=int(totals[0]), suppressed=int(totals[1]),
                 row_bytes=int(totals[2]), activation=np.asarray(act, dtype=np.float64).reshape(-1, 3),
                 associations=int(assoc[0]), beliefs=int(beliefs[0]),
                 last_consolidation=None if last is None else str(last[0]))
