"""A space's operations on PostgreSQL (issue 17, milestones 1 and 2), mirroring the SQLite store.

What exists: create/delete/list spaces; remember (row + vector + full text + typed metadata +
its ``stored`` event, one transaction, one LSN; with a ``WritePolicy``, the auto and temporal
links SQLite makes on store and the quotas, in that transaction); PUT and PATCH updates (core/update.py: one
UPDATE of the row, associations kept, an ``updated`` event); forget by suppressing or deleting,
one memory or every match of a metadata filter; explicit associations (create or strengthen)
and the edges of memories; expiry (every read hides expired memories; a batched sweep, of one
space or of every space due by ``spaces.next_expiry``; a write reusing an expired id takes it
first); each memory's fan (index/density.py), kept by the writes of vectors; get, list, count,
recall by vector (top-k) and full-text search, with metadata filters (filters.py); lists in
insertion order (``created_lsn``, SQLite's rowid) with the count of what they select; the
event log read after a position, trimmed to a retention count, and a NOTIFY per committed
write that wakes other servers (listener.py).
``space.PostgresSpace`` drives it for a server with ``backend = "postgres"``; nothing here knows
of embedders, decay or cognition beyond explicit and store-time associations.

Every write takes its LSN from the space's counter row (``queries.NEXT_LSN``) inside its
transaction (its own, or that of the group commit carrying it: group.py): acknowledged writes of
one space have LSNs 1, 2, 3... with no gaps, in commit order, whatever server made them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
from pgvector import HalfVector
from psycopg import sql
from psycopg.types.json import Jsonb

from ...errors import InvalidInput, MemoryNotFound, QuotaExceeded
from ...index import density
from ...storage.eventlog import TRIMMED_KEY
from ..expiry import DEFAULT_TTL_KEY
from ..filters import Node
from ..models import from_epoch, strengthened
from . import filters
from . import queries as q
from .connection import PostgresDatabase, SpaceTx
from .group import GroupCommitter, Op
from .schema import MAX_INDEXED_DIMENSION

Vector = np.ndarray[Any, np.dtype[np.float32]]
T = TypeVar("T")
#: Writes of one group commit at most (settings.postgres_group_max).
DEFAULT_GROUP_MAX = 64
# Vectors measure_fans measures per transaction (each an exact scan of the space while the space's
# writers wait): 8 at ~25 ms each at 20k rows keeps a writer's wait near 0.2 s.
FAN_CHUNK = 8


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
    #: The LSN of the write that inserted the row (set on insert, kept by updates): list order.
    created_lsn: int = 0


_COLUMNS = tuple(c.strip() for c in q.MEMORY_COLUMNS.split(","))
if tuple(f.name for f in fields(MemoryRow)) != _COLUMNS:
    raise ImportError("MemoryRow's fields and queries.MEMORY_COLUMNS must list the same columns in order")


@dataclass(frozen=True)
class SpaceInfo:
    space_id: str
    created_at: float
    dimension: int | None
    last_lsn: int
    #: Memory rows stored (expired ones not swept yet included): ``spaces.memory_rows``.
    memory_rows: int = 0
    #: The space's embedder record (JSON; None: the server's default) and a re-embedding's target.
    embedder: str | None = None
    reembed: str | None = None
    #: Fresh each time the space's row is inserted (created or restored): never the same twice.
    incarnation: str | None = None


@dataclass(frozen=True)
class Event:
    """One logged event (``eventlog.Logged``'s fields)."""

    type: str
    lsn: int
    seq: int
    data: dict[str, Any]
    ts: float


@dataclass(frozen=True)
class Edge:
    """One association (``core.models.Association``'s stored fields)."""

    source_id: str
    target_id: str
    strength: float
    kind: str
    lsn: int


@dataclass(frozen=True)
class Associated:
    """What :meth:`PostgresStore.associate` did: the asked-for direction's strength."""

    strength: float
    created: bool
    lsn: int


@dataclass(frozen=True)
class Updated:
    """The result of a PUT or PATCH: the row as committed, and whether PUT created it."""

    memory: MemoryRow
    created: bool
    lsn: int


@dataclass(frozen=True)
class WritePolicy:
    """What a write does besides storing (``PostgresSpace`` fills it from the settings).

    ``max_memories`` / ``max_space_bytes`` (0: off) are checked inside the writing transaction,
    after its rows are written and while it holds the space's counter row: every other writer of
    the space, on any server, waits for that row, so two writers cannot both pass the check and
    together exceed the quota. ``auto_link_*`` and ``episodic_adjacency_seconds`` are the
    settings of the links SQLite makes on store (core/space.py's prepare_remember);
    ``semantic_link_threshold`` that of the ``semantic`` links SQLite makes when the server
    embeds a memory's text (core/embedded.py's ``_neighbours``; above 1: none). ``fans``: the space
    embeds text, so its vectors' fans are kept (index/density.py); as on SQLite, a space that
    takes client vectors only keeps none (its recall never weighs a fan)."""

    max_memories: int = 0
    max_space_bytes: int = 0
    auto_link_threshold: float = 0.8
    auto_link_max: int = 5
    episodic_adjacency_seconds: float = 0.0
    semantic_link_threshold: float = 0.55
    fans: bool = True

    @property
    def quota(self) -> bool:
        return self.max_memories > 0 or self.max_space_bytes > 0


#: A memory's bytes beyond its content, vector, tags and metadata (auth/quotas.py's row overhead).
ROW_OVERHEAD = 512


@dataclass
class Write:
    """One memory to store: its row, its vector, whether to link it to near neighbours, and
    whether the vector is the server embedder's (of the text), which makes ``semantic`` links."""

    memory: MemoryRow
    embedding: Vector | None = None
    auto_link: bool = False
    embedded: bool = False


@dataclass(frozen=True)
class Written:
    """A stored memory's LSN and the ``auto`` links made (``(target id, strength)``)."""

    lsn: int
    auto_links: list[tuple[str, float]]


#: Columns an update may set (PUT sets all of them; PATCH the ones given). Episode fields, kind,
#: creation time and access statistics are not the caller's to change (core/update.py).
UPDATABLE = ("content", "confidence", "decay_rate", "tags", "memory_type", "metadata")
FORGET_MODES = ("suppress", "delete")


def _meta_class(value: Any) -> tuple[int, Decimal | None, str | None]:
    """``(vtype, vnum, vtext)`` of a metadata value: SQLite's memory_meta classes, numbers exact."""
    if value is None:
        return 0, None, None
    if isinstance(value, bool):
        return 1, Decimal(int(value)), None
    if isinstance(value, int | float) and math.isfinite(value):
        return 2, Decimal(value), None
    if isinstance(value, str):
        return 3, None, value
    return 4, None, None


def _half(vector: Vector) -> HalfVector:
    return HalfVector(np.asarray(vector, dtype=np.float32))


def _row(values: Sequence[Any]) -> MemoryRow:
    return MemoryRow(**dict(zip(_COLUMNS, values, strict=True)))


def _array(top: np.ndarray) -> str:
    """A fan list as a PostgreSQL array literal (``real[]``)."""
    return "{" + ",".join(repr(float(x)) for x in top) + "}"


def sweep_key(space_id: str) -> int:
    """The advisory lock key of ``space_id``'s expiry sweep (63 bits of a hash, as beliefs.lock_key)."""
    digest = hashlib.sha256(f"engram.expiry\0{space_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class EmbedderChanged(RuntimeError):
    """A write's vectors were made for a dimension or embedder the space no longer has (a
    re-embedding switched it meanwhile, on any server): nothing was written; embed again."""

    def __init__(self, dimension: int | None, embedder: str | None) -> None:
        super().__init__("the space's embedder changed while this write was prepared")
        self.dimension = dimension
        self.embedder = embedder


class _NothingDone(Exception):
    """Raised inside a write transaction that found nothing to do: it rolls back (LSN unused)."""


class PostgresStore:
    """Space operations over one :class:`PostgresDatabase` (any number of servers may share it).

    Every write is one transaction of one space: it takes the space's next LSN, writes, logs its
    events under that LSN and sends one NOTIFY (``<lsn>:<space>``) that PostgreSQL delivers to
    listening servers when, and only if, the transaction commits. Concurrent writes of a space
    through this store (write_many, put, patch, forget) share one such transaction (group.py:
    group commit, ``group_max`` writes at most, one NOTIFY with the group's last LSN).

    Lock order: a write takes the LSN (the space's counter row) *first*, before it reads or locks
    any memory row. Writers of a space thus queue on one row and never hold a memory row while
    waiting for the counter (which deadlocked an update against a delete). A write that then
    finds nothing to do, or refuses, raises inside its transaction: the rollback gives the LSN
    back, so refusals leave no gap.
    """

    def __init__(self, db: PostgresDatabase, *, ef_search: int = 100, vector_index: bool = True,
                 clock: Callable[[], float] = time.time, group_max: int = DEFAULT_GROUP_MAX,
                 group_leaders: int | None = None) -> None:
        """``vector_index``: a space's first use of a dimension creates that dimension's HNSW index.
        Without it recall is exact (a scan of the space's rows): right for small spaces, and the
        only way on a pgvector build whose HNSW code this CPU cannot run (see docs/scale-out.md).
        ``clock``: the time reads compare ``expires_at`` with (the space's clock in core).
        ``group_leaders``: how many group commits (spaces) may hold a connection at once (None: no
        bound; see group.py)."""
        self.db = db
        self.ef_search = ef_search
        self.vector_index = vector_index
        self.clock = clock
        #: Concurrent writes of a space on this server share one transaction (group.py).
        self.groups = GroupCommitter(db, group_max, notify=self.notify, leaders=group_leaders)

    def grouped(self, space_id: str, op: Op[T], size: int = 1) -> T:
        """Run the write ``op`` (``tx -> (result, last LSN)``; it sends no NOTIFY) in the next
        group commit of ``space_id`` on this server: its result once the group committed."""
        return self.groups.run(space_id, op, size)

    # -- spaces ------------------------------------------------------------------------------
    def create_space(self, space_id: str, dimension: int | None = None,
                     created_at: float | None = None, default_ttl: float | None = None,
                     embedder: str | None = None) -> bool:
        """Create ``space_id`` (False if it exists: nothing of it changes). A new vector dimension
        gets its HNSW index; ``default_ttl`` (seconds) is kept in the space's meta, in the same
        transaction, so no server ever sees the space without it; ``embedder``, the space's
        embedder record (JSON ``{provider, model, explicit}``; None: the server's default)."""
        if dimension is not None and not 1 <= dimension <= MAX_INDEXED_DIMENSION:
            raise ValueError(f"dimension must be 1..{MAX_INDEXED_DIMENSION}, got {dimension}")
        with self.db.space(space_id) as tx:
            made = tx.one(q.CREATE_SPACE, {"created_at": time.time() if created_at is None else created_at,
                                           "dimension": dimension, "embedder": embedder})
            if made is not None and default_ttl is not None:
                tx.execute(q.SET_META, {"key": DEFAULT_TTL_KEY, "value": repr(float(default_ttl))})
            if made is not None and self.vector_index:
                tx.execute(q.ENSURE_VECTOR_INDEX)
        return made is not None

    def default_ttl(self, space_id: str) -> float | None:
        """The space's ``default_ttl_seconds`` (set at creation, never changed), or None."""
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_META, {"key": DEFAULT_TTL_KEY})
        return None if row is None else float(str(row[0]))

    def space(self, space_id: str) -> SpaceInfo | None:
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_SPACE)
        return None if row is None else SpaceInfo(str(row[0]), float(row[1]),
                                                   None if row[2] is None else int(row[2]), int(row[3]),
                                                   int(row[4]), _text(row[5]), _text(row[6]),
                                                   _text(row[7]))

    def bind_dimension(self, space_id: str, dimension: int) -> int | None:
        """Give a space without a dimension ``dimension``; returns the space's dimension after
        (another server may have bound a different one first), or None if the space is gone."""
        with self.db.space(space_id) as tx:
            tx.execute(q.BIND_DIMENSION, {"dimension": dimension})
            row = tx.one(q.GET_SPACE)
        return None if row is None or row[2] is None else int(row[2])

    def delete_space(self, space_id: str) -> bool:
        """Delete the space and every row of it (the foreign keys cascade)."""
        with self.db.space(space_id) as tx:
            return tx.one(q.DELETE_SPACE) is not None

    def list_spaces(self) -> list[str]:
        with self.db.directory() as conn:
            return [str(r[0]) for r in conn.execute(q.LIST_SPACES)]

    # -- the write path ------------------------------------------------------------------------
    @staticmethod
    def next_lsn(tx: SpaceTx) -> int:
        row = tx.one(q.NEXT_LSN)
        if row is None:
            raise LookupError(f"memory space {tx.space_id!r} does not exist")
        return int(row[0])

    @staticmethod
    def _first_lsn(tx: SpaceTx, made_for: tuple[int | None, str | None] | None) -> int:
        """A write's first LSN, and (``made_for``) the check that its vectors still fit the space."""
        row = tx.one(q.NEXT_LSN)
        if row is None:
            raise LookupError(f"memory space {tx.space_id!r} does not exist")
        if made_for is not None:
            now = (None if row[1] is None else int(row[1]), _text(row[2]))
            if made_for[0] is not None and now != made_for:
                raise EmbedderChanged(*now)
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

    @staticmethod
    def notify(tx: SpaceTx, lsn: int) -> None:
        """Wake listening servers when this transaction commits (once per transaction, its last LSN)."""
        tx.execute(q.NOTIFY_WRITE, {"lsn": lsn})

    @staticmethod
    def _add_rows(tx: SpaceTx, n: int, size: int = 0) -> tuple[int, int]:
        """Move the space's row count by ``n`` (rows this write inserted minus rows it deleted)
        and its byte count by ``size`` (``queries.ROW_BYTES`` of the rows, after minus before);
        returns both counts after."""
        row = tx.one(q.ADD_MEMORY_ROWS, {"n": n, "bytes": size})
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    @staticmethod
    def _bytes_of(tx: SpaceTx, ids: Sequence[str]) -> int:
        """The stored bytes of rows ``ids`` (``queries.ROW_BYTES``), read from the rows."""
        row = tx.one(q.BYTES_OF_IDS, {"ids": list(ids)})
        return int(row[0]) if row is not None else 0

    @staticmethod
    def _scrub(tx: SpaceTx, memory_ids: list[str]) -> None:
        if memory_ids:
            tx.execute(q.SCRUB_EVENTS, {"memory_ids": memory_ids})

    def _expired_events(self, tx: SpaceTx, rows: Iterable[Sequence[Any]], lsn: int) -> list[Event]:
        """After deleting expired rows ``(id, expires_at, bytes)``: scrub their text, one ``expired``
        each."""
        gone = sorted((float(r[1]), str(r[0])) for r in rows)
        self._scrub(tx, [mid for _, mid in gone])
        return [self.record_event(tx, "expired", lsn, {"memory_id": mid,
                                                         "expires_at": from_epoch(at).isoformat()})
                for at, mid in gone]

    def _reap(self, tx: SpaceTx, memory_id: str, now: float, lsn: int) -> tuple[int, int]:
        """Inside a write: delete ``memory_id`` if it has expired, as the sweep would; returns the
        rows and bytes deleted (for ``_add_rows``)."""
        rows = tx.execute(q.REAP_EXPIRED_ID, {"id": memory_id, "now": now}).fetchall()
        if rows:
            self._expired_events(tx, rows, lsn)
        return len(rows), sum(int(r[2]) for r in rows)

    @staticmethod
    def _write_meta(tx: SpaceTx, memory_id: str, metadata: dict[str, Any]) -> None:
        for key, value in metadata.items():
            vtype, vnum, vtext = _meta_class(value)
            tx.execute(q.INSERT_META, {"memory_id": memory_id, "mkey": key, "vtype": vtype,
                                       "vnum": vnum, "vtext": vtext})

    def _insert(self, tx: SpaceTx, memory: MemoryRow, embedding: Vector | None, lsn: int,
                top: np.ndarray | None = None) -> None:
        """Insert ``memory``; ``top``: its fan list (``_measure``), None: not measured."""
        memory.lsn = memory.created_lsn = lsn
        params: dict[str, Any] = {c: getattr(memory, c) for c in _COLUMNS}
        params["tags"] = Jsonb(memory.tags)
        params["metadata"] = Jsonb(memory.metadata)
        params["embedding"] = None if embedding is None else _half(embedding)
        tx.execute(q.INSERT_MEMORY, params)
        if top is not None:
            self._put_fan(tx, memory.id, top)
        if memory.expires_at is not None:
            tx.execute(q.LOWER_NEXT_EXPIRY, {"at": float(memory.expires_at)})
        self._write_meta(tx, memory.id, memory.metadata)
        self.record_event(tx, "stored", lsn, {"memory_id": memory.id, "content": memory.content})

    def remember(self, space_id: str, memory: MemoryRow, embedding: Vector | None = None) -> int:
        """Store ``memory`` (and its vector) with a fresh LSN; returns the LSN once committed."""
        return self.remember_many(space_id, [(memory, embedding)])[0]

    def remember_many(self, space_id: str, items: Sequence[tuple[MemoryRow, Vector | None]],
                      policy: WritePolicy | None = None) -> list[int]:
        """Store several memories in one transaction (one commit), LSNs consecutive."""
        return [w.lsn for w in self.write_many(space_id, [Write(m, e) for m, e in items], policy)]

    def write_many(self, space_id: str, writes: Sequence[Write], policy: WritePolicy | None = None,
                   made_for: tuple[int | None, str | None] | None = None) -> list[Written]:
        """Store ``writes`` in one transaction (one commit), LSNs consecutive, with the links and
        the quota check of ``policy``: the whole batch commits, or (quota exceeded) none of it.

        An expired memory holding one of the ids (not swept yet) is deleted first, as the sweep
        would: its ``expired`` event comes before the ``stored`` one, under the same LSN. Links
        are SQLite's: ``auto`` (when asked, the ``auto_link_max`` nearest memories stored before
        the batch with cosine >= ``auto_link_threshold``) and ``temporal`` (an episode and the 4
        nearest episodes within ``episodic_adjacency_seconds``, earlier items of the batch
        included), both directions, in this transaction; no ``association`` event (SQLite emits
        none for them either: the ``stored`` event and the receipt's ``auto_links`` say it).
        A vector the server embedded (``Write.embedded``) also gets SQLite's ``semantic`` links,
        made there when its background embedding lands (core/embedded.py): the ``auto_link_max``
        nearest memories stored before it, earlier items of the batch included, with cosine >=
        ``semantic_link_threshold``. Text is embedded here before the write, so they are made in
        the writing transaction, and a space's associations (``stats``, spreading) are SQLite's.

        ``made_for``: the space's ``(dimension, embedder record)`` the vectors were made for; if
        the space has others when the write holds its counter row, :class:`EmbedderChanged`
        (nothing written)."""
        if not writes:
            return []
        return self.grouped(space_id, lambda tx: self._write_many(tx, writes, policy, made_for), len(writes))

    def _write_many(self, tx: SpaceTx, writes: Sequence[Write], policy: WritePolicy | None,
                    made_for: tuple[int | None, str | None] | None) -> tuple[list[Written], int]:
        """write_many's work inside a (group's) transaction; returns what it wrote and its last LSN."""
        rule = policy or WritePolicy()
        out: list[Written] = []
        now = self.clock()
        batch_ids = [w.memory.id for w in writes]
        reaped = reaped_bytes = 0
        for i, w in enumerate(writes):
            lsn = self.next_lsn(tx) if i else self._first_lsn(tx, made_for)
            n, size = self._reap(tx, w.memory.id, now, lsn)
            reaped, reaped_bytes = reaped + n, reaped_bytes + size
            auto: list[tuple[str, float]] = []
            semantic: list[tuple[str, float, str]] = []
            top = None
            if w.embedding is not None and (rule.fans or w.embedded or w.auto_link):
                # one search for the auto links (of what was stored before the batch: the
                # batch's i earlier rows are skipped), the semantic links and the fan
                own = rule if w.embedded else None
                extra = rule.auto_link_max + i if w.auto_link else 0
                near = self._nearest(tx, w.embedding, max(extra, self._want(own)), [w.memory.id], now)
                if w.auto_link:
                    earlier = set(batch_ids[:i])
                    auto = [(t, cos) for t, cos, _ in near if t not in earlier][: rule.auto_link_max]
                    auto = [(t, cos) for t, cos in auto if cos >= rule.auto_link_threshold]
                if rule.fans or w.embedded:
                    semantic, top = self._measured(tx, near, own)
            self._insert(tx, w.memory, w.embedding, lsn, top)
            links = [(t, s, "auto") for t, s in auto]
            links += [(t, 0.5, "temporal") for t in self._adjacent(tx, w.memory, rule, now)]
            links += semantic
            self._link(tx, w.memory.id, links, now, lsn)
            out.append(Written(lsn, auto))
        added = self._bytes_of(tx, batch_ids)
        rows, size = self._add_rows(tx, len(out) - reaped, added - reaped_bytes)
        self._check_quota(tx, rule, len(out), now, rows, size)
        return out, out[-1].lsn

    def _nearest(self, tx: SpaceTx, embedding: Vector, k: int, exclude: list[str],
                 now: float) -> list[tuple[str, float, list[float] | None]]:
        """The ``k`` nearest live unsuppressed memories of a vector (except ``exclude``), nearest
        first: ``(id, cosine, fan list)`` (the list of the ``density.K`` nearest only; None for the
        others and for those not measured). Where the HNSW index serves the query, it scans on
        (iteratively) until it has found the space's ``k`` nearest, as recall does
        (``RECALL_TUNING``, local to this transaction)."""
        vec = np.asarray(embedding, dtype=np.float32)
        if k < 1 or not float(np.dot(vec, vec)) > 0.0:
            return []
        if self.vector_index:
            tx.execute(q.RECALL_TUNING, {"ef": str(max(self.ef_search, k))})
        stmt = sql.SQL(q.LINK_NEIGHBOURS).format(dim=sql.Literal(int(vec.shape[0])))
        rows = tx.execute(stmt, {"vector": _half(vec), "exclude": exclude, "now": now, "k": k}).fetchall()
        near = [str(r[0]) for r in rows[: density.K]]
        tops: dict[str, list[float]] = dict(tx.execute(q.FAN_TOPS, {"ids": near}).fetchall()) if near else {}
        return [(str(r[0]), float(r[1]), tops.get(str(r[0]))) for r in rows]

    @staticmethod
    def _want(rule: WritePolicy | None) -> int:
        """How many nearest memories ``_measured`` needs (the fan's, and the semantic links')."""
        if rule is None or not rule.semantic_link_threshold <= 1.0:
            return density.K
        return max(density.K, rule.auto_link_max)

    def _measure(self, tx: SpaceTx, memory_id: str, embedding: Vector, rule: WritePolicy | None,
                 now: float) -> tuple[list[tuple[str, float, str]], np.ndarray]:
        """``_measured`` of a search for the memory's nearest others."""
        return self._measured(tx, self._nearest(tx, embedding, self._want(rule), [memory_id], now), rule)

    def _measured(self, tx: SpaceTx, near: list[tuple[str, float, list[float] | None]],
                  rule: WritePolicy | None) -> tuple[list[tuple[str, float, str]], np.ndarray]:
        """What a memory's new vector needs, from its nearest other memories ``near`` (nearest
        first, at least ``_want(rule)`` of them where the space has them): its fan list
        (index/density.py: the cosines of its ``density.K`` nearest, ascending) and, with ``rule``
        (a vector the server embedded), its ``semantic`` links ``(target, strength, kind)``. Each
        measured neighbour takes the memory into its own list (``density.admitted``, as SQLite's
        LocalDensity.observe), in this transaction.

        The links are SQLite's, made there when its background embedding lands (core/embedded.py):
        every other live memory with a vector is a candidate, this transaction's earlier rows
        included; the strength is the cosine, rounded as SQLite rounds it."""
        thr = rule.semantic_link_threshold if rule is not None else 2.0
        most = rule.auto_link_max if rule is not None and thr <= 1.0 else 0
        entered = []
        for mid, cos, other in near[: density.K]:
            if other is not None:
                new = density.admitted(np.asarray(other, dtype=np.float32), cos)
                if new is not None:
                    entered.append((mid, new))
        self._set_fans(tx, entered)
        links = [(t, round(min(1.0, cos), 6), "semantic") for t, cos, _ in near[:most] if cos >= thr]
        return links, density.own_top(cos for _, cos, _ in near[: density.K])

    @staticmethod
    def _put_fan(tx: SpaceTx, memory_id: str, top: np.ndarray) -> None:
        tx.execute(q.PUT_FAN, {"memory_id": memory_id, "top": [float(x) for x in top],
                               "fan": density.mean_of(top)})

    @staticmethod
    def _set_fans(tx: SpaceTx, tops: list[tuple[str, np.ndarray]]) -> None:
        if tops:
            tx.execute(q.SET_FANS, {"ids": [m for m, _ in tops], "tops": [_array(t) for _, t in tops],
                                    "fans": [density.mean_of(t) for _, t in tops]})

    @staticmethod
    def _link(tx: SpaceTx, memory_id: str, links: list[tuple[str, float, str]], now: float,
              lsn: int) -> None:
        """Store ``links`` ``(target, strength, kind)`` of ``memory_id``, both directions (an edge
        that exists keeps its kind and the greater strength: ``UPSERT_LINK``)."""
        for target, strength, kind in links:
            for a, b in ((memory_id, target), (target, memory_id)):
                tx.execute(q.UPSERT_LINK, {"source": a, "target": b, "strength": float(strength),
                                           "kind": kind, "now": now, "lsn": lsn})

    @staticmethod
    def _adjacent(tx: SpaceTx, memory: MemoryRow, rule: WritePolicy, now: float) -> list[str]:
        """The episodes a new episode gets ``temporal`` links to (none for a plain memory)."""
        window = rule.episodic_adjacency_seconds
        if memory.ep_when is None or memory.kind != "episode" or not window > 0:
            return []
        when = float(memory.ep_when)
        rows = tx.execute(q.TEMPORAL_NEIGHBOURS, {"lo": when - window, "hi": when + window, "when": when,
                                                  "id": memory.id, "now": now}).fetchall()
        return [str(r[0]) for r in rows]

    @staticmethod
    def _check_quota(tx: SpaceTx, rule: WritePolicy, new: int, now: float, stored: int,
                     stored_bytes: int) -> None:
        """Refuse (roll back) a write that left the space past its quota: ``new`` memories added,
        ``stored`` the space's row count after it (``spaces.memory_rows``).

        Runs after the write's rows are in, holding the space's counter row (taken by the write's
        first ``next_lsn``), so the count is of committed rows plus this write's and no other
        writer of the space can commit between the count and this commit (see WritePolicy).
        ``stored`` counts expired rows the sweep has not deleted yet, so it is never below the
        live count: at or under ``max_memories`` it settles the question without counting; past
        it, the live rows are counted (expired ones must not hold the quota). ``stored_bytes``
        (``spaces.memory_bytes``) is the bytes' twin: ``max_space_bytes`` sums the live rows only
        when the counts say the space is past it."""
        if not rule.quota:
            return
        sid = tx.space_id
        count = stored
        if rule.max_memories > 0 and new and stored > rule.max_memories:
            row = tx.one(q.SPACE_COUNT, {"now": now})
            count = int(row[0]) if row is not None else 0
        if rule.max_memories > 0 and new and count > rule.max_memories:
            raise QuotaExceeded(
                f"memory space {sid!r} holds {count - new} memories (max_memories = {rule.max_memories}); "
                f"this write of {new} was refused and nothing was stored",
                details={"memory_space_id": sid, "max_memories": rule.max_memories})
        if rule.max_space_bytes <= 0:
            return
        used = stored_bytes + stored * ROW_OVERHEAD
        if used > rule.max_space_bytes:
            size = tx.one(q.SPACE_BYTES, {"now": now, "overhead": ROW_OVERHEAD})
            used = int(size[0]) if size is not None else 0
        if used > rule.max_space_bytes:
            raise QuotaExceeded(
                f"memory space {sid!r} would use {used} bytes with this write (max_space_bytes = "
                f"{rule.max_space_bytes}); it was refused and nothing was stored",
                details={"memory_space_id": sid, "max_space_bytes": rule.max_space_bytes})

    # -- updates (core/update.py) ----------------------------------------------------------------
    def put(self, space_id: str, memory: MemoryRow, embedding: Vector | None = None,
            policy: WritePolicy | None = None, made_for: tuple[int | None, str | None] | None = None,
            embedded: bool = False
            ) -> Updated:
        """Create or replace ``memory.id`` (PUT). ``embedded``: the server made ``embedding`` of
        the text, which then gets ``semantic`` links (write_many). A replacement keeps the row (and so its
        associations, creation time and access statistics), takes every updatable field and the
        expiry of ``memory``, is live again if it was suppressed, and keeps a vector only if one
        is given. An expired memory counts as absent: it is deleted first, as the sweep would."""
        return self._update(space_id, memory.id, memory, None, embedding, policy, made_for, embedded)

    def patch(self, space_id: str, memory_id: str, changes: dict[str, Any],
              embedding: Vector | None = None, policy: WritePolicy | None = None,
              made_for: tuple[int | None, str | None] | None = None, embedded: bool = False) -> Updated:
        """Change the given fields of a live memory (PATCH); a suppressed memory stays suppressed,
        and the vector stays unless ``embedding`` replaces it (``embedded``: made by the server
        of the new text, with ``semantic`` links as on PUT)."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}; updatable fields are "
                               f"{', '.join(UPDATABLE)}")
        return self._update(space_id, memory_id, None, changes, embedding, policy, made_for, embedded)

    def _update(self, space_id: str, memory_id: str, put: MemoryRow | None, changes: dict[str, Any] | None,
                embedding: Vector | None, policy: WritePolicy | None = None,
                made_for: tuple[int | None, str | None] | None = None, embedded: bool = False) -> Updated:
        """One PUT or PATCH; with a quota in ``policy``, checked after the write as in write_many
        (a created memory counts one; a replacement only its bytes)."""
        return self.grouped(space_id, lambda tx: self._update_tx(tx, memory_id, put, changes, embedding,
                                                                 policy, made_for, embedded))

    def _update_tx(self, tx: SpaceTx, memory_id: str, put: MemoryRow | None, changes: dict[str, Any] | None,
                   embedding: Vector | None, policy: WritePolicy | None,
                   made_for: tuple[int | None, str | None] | None, embedded: bool) -> tuple[Updated, int]:
        """_update's work inside a (group's) transaction; returns the update and its LSN."""
        rule = policy or WritePolicy()
        now = self.clock()
        space_id = tx.space_id
        # first: see the lock order in the class docstring
        lsn = self._first_lsn(tx, made_for if embedding is not None else None)
        cur = tx.one(q.CURRENT_FOR_UPDATE, {"id": memory_id})
        if cur is not None and cur[4] is not None and float(cur[4]) <= now:
            cur = None  # expired, not swept yet: gone (PUT reaps it below)
        if cur is None:
            if put is None:
                raise MemoryNotFound(
                    f"no memory with id {memory_id!r} in memory space {space_id!r}",
                    suggestion="PATCH changes an existing memory; PUT creates or replaces one.",
                    details={"memory_id": memory_id, "memory_space_id": space_id})
            reaped, reaped_bytes = self._reap(tx, memory_id, now, lsn)
            semantic: list[tuple[str, float, str]] = []
            top = None
            if embedding is not None and (rule.fans or embedded):
                semantic, top = self._measure(tx, memory_id, embedding, rule if embedded else None, now)
            self._insert(tx, put, embedding, lsn, top)
            self._link(tx, memory_id, semantic, now, lsn)
            rows, size = self._add_rows(tx, 1 - reaped, self._bytes_of(tx, [memory_id]) - reaped_bytes)
            self._check_quota(tx, rule, 1, now, rows, size)
            return Updated(put, True, lsn), lsn
        kind, old_content, has_vec = str(cur[0]), str(cur[1]), bool(cur[2])
        given = {c: getattr(put, c) for c in UPDATABLE} if put is not None else dict(changes or {})
        sets: dict[str, Any] = dict(given)
        if put is not None:
            sets["expires_at"] = put.expires_at
            sets["suppressed"] = False
        hidden = put is None and bool(cur[3])  # a PATCH keeps a suppressed memory suppressed
        semantic = []
        top = None
        if embedding is not None:
            sets["embedding"] = _half(embedding)
            if not hidden and (rule.fans or embedded):  # new vector, new neighbourhood
                semantic, top = self._measure(tx, memory_id, embedding, rule if embedded else None, now)
        elif put is not None:
            sets["embedding"] = None
        content = str(sets.get("content", old_content))
        keeps_vector = embedding is not None or (has_vec and "embedding" not in sets)
        if not content and not keeps_vector:
            raise InvalidInput(
                f"this update would leave memory {memory_id!r} with neither content nor an embedding",
                suggestion="Send content, an embedding, or both.")
        params: dict[str, Any] = {"id": memory_id, **sets}
        for name in ("tags", "metadata"):
            if name in params:
                params[name] = Jsonb(params[name])
        stmt = sql.SQL(q.UPDATE_MEMORY).format(assignments=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in sets))
        before = self._bytes_of(tx, [memory_id])
        row = tx.one(stmt, {**params, "lsn": lsn})
        if row is None:
            raise LookupError(f"memory {memory_id!r} vanished inside its own update")
        # A re-embedding's staged vector is of the old text: the worker embeds the row again.
        tx.execute(q.DROP_REEMBED_VECTOR, {"id": memory_id})
        if top is not None:
            self._put_fan(tx, memory_id, top)
        elif "embedding" in sets:  # dropped, or a suppressed memory's: measured if it returns
            tx.execute(q.DROP_FAN, {"memory_id": memory_id})
        if "metadata" in sets:
            tx.execute(q.DELETE_META, {"memory_id": memory_id})
            self._write_meta(tx, memory_id, dict(sets["metadata"]))
        memory = _row(row)
        if memory.expires_at is not None:
            tx.execute(q.LOWER_NEXT_EXPIRY, {"at": float(memory.expires_at)})
        self._link(tx, memory_id, semantic, now, lsn)
        self.record_event(tx, "updated", lsn, {
            "memory_id": memory_id, "memory_type": memory.memory_type, "confidence": memory.confidence,
            "content": content[:200], "kind": kind, "fields": sorted(given), "replaced": put is not None})
        rows, size = self._add_rows(tx, 0, self._bytes_of(tx, [memory_id]) - before)
        self._check_quota(tx, rule, 0, now, rows, size)
        return Updated(memory, False, lsn), lsn

    # -- forgetting ------------------------------------------------------------------------------
    def forget(self, space_id: str, memory_id: str, mode: str = "suppress") -> tuple[int, int] | None:
        """Suppress (hide, reversible by PUT) or delete one live memory; returns ``(lsn,
        removed_associations)`` (0 when suppressing: edges stay), or None if there is no such
        live memory. Deleting scrubs its text from the log; its edges and metadata cascade."""
        if mode not in FORGET_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(FORGET_MODES)}, got {mode!r}")
        try:
            return self.grouped(space_id, lambda tx: self._forget_tx(tx, memory_id, mode))
        except _NothingDone:
            return None

    def _forget_tx(self, tx: SpaceTx, memory_id: str, mode: str) -> tuple[tuple[int, int], int]:
        """forget's work inside a (group's) transaction (_NothingDone: no such live memory)."""
        lsn = self.next_lsn(tx)
        if tx.one(q.LIVE_STATE, {"id": memory_id, "now": self.clock()}) is None:
            raise _NothingDone  # roll back (to the savepoint): the LSN is given back
        removed = 0
        if mode == "delete":
            edges = tx.one(q.COUNT_EDGES_OF, {"id": memory_id})
            removed = int(edges[0]) if edges is not None else 0
            size = self._bytes_of(tx, [memory_id])
            tx.execute(q.DELETE_MEMORY, {"id": memory_id})
            self._add_rows(tx, -1, -size)
            self._scrub(tx, [memory_id])
        else:
            tx.execute(q.SUPPRESS_MEMORY, {"id": memory_id, "lsn": lsn})
            tx.execute(q.DROP_FANS, {"ids": [memory_id]})  # out of the average, as on SQLite
        self.record_event(tx, "forgotten", lsn, {"memory_id": memory_id, "mode": mode})
        return (lsn, removed), lsn

    def delete(self, space_id: str, memory_id: str) -> int | None:
        """Delete one memory; returns the LSN of the deletion, or None if there was no such memory."""
        done = self.forget(space_id, memory_id, "delete")
        return None if done is None else done[0]

    def forget_matching(self, space_id: str, node: Node, mode: str = "suppress") -> tuple[int, list[str]]:
        """Forget every live memory matching the filter in ONE write (one LSN): ``suppress`` hides
        those not hidden yet, ``delete`` erases all matches, suppressed ones included. Returns
        ``(lsn, ids)``, a ``forgotten`` event per id; nothing matched: ``(0, [])`` and no LSN used."""
        if mode not in FORGET_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(FORGET_MODES)}, got {mode!r}")
        expr, fparams = filters.where(node)
        template = q.DELETE_MATCHING if mode == "delete" else q.SUPPRESS_MATCHING
        stmt = sql.SQL(template).format(filter=expr)
        try:
            return self.grouped(space_id, lambda tx: self._forget_matching_tx(tx, stmt, expr, fparams, mode))
        except _NothingDone:
            return 0, []

    def _forget_matching_tx(self, tx: SpaceTx, stmt: sql.Composed, expr: sql.Composable,
                            fparams: dict[str, Any], mode: str) -> tuple[tuple[int, list[str]], int]:
        """forget_matching's work inside a (group's) transaction (_NothingDone: nothing matched).
        The filter is evaluated here, after the writes queued before it in the group: it sees them."""
        lsn = self.next_lsn(tx)
        now = self.clock()
        size = 0
        if mode == "delete":  # the bytes of what the delete selects, read before it
            found = tx.one(sql.SQL(q.MATCHING_BYTES).format(filter=expr), {**fparams, "now": now})
            size = int(found[0]) if found is not None else 0
        cur = tx.execute(stmt, {**fparams, "now": now, "lsn": lsn})
        ids = sorted(str(r[0]) for r in cur)
        if not ids:
            raise _NothingDone  # roll back (to the savepoint): the LSN is given back
        if mode == "delete":
            self._add_rows(tx, -len(ids), -size)
            self._scrub(tx, ids)
        else:
            tx.execute(q.DROP_FANS, {"ids": ids})  # out of the average, as on SQLite
        for mid in ids:
            self.record_event(tx, "forgotten", lsn, {"memory_id": mid, "mode": mode})
        return (lsn, ids), lsn

    # -- associations (cognition/associations.py) --------------------------------------------------
    def associate(self, space_id: str, source_id: str, target_id: str, strength: float,
                  bidirectional: bool = False) -> Associated:
        """Create the explicit edge, or strengthen it if it exists (saturating); ``created`` is
        true only when the asked-for direction is new. Both ends must be live and not suppressed."""
        if source_id == target_id:
            raise InvalidInput("source_id and target_id are the same memory; an association joins two "
                               "different memories")
        if not 0.0 <= strength <= 1.0:
            raise InvalidInput(f"strength must be within 0..1, got {strength}")
        return self.grouped(space_id, lambda tx: self._associate_tx(tx, source_id, target_id, strength,
                                                                    bidirectional))

    def _associate_tx(self, tx: SpaceTx, source_id: str, target_id: str, strength: float,
                      bidirectional: bool) -> tuple[Associated, int]:
        """associate's work inside a (group's) transaction: it sees the writes queued before it."""
        now = self.clock()
        lsn = self.next_lsn(tx)
        for mid in (source_id, target_id):
            state = tx.one(q.LIVE_STATE, {"id": mid, "now": now})
            if state is None or state[0]:
                raise MemoryNotFound(
                    f"no memory with id {mid!r} in memory space {tx.space_id!r}"
                    + (" (it is suppressed)" if state is not None else ""),
                    details={"memory_id": mid, "memory_space_id": tx.space_id})
        pairs = [(source_id, target_id)] + ([(target_id, source_id)] if bidirectional else [])
        result, created = 0.0, False
        for a, b in pairs:
            old = tx.one(q.EDGE_STRENGTH, {"source": a, "target": b})
            value = float(strength) if old is None else strengthened(float(old[0]), float(strength))
            tx.execute(q.UPSERT_EDGE, {"source": a, "target": b, "strength": value, "now": now,
                                       "lsn": lsn})
            if (a, b) == (source_id, target_id):
                result, created = value, old is None
        self.record_event(tx, "association", lsn, {
            "source_id": source_id, "target_id": target_id, "strength": round(result, 6),
            "bidirectional": bidirectional, "kind": "explicit"})
        return Associated(result, created, lsn), lsn

    def edges_of(self, space_id: str, memory_ids: Sequence[str], limit: int = 100) -> list[Edge]:
        """The edges touching any of ``memory_ids`` (either end), strongest first."""
        wanted = list(dict.fromkeys(memory_ids))
        if not wanted:
            return []
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.EDGES_OF, {"ids": wanted, "limit": limit}).fetchall()
        return [Edge(str(s), str(t), float(w), str(k), int(n)) for s, t, w, k, n in rows]

    # -- expiry -------------------------------------------------------------------------------------
    def has_expired(self, space_id: str, now: float | None = None) -> bool:
        with self.db.space(space_id) as tx:
            return tx.one(q.HAS_EXPIRED, {"now": self.clock() if now is None else now}) is not None

    def sweep_expired(self, space_id: str, batch: int = 500, *, exclusive: bool = False) -> int:
        """Delete the expired memories, ``batch`` per transaction (one LSN each, one ``expired``
        event per memory, seq 0, 1, ...); returns how many. Nothing expired: no write, no LSN.
        Then, if the space was due (``spaces.next_expiry``), its next expiry is settled.

        ``exclusive``: each batch first tries the space's sweep lock (``sweep_key``) and the sweep
        stops where another server holds it (that server is sweeping the space)."""
        limit = max(1, batch)
        total = 0
        while True:
            now = self.clock()
            if not self.has_expired(space_id, now):
                self._settle_expiry(space_id, now)
                return total
            try:
                with self.db.space(space_id) as tx:
                    if exclusive and not bool((tx.one(q.SWEEP_TRY_LOCK, {"key": sweep_key(space_id)})
                                               or (False,))[0]):
                        return total  # another server is sweeping it
                    lsn = self.next_lsn(tx)
                    rows = tx.execute(q.DELETE_EXPIRED, {"now": now, "limit": limit}).fetchall()
                    if not rows:  # another sweeper took them meanwhile: give the LSN back
                        raise _NothingDone
                    self._add_rows(tx, -len(rows), -sum(int(r[2]) for r in rows))
                    self._expired_events(tx, rows, lsn)
                    self.notify(tx, lsn)
            except _NothingDone:
                return total
            total += len(rows)

    def _settle_expiry(self, space_id: str, now: float) -> None:
        """After a sweep: a space whose ``next_expiry`` has passed gets its soonest expiry (None:
        nothing expires). Its row is locked first (LOCK_SPACE_ROW), so a write that lowered it
        has committed and is seen, or waits and lowers it after."""
        with self.db.space(space_id) as tx:
            row = tx.one(q.NEXT_EXPIRY, {})
            if row is None or row[0] is None or float(row[0]) > now:
                return
            tx.execute(q.LOCK_SPACE_ROW, {})
            tx.execute(q.SETTLE_NEXT_EXPIRY, {})

    def due_spaces(self, limit: int = 100) -> list[str]:
        """Spaces with memories due to expire (``spaces.next_expiry``), soonest first, whatever
        server holds them, if any (the directory: the spaces table only)."""
        with self.db.directory() as conn:
            return [str(r[0]) for r in conn.execute(q.DUE_SPACES, {"now": self.clock(), "limit": limit})]

    def sweep_due(self, batch: int = 500, spaces: int = 100) -> int:
        """Sweep every space with due memories (``due_spaces``), each under its sweep lock, so
        that two servers doing this at once sweep different spaces; returns how many were deleted."""
        return sum(self.sweep_expired(sid, batch, exclusive=True) for sid in self.due_spaces(spaces))

    # -- the fan (index/density.py) ------------------------------------------------------------
    def fans(self, space_id: str, memory_ids: Sequence[str]) -> tuple[dict[str, float], float, int]:
        """The fans of ``memory_ids`` (measured ones), the space's average fan and how many
        memories it is the average of (as ``LocalDensity``: the measured ones; suppressing a memory
        drops its fan, deleting or sweeping it too)."""
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.FANS, {"ids": list(memory_ids)}).fetchall()
        out: dict[str, float] = {}
        mean, n = 0.0, 0
        for mid, value, count in rows:
            if mid is None:
                mean, n = (float(value) if value is not None else 0.0), int(count)
            else:
                out[str(mid)] = float(value)
        return out, mean, n

    def measure_fans(self, space_id: str, limit: int = 200, chunk: int = FAN_CHUNK) -> int:
        """Measure the fan of up to ``limit`` vectors stored without one (rows older than schema
        migration 7, a re-embedding's new vectors, a restored space's), as SQLite's background
        density step does (a scan of the space's rows for those without a ``fans`` row);
        returns how many. Each transaction measures at most ``chunk`` of them holding the space's
        counter row (the writers' lock order, so that no write changes a fan list between its
        read and its update here), then commits: the space's writers wait for one chunk (each
        vector is an exact scan of the space: ~25 ms at 20k rows), not for the whole round."""
        done = 0
        while done < limit:
            asked = max(1, min(chunk, limit - done))
            now = self.clock()
            with self.db.space(space_id) as tx:
                tx.execute(q.LOCK_SPACE_ROW, {})
                rows = tx.execute(q.UNMEASURED, {"now": now, "limit": asked}).fetchall()
                for mid, vec in rows:
                    vector = np.asarray(vec.to_numpy(), dtype=np.float32)
                    _, top = self._measure(tx, str(mid), vector, None, now)
                    self._put_fan(tx, str(mid), top)
            done += len(rows)
            if len(rows) < asked:
                break  # none left to measure
        return done

    # -- reads ---------------------------------------------------------------------------------
    def get(self, space_id: str, memory_id: str) -> MemoryRow | None:
        """The memory (suppressed ones too, flagged), or None if absent or expired."""
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_MEMORY, {"id": memory_id, "now": self.clock()})
        return None if row is None else _row(row)

    def embedding(self, space_id: str, memory_id: str) -> Vector | None:
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_EMBEDDING, {"id": memory_id, "now": self.clock()})
        if row is None or row[0] is None:
            return None
        return np.asarray(row[0].to_numpy(), dtype=np.float32)

    def list_memories(self, space_id: str, *, after: int = 0, limit: int = 100, filter: Node | None = None,
                      include_suppressed: bool = False, memory_type: str | None = None) -> list[MemoryRow]:
        """Live memories in insertion order (``created_lsn``), after the cursor ``after`` (the
        ``created_lsn`` of the last one seen), matching ``filter`` (core.filters, parsed) and
        ``memory_type``; suppressed ones only if asked for."""
        return self.list_page(space_id, after=after, limit=limit, filter=filter,
                              include_suppressed=include_suppressed, memory_type=memory_type,
                              with_total=False)[0]

    def list_page(self, space_id: str, *, after: int = 0, limit: int = 100, filter: Node | None = None,
                  include_suppressed: bool = False, memory_type: str | None = None,
                  with_total: bool = True) -> tuple[list[MemoryRow], int]:
        """``list_memories`` and the number of memories the list selects on all its pages (SQLite's
        ``total``: live, of the type, matching the filter, suppressed ones if asked), read in one
        transaction (``total`` -1 when ``with_total`` is false)."""
        expr, fparams = filters.where(filter)
        params = {**fparams, "after": after, "limit": limit, "now": self.clock(),
                  "with_suppressed": include_suppressed, "memory_type": memory_type}
        with self.db.space(space_id) as tx:
            rows = tx.execute(sql.SQL(q.LIST_MEMORIES).format(filter=expr), params).fetchall()
            total = tx.one(sql.SQL(q.COUNT_LISTED).format(filter=expr), params) if with_total else None
        return [_row(r) for r in rows], int(total[0]) if total is not None else -1

    def count(self, space_id: str) -> int:
        with self.db.space(space_id) as tx:
            row = tx.one(q.COUNT_MEMORIES, {"now": self.clock()})
        return int(row[0]) if row is not None else 0

    def recall(self, space_id: str, vector: Vector, k: int = 10,
               filter: Node | None = None) -> list[tuple[str, float]]:
        """The ``k`` live, unsuppressed memories nearest ``vector`` by cosine that match ``filter``,
        as ``(id, cosine)``."""
        vec = np.asarray(vector, dtype=np.float32)
        if vec.ndim != 1 or not 1 <= vec.shape[0] <= MAX_INDEXED_DIMENSION:
            raise ValueError(f"a query vector has 1..{MAX_INDEXED_DIMENSION} dimensions")
        expr, fparams = filters.where(filter)
        stmt = sql.SQL(q.RECALL).format(dim=sql.Literal(int(vec.shape[0])), filter=expr)
        with self.db.space(space_id) as tx:
            tx.execute(q.RECALL_TUNING, {"ef": str(max(self.ef_search, k))})
            rows = tx.execute(stmt, {**fparams, "vector": _half(vec), "k": k, "now": self.clock()}).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def search_text(self, space_id: str, text: str, k: int = 10) -> list[tuple[str, float]]:
        """Full-text matches of any of the text's words (English stemming, ``ts_rank``), best first."""
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.SEARCH_TEXT, {"text": text, "k": k, "now": self.clock()}).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    # -- the event log ---------------------------------------------------------------------------
    def events_after(self, space_id: str, after: tuple[int, int] = (0, -1),
                     limit: int = 1000) -> list[Event]:
        """Logged events after position ``(lsn, seq)``, in order (``(n, LAST)`` skips all of LSN n)."""
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.EVENTS_AFTER, {"lsn": after[0], "seq": after[1], "limit": limit}).fetchall()
        return [Event(str(r[2]), int(r[0]), int(r[1]), dict(r[3]), float(r[4])) for r in rows]

    def trim_events(self, space_id: str, keep: int) -> tuple[int, int] | None:
        """Delete all but the newest ``keep`` events (eventlog.trim); returns the newest position
        removed (also kept as the space's ``event_log_trimmed``), or None if nothing was."""
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        with self.db.space(space_id) as tx:
            row = tx.one(q.TRIM_POINT, {"keep": keep})
            if row is None:
                return None
            lsn, seq = int(row[0]), int(row[1])
            tx.execute(q.TRIM_EVENTS, {"lsn": lsn, "seq": seq})
            tx.execute(q.SET_META, {"key": TRIMMED_KEY, "value": f"{lsn}:{seq}"})
        return lsn, seq

    def trimmed_upto(self, space_id: str) -> tuple[int, int]:
        """The newest position no longer in the log (``(0, -1)``: nothing was ever trimmed)."""
        with self.db.space(space_id) as tx:
            row = tx.one(q.GET_META, {"key": TRIMMED_KEY})
        if row is None:
            return 0, -1
        lsn, _, seq = str(row[0]).partition(":")
        return int(lsn), int(seq)

    # -- cognitive recall (cognition/pg_recall.py) ---------------------------------------------
    def rows_by_id(self, space_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryRow]:
        """The live rows of ``memory_ids`` (suppressed ones too, flagged), in one read."""
        wanted = list(dict.fromkeys(memory_ids))
        if not wanted:
            return {}
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.ROWS_BY_ID, {"ids": wanted, "now": self.clock()}).fetchall()
        return {r.id: r for r in map(_row, rows)}

    def context_candidates(self, space_id: str, *, t_from: float, t_to: float, place: str,
                           memory_type: str | None, people: Sequence[str], tags: Sequence[str],
                           filter: Node | None, limit: int) -> list[MemoryRow]:
        """Live unsuppressed memories matching a recall cue's context (queries.CONTEXT_CANDIDATES),
        newest first: ``place`` is a LIKE pattern over the lower-cased location, ``people`` are
        lower-cased names (any one matches), ``tags`` any one of them."""
        expr, fparams = filters.where(filter)
        stmt = sql.SQL(q.CONTEXT_CANDIDATES).format(filter=expr)
        with self.db.space(space_id) as tx:
            rows = tx.execute(stmt, {**fparams, "now": self.clock(), "t_from": t_from, "t_to": t_to,
                                     "place": place, "memory_type": memory_type, "people": list(people),
                                     "tags": list(tags), "limit": limit}).fetchall()
        return [_row(r) for r in rows]

    def neighbours(self, space_id: str, memory_ids: Sequence[str],
                   fanout: int) -> dict[str, list[tuple[str, float]]]:
        """Outgoing edges of ``memory_ids`` to unsuppressed memories, at most ``fanout`` per source,
        strongest first: one hop of spreading activation, one statement."""
        out: dict[str, list[tuple[str, float]]] = {}
        if not memory_ids:
            return out
        with self.db.space(space_id) as tx:
            rows = tx.execute(q.NEIGHBOURS, {"ids": list(memory_ids), "fanout": fanout}).fetchall()
        for s, t, w in rows:
            out.setdefault(str(s), []).append((str(t), float(w)))
        return out

    def reinforce(self, space_id: str, due: Sequence[tuple[str, int, float, float]]) -> None:
        """Strengthen recalled memories: ``(id, recalls, latest recall time, activation gain)``
        each; increments in SQL, rows locked in id order (queries.REINFORCE)."""
        if not due:
            return
        ordered = sorted(due)
        params = {"ids": [d[0] for d in ordered], "counts": [d[1] for d in ordered],
                  "times": [d[2] for d in ordered], "gains": [d[3] for d in ordered]}
        with self.db.space(space_id) as tx:
            tx.execute(q.REINFORCE_LOCK, {"ids": params["ids"]})
            tx.execute(q.REINFORCE, params)
