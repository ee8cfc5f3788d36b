"""The first slice of a space's operations on PostgreSQL (issue 17, milestone 1).

What exists: create/delete/list spaces, remember (row + vector + full text + typed metadata +
its ``stored`` event, one transaction, one LSN), get, list, delete (with its ``forgotten``
event, the log scrubbed of the text), recall by vector (top-k, one space), full-text search,
and the event log read after a position. Not wired into the server yet: ``core.space`` still
drives the SQLite store, and nothing here knows of embedders, decay or cognition.

Every write takes its LSN from the space's counter row inside its own transaction
(``queries.NEXT_LSN``): acknowledged writes of one space have LSNs 1, 2, 3... with no gaps, in
commit order, whatever server made them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql
from psycopg.types.json import Jsonb

from . import queries as q
from .connection import PostgresDatabase, SpaceTx
from .schema import MAX_INDEXED_DIMENSION

Vector = np.ndarray[Any, np.dtype[np.float32]]


@dataclass
class MemoryRow:
    """One row of ``engram.memories`` (the SQLite columns, JSON columns as Python values)."""

    id: str
    content: str
    kind: str = "memory"
    confidence: float = 1.0
    created_at: float = field(default_factory=time.time)
    last_access: float = 0.0
    access_count: int = 0
    activation: float = 1.0
    decay_rate: float = 0.0
    tags: list[str] = field(default_factory=list)
    memory_type: str = "semantic"
    metadata: dict[str, Any] = field(default_factory=dict)
    suppressed: bool = False
    lsn: int = 0
    ep_when: float | None = None
    what: str | None = None
    where_location: str | None = None
    who: str | None = None
    why: str | None = None
    how: str | None = None
    emotional_valence: float | None = None
    importance: float | None = None
    consolidation_state: str | None = None
    expires_at: float | None = None


_COLUMNS = tuple(c.strip() for c in q.MEMORY_COLUMNS.split(","))
if tuple(f.name for f in fields(MemoryRow)) != _COLUMNS:
    raise ImportError("MemoryRow's fields and queries.MEMORY_COLUMNS must list the same columns in order")


@dataclass(frozen=True)
class SpaceInfo:
    space_id: str
    created_at: float
    dimension: int | None
    last_lsn: int


@dataclass(frozen=True)
class Event:
    """One logged event (``eventlog.Logged``'s fields)."""

    type: str
    lsn: int
    seq: int
    data: dict[str, Any]
    ts: float


def _meta_class(value: Any) -> tuple[int, float | None, str | None]:
    """``(vtype, vnum, vtext)`` of a metadata value: SQLite's memory_meta classes."""
    if value is None:
        return 0, None, None
    if isinstance(value, bool):
        return 1, float(value), None
    if isinstance(value, int | float) and math.isfinite(value):
        return 2, float(value), None
    if isinstance(value, str):
        return 3, None, value
    return 4, None, None


def _half(vector: Vector) -> HalfVector:
    return HalfVector(np.asarray(vector, dtype=np.float32))


def _row(values: Sequence[Any]) -> MemoryRow:
    return MemoryRow(**dict(zip(_COLUMNS, values, strict=True)))


class PostgresStore:
    """Space operations over one :class:`PostgresDatabase` (any number of servers may share it)."""

    def __init__(self, db: PostgresDatabase, *, ef_search: int = 100, vector_index: bool = True) -> None:
        """``vector_index``: a space's first use of a dimension creates that dimension's HNSW index.
        Without it recall is exact (a scan of the space's rows): right for small spaces, and the
        only way on a pgvector build whose HNSW code this CPU cannot run (see docs/scale-out.md)."""
        self.db = db
        self.ef_search = ef_search
        self.vector_index = vector_index

    # -- spaces ------------------------------------------------------------------------------
    def create_space(self, space_id: str, dimension: int | None = None,
                     created_at: float | None = None) -> bool:
        """Create ``space_id`` (False if it exists). A new vector dimension gets its HNSW index."""
        if dimension is not None and not 1 <= dimension <= MAX_INDEXED_DIMENSION:
            raise ValueError(f"dimension must be 1..{MAX_INDEXED_DIMENSION}, got {dimension}")
        with self.db.space(space_id) as tx:
            made = tx.one(q.CREATE_SPACE, {"created_at": time.time() if created_at is None else created_at,
                                           "dimension": dimension})
            if made is not None and self.vector_index:
                tx.execute(q.ENSURE_VECTOR_INDEX)
        return made is not None

    def space(self, space_id: str) -> SpaceInfo | None:
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_SPACE)
        return None if row is None else SpaceInfo(str(row[0]), float(row[1]),
                                                   None if row[2] is None else int(row[2]), int(row[3]))

    def delete_space(self, space_id: str) -> bool:
        """Delete the space and every row of it (the foreign keys cascade)."""
        with self.db.space(space_id) as tx:
            return tx.one(q.DELETE_SPACE) is not None

    def list_spaces(self) -> list[str]:
        with self.db.directory() as conn:
            return [str(r[0]) for r in conn.execute(q.LIST_SPACES)]

    # -- writes --------------------------------------------------------------------------------
    @staticmethod
    def next_lsn(tx: SpaceTx) -> int:
        row = tx.one(q.NEXT_LSN)
        if row is None:
            raise LookupError(f"memory space {tx.space_id!r} does not exist")
        return int(row[0])

    @staticmethod
    def record_event(tx: SpaceTx, type_: str, lsn: int, data: dict[str, Any]) -> Event:
        """Log one event of the write at ``lsn``, inside that write's transaction."""
        seq_row = tx.one(q.NEXT_EVENT_SEQ, {"lsn": lsn})
        seq = int(seq_row[0]) if seq_row is not None else 0
        ts = time.time()
        mid = data.get("memory_id")
        tx.execute(q.INSERT_EVENT, {"lsn": lsn, "seq": seq, "type": type_,
                                    "memory_id": None if mid is None else str(mid),
                                    "data": Jsonb(json.loads(json.dumps(data, default=str))), "ts": ts})
        return Event(type_, lsn, seq, data, ts)

    def remember(self, space_id: str, memory: MemoryRow, embedding: Vector | None = None) -> int:
        """Store ``memory`` (and its vector) with a fresh LSN; returns the LSN once committed."""
        return self.remember_many(space_id, [(memory, embedding)])[0]

    def remember_many(self, space_id: str, items: Sequence[tuple[MemoryRow, Vector | None]]) -> list[int]:
        """Store several memories in one transaction (one commit), LSNs consecutive."""
        lsns: list[int] = []
        with self.db.space(space_id) as tx:
            for memory, embedding in items:
                lsn = self.next_lsn(tx)
                memory.lsn = lsn
                params: dict[str, Any] = {c: getattr(memory, c) for c in _COLUMNS}
                params["tags"] = Jsonb(memory.tags)
                params["metadata"] = Jsonb(memory.metadata)
                params["embedding"] = None if embedding is None else _half(embedding)
                tx.execute(q.INSERT_MEMORY, params)
                for key, value in memory.metadata.items():
                    vtype, vnum, vtext = _meta_class(value)
                    tx.execute(q.INSERT_META, {"memory_id": memory.id, "mkey": key, "vtype": vtype,
                                               "vnum": vnum, "vtext": vtext})
                self.record_event(tx, "stored", lsn, {"memory_id": memory.id, "content": memory.content})
                lsns.append(lsn)
        return lsns

    def delete(self, space_id: str, memory_id: str) -> int | None:
        """Delete one memory; returns the LSN of the deletion, or None if there was no such memory."""
        with self.db.space(space_id) as tx:
            if tx.one(q.GET_EMBEDDING, {"id": memory_id}) is None:
                return None
            lsn = self.next_lsn(tx)
            tx.execute(q.DELETE_MEMORY, {"id": memory_id})
            tx.execute(q.SCRUB_EVENTS, {"memory_id": memory_id})
            self.record_event(tx, "forgotten", lsn, {"memory_id": memory_id})
        return lsn

    # -- reads ---------------------------------------------------------------------------------
    def get(self, space_id: str, memory_id: str) -> MemoryRow | None:
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_MEMORY, {"id": memory_id})
        return None if row is None else _row(row)

    def embedding(self, space_id: str, memory_id: str) -> Vector | None:
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_EMBEDDING, {"id": memory_id})
        if row is None or row[0] is None:
            return None
        return np.asarray(row[0].to_numpy(), dtype=np.float32)

    def list_memories(self, space_id: str, *, after: tuple[float, str] | None = None,
             limit: int = 100) -> list[MemoryRow]:
        """Memories in creation order, after the cursor ``(created_at, id)`` of the last one seen."""
        created, mid = after if after is not None else (-math.inf, "")
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.LIST_MEMORIES, {"after_created": created, "after_id": mid,
                                                "limit": limit}).fetchall()
        return [_row(r) for r in rows]

    def count(self, space_id: str) -> int:
        with self.db.space(space_id) as tx:
            row = tx.one(q.COUNT_MEMORIES)
        return int(row[0]) if row is not None else 0

    def recall(self, space_id: str, vector: Vector, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` memories of the space nearest ``vector`` by cosine, as ``(id, cosine)``."""
        vec = np.asarray(vector, dtype=np.float32)
        if vec.ndim != 1 or not 1 <= vec.shape[0] <= MAX_INDEXED_DIMENSION:
            raise ValueError(f"a query vector has 1..{MAX_INDEXED_DIMENSION} dimensions")
        stmt = sql.SQL(q.RECALL).format(dim=sql.Literal(int(vec.shape[0])))
        with self.db.space(space_id) as tx:
            tx.execute(q.RECALL_TUNING, {"ef": str(max(self.ef_search, k))})
            rows = tx.execute(stmt, {"vector": _half(vec), "k": k}).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def search_text(self, space_id: str, text: str, k: int = 10) -> list[tuple[str, float]]:
        """Full-text matches (PostgreSQL ``websearch_to_tsquery``, English stemming), best first."""
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.SEARCH_TEXT, {"text": text, "k": k}).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def events_after(self, space_id: str, after: tuple[int, int] = (0, -1),
                     limit: int = 1000) -> list[Event]:
        """Logged events after position ``(lsn, seq)``, in order (``(n, LAST)`` skips all of LSN n)."""
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.EVENTS_AFTER, {"lsn": after[0], "seq": after[1], "limit": limit}).fetchall()
        return [Event(str(r[2]), int(r[0]), int(r[1]), dict(r[3]), float(r[4])) for r in rows]
