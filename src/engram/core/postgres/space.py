"""``PostgresSpace``: one memory space served from PostgreSQL (SPEC §13; issue 17, milestone 3).

The same data-plane methods as the SQLite ``MemorySpace`` (``core.backend.SpaceBackend``), over
:class:`PostgresStore`. A handle holds no data: every read goes to the database, so a write
acknowledged by any server is seen by the next read on this one; nothing is cached but the
space's vector dimension (which, once bound, never changes).

Every method blocks (one or a few transactions): the service calls them in worker threads, never
on the event loop. Events are not published here: a write's events are in the events table, and
this server's feed (``feed.py``) reads them from there in LSN order, like those of every other
server's writes, and hands them to ``events`` (the space's bus on this server).

Recall is not here: it is cognition (``cognition/pg_recall.py``, called by ``service_pg.py``),
which reads through this handle's store; so are the other cognitive operations (consolidation,
beliefs, recognize, reminisce, complete, introspect: ``cognition/pg_api.py``). Writes apply what
SQLite's do, inside their transaction (``store.WritePolicy``): auto-links to near neighbours when
asked, temporal links between episodes, and the quotas (``max_memories``, ``max_space_bytes``),
which no two servers can exceed together. What the SQLite space does and this one does not
(yet): background embedding (text without a vector is embedded here, before the write, by the
space's embedder: ``spaces.embedder``, the server's default when unset). Re-embedding is
``reembed.py``: a write made for the old embedder that meets the switch is embedded again.
"""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg

from ...errors import (
    DimensionMismatch,
    EmbedderUnavailable,
    EngramError,
    InvalidInput,
    MemoryExists,
    MemoryNotFound,
    MemorySpaceNotFound,
    NotBuiltYet,
    QuotaExceeded,
    StorageUnavailable,
)
from ...storage.eventlog import Logged, Position
from .. import filters
from ..decay import current_activation
from ..embedded import NO_EMBEDDER, embed_text, known_dimension
from ..events import EventBus
from ..expiry import expiry_of
from ..models import (
    Association,
    AutoLink,
    ConsolidationState,
    Cue,
    DeleteReceipt,
    EpisodeInput,
    ForgetMode,
    ForgetReceipt,
    Memory,
    MemoryInput,
    MemoryPage,
    MemoryPatch,
    MemoryType,
    StoreReceipt,
    UpdateReceipt,
    confidence_from,
    from_epoch,
    to_epoch,
)
from .store import EmbedderChanged, MemoryRow, PostgresStore, Vector, Write, WritePolicy, Written

if TYPE_CHECKING:
    from ...embedding import Embedders, EmbedderSpec
    from ...settings import Settings
    from ...types import Clock
    from ..backend import SpaceBackend
    from .live import LiveRelay

BACKEND = "postgres"
DURABLE = "committed to PostgreSQL (WAL flushed) before acknowledgement"
#: Events read from the table per replay step of a resumed stream.
REPLAY_CHUNK = 256
#: Attempts of a write whose space switched embedders under it (each embeds again).
CHANGED_RETRIES = 3


def spec_of(record: str | None, embedders: Embedders | None) -> EmbedderSpec:
    """The embedder of a space's record (``spaces.embedder``): None is the server's default."""
    if embedders is None:
        return NO_EMBEDDER
    if record is None:
        return embedders.default_spec()
    from ...embedding import EmbedderSpec

    rec = json.loads(record)
    spec = EmbedderSpec(str(rec["provider"]), str(rec["model"]))
    return NO_EMBEDDER if spec.provider == "none" else spec


def not_built(what: str) -> NotBuiltYet:
    """The 501 of an operation the PostgreSQL backend does not offer yet (named, never a 500)."""
    return NotBuiltYet(f"{what} is not built yet for the PostgreSQL backend (backend = \"postgres\")",
                       suggestion="Use a server with backend = \"sqlite\" for this operation, or wait for "
                                  "the PostgreSQL backend to offer it (docs/scale-out.md: what is built).",
                       details={"backend": BACKEND})


class PostgresSpace:
    """One space's handle on one server (cheap: the registry keeps one per space in use)."""

    def __init__(self, space_id: str, store: PostgresStore, settings: Settings, clock: Clock, *,
                 dimension: int | None, embedders: Embedders | None = None, created_at: float | None = None,
                 default_ttl: float | None = None, relay: LiveRelay | None = None,
                 embedder: str | None = None, incarnation: str | None = None) -> None:
        """``created_at`` tells this incarnation of the space from one created again under its id;
        ``default_ttl``: the space's ``default_ttl_seconds`` (fixed at creation, so cached);
        ``relay``: sends live-only events to the other servers' streams (live.py); ``embedder``:
        the space's embedder record (``spaces.embedder``; None: the server's default);
        ``incarnation``: ``spaces.incarnation``, which a restore or a re-creation changes."""
        self.relay = relay
        self.id = space_id
        self.created_at = created_at
        self.incarnation = incarnation
        self.default_ttl = default_ttl
        self.store = store
        self.settings = settings
        self.clock = clock
        self.dim = dimension
        self.embedders = embedders
        self.embedder_record: str | None = None
        self.embedder_spec: EmbedderSpec = NO_EMBEDDER
        self._adopted = False
        self.adopt(dimension, embedder)
        self.events = EventBus(space_id, depth=settings.subscriber_queue_depth,
                               max_lag_seconds=settings.subscriber_max_lag_seconds)
        self.closed = False
        #: time.monotonic() of the last request that got this handle (the registry's idle unload)
        self.last_used = time.monotonic()

    # -- vectors ----------------------------------------------------------------------------------
    def adopt(self, dimension: int | None, embedder: str | None) -> None:
        """Take the space's dimension and embedder as the database has them now (read by the
        registry on each request): a re-embedding finished on any server switches both at once."""
        if dimension is not None:
            self.dim = dimension
        if self._adopted and embedder == self.embedder_record:
            return
        self._adopted = True
        self.embedder_record = embedder
        self.embedder_spec = spec_of(embedder, self.embedders)

    @property
    def made_for(self) -> tuple[int | None, str | None]:
        """What this handle's vectors are made for: checked by the write under the counter row."""
        return self.dim, self.embedder_record

    @property
    def embedding_active(self) -> bool:
        """Whether text is embedded here: a server embedder, and a space whose dimension (set at
        creation, or by a first client vector) is that embedder's, as on SQLite (SPEC §9)."""
        if self.embedders is None or self.embedder_spec.provider == "none":
            return False
        own = known_dimension(self.embedder_spec, self.settings.openai_dimension)
        return self.dim is None or own is None or own == self.dim

    def _check_dim(self, n: int) -> None:
        """A vector of length ``n`` fits the space, binding the dimension on the first one."""
        if self.dim is None:
            if not 1 <= n <= self.settings.max_embedding_dim:
                raise InvalidInput(f"an embedding has 1 to {self.settings.max_embedding_dim} values, got {n}")
            self.dim = self.store.bind_dimension(self.id, n)
            if self.dim is None:
                raise self._gone()
        if n != self.dim:
            # the code, message and details SQLite's vector index gives (tests/postgres/test_differential.py)
            raise DimensionMismatch(f"embedding has {n} dimensions; this memory space expects {self.dim}",
                                    details={"expected": self.dim, "received": n},
                                    example=f"an embedding list of exactly {self.dim} floats")

    def _vector(self, given: Sequence[float] | None, text: str) -> Vector | None:
        """The vector a write stores: the client's, else the server embedder's of ``text``."""
        if given is not None:
            vec = np.asarray(given, dtype=np.float32)
        elif text and self.embedding_active:
            assert self.embedders is not None
            model = self.embedders.get(self.embedder_spec)
            if model is None:
                return None
            vec = np.asarray(model.embed([text])[0], dtype=np.float32)
        else:
            return None
        if not np.isfinite(vec).all():
            raise InvalidInput("an embedding must hold finite numbers only")
        self._check_dim(int(vec.shape[0]))
        return vec

    def query_vector(self, cue: Cue) -> tuple[Vector | None, str, str | None]:
        """The vector a recall searches with, its origin (``client``, ``embedder`` or ``none``, as
        cognition/candidates.py's QueryVector) and, when there is none, why. A client's vector of
        the wrong length is the DimensionMismatch error; an embedder that cannot embed now leaves
        recall to the query's words (the note says so), as on SQLite."""
        if cue.embedding is not None:
            vec = np.asarray(cue.embedding, dtype=np.float32)
            if self.dim is not None and vec.shape[0] != self.dim:
                self._check_dim(int(vec.shape[0]))
            return vec, "client", None  # on a space with no vector yet it finds nothing, as on SQLite
        text = (cue.query or "").strip()
        if not text or not self.embedding_active or self.embedders is None:
            return None, "none", None
        try:
            got = self.embedders.embed_query(self.embedder_spec, text, wait=bool(cue.wait_for_embeddings))
        except EmbedderUnavailable as exc:
            return None, "none", f"query not embedded: {exc.message}"
        vec = np.asarray(got, dtype=np.float32)
        return vec, "embedder", None

    def _gone(self) -> MemorySpaceNotFound:
        return MemorySpaceNotFound(f"memory space {self.id!r} does not exist",
                                   details={"memory_space_id": self.id})

    # -- writes -----------------------------------------------------------------------------------
    def _row(self, item: MemoryInput, now: float,
             memory_id: str | None = None) -> tuple[MemoryRow, Vector | None]:
        if len(item.content) > self.settings.max_content_chars:
            raise InvalidInput(f"content has {len(item.content)} characters; at most "
                               f"{self.settings.max_content_chars} are allowed")
        episode = isinstance(item, EpisodeInput)
        row = MemoryRow(id=memory_id or item.id or uuid.uuid4().hex, content=item.content,
                        kind="episode" if episode else "memory", confidence=float(item.confidence),
                        created_at=now, last_access=now, activation=float(item.confidence),
                        decay_rate=float(item.decay_rate), tags=list(item.tags),
                        memory_type=item.memory_type.value, metadata=dict(item.metadata),
                        expires_at=expiry_of(item, now, self.default_ttl))
        fields: tuple[str | None, ...] = ()
        if isinstance(item, EpisodeInput):
            row.ep_when = to_epoch(item.when)
            row.what, row.where_location, row.who = item.what, item.where_location, json.dumps(item.who)
            row.why, row.how = item.why, item.how
            row.emotional_valence, row.importance = item.emotional_valence, item.importance
            row.consolidation_state = ConsolidationState.recent.value
            row.activation = min(1.0, 0.5 * item.confidence + 0.5 * item.importance)
            fields = (item.what, item.where_location, item.why, item.how)
        return row, self._vector(item.embedding, embed_text(item.content, *fields))

    def _receipt(self, item: MemoryInput, row: MemoryRow, done: Written) -> StoreReceipt:
        return StoreReceipt(memory_id=row.id, storage_confidence=confidence_from(item.confidence, DURABLE),
                            consolidation_state=ConsolidationState.recent,
                            observed_at=from_epoch(row.created_at),
                            stored_at=from_epoch(self.clock()),
                            auto_links=[AutoLink(target_id=t, strength=round(w, 6))
                                        for t, w in done.auto_links],
                            lsn=done.lsn, durability="fsync", memory_space_id=self.id)

    @property
    def policy(self) -> WritePolicy:
        """The settings a write applies inside its transaction: quotas and links (store.py)."""
        s = self.settings
        return WritePolicy(max_memories=s.max_memories, max_space_bytes=s.max_space_bytes,
                           auto_link_threshold=s.auto_link_threshold, auto_link_max=s.auto_link_max,
                           episodic_adjacency_seconds=s.episodic_adjacency_seconds,
                           semantic_link_threshold=s.semantic_link_threshold, fans=self.embedding_active)

    def _exists(self, memory_id: str) -> MemoryExists:
        return MemoryExists(f"a memory with id {memory_id!r} already exists in memory space {self.id!r}",
                            details={"memory_id": memory_id, "memory_space_id": self.id})

    def remember(self, item: MemoryInput) -> StoreReceipt:
        out = self.remember_many([item])[0]
        if isinstance(out, EngramError):
            raise out
        return out

    def remember_many(self, items: Sequence[MemoryInput | EngramError]
                      ) -> builtins.list[StoreReceipt | EngramError]:
        """:meth:`_remember_many`, embedding again if a re-embedding switched the space's embedder
        between this write's embedding and its commit (store.EmbedderChanged: nothing written)."""
        for _ in range(CHANGED_RETRIES):
            try:
                return self._remember_many(items)
            except EmbedderChanged as changed:
                self.adopt(changed.dimension, changed.embedder)
        raise self._changing()

    def _changing(self) -> StorageUnavailable:
        return StorageUnavailable(f"memory space {self.id!r} switched embedders during this write; "
                                  "nothing was stored", suggestion="Retry the write.",
                                  details={"memory_space_id": self.id})

    def _remember_many(self, items: Sequence[MemoryInput | EngramError]
                       ) -> builtins.list[StoreReceipt | EngramError]:
        """Store every valid item in ONE transaction (one commit, consecutive LSNs); an invalid
        item fails alone. A duplicate id found at commit time fails only its own item: the batch
        is then written again without it (the first attempt rolled back, leaving no LSN used).
        Links (``auto_link``, temporal) and quotas are applied in that transaction (WritePolicy):
        a batch past the quota is refused whole (QuotaExceeded), nothing stored."""
        policy = self.policy
        now = self.clock()
        out: builtins.list[StoreReceipt | EngramError | None] = []
        rows: builtins.list[tuple[int, MemoryInput, MemoryRow, Vector | None]] = []
        for i, item in enumerate(items):
            if isinstance(item, EngramError):
                out.append(item)
                continue
            try:
                row, vec = self._row(item, now)
            except EngramError as exc:
                out.append(exc)
                continue
            out.append(None)
            rows.append((i, item, row, vec))
        seen: set[str] = set()
        for i, _item, row, _vec in rows:  # two items of one batch with one id: the second fails
            if row.id in seen:
                out[i] = self._exists(row.id)
            seen.add(row.id)
        todo = [r for r in rows if out[r[0]] is None]
        made_for = self.made_for if any(r[3] is not None for r in todo) else None
        while todo:
            try:
                # ``embedded``: the server made the vector of the text (semantic links)
                writes = [Write(row, vec, item.auto_link, embedded=item.embedding is None and vec is not None)
                          for _, item, row, vec in todo]
                done = self.store.write_many(self.id, writes, policy, made_for)
            except psycopg.errors.UniqueViolation:
                if len(todo) == 1:
                    out[todo[0][0]] = self._exists(todo[0][2].id)
                    break
                taken = self._taken([row.id for _, _, row, _ in todo])
                for i, _item, row, _vec in todo:
                    if row.id in taken:
                        out[i] = self._exists(row.id)
                todo = [r for r in todo if r[2].id not in taken] if taken else todo[:0]
                if not taken:  # raced with another writer: fall back to one transaction each
                    for r in [r for r in rows if out[r[0]] is None]:
                        try:
                            one = self.store.write_many(self.id, [Write(r[2], r[3], r[1].auto_link)], policy,
                                                        made_for)
                            out[r[0]] = self._receipt(r[1], r[2], one[0])
                        except psycopg.errors.UniqueViolation:
                            out[r[0]] = self._exists(r[2].id)
                        except QuotaExceeded as exc:
                            out[r[0]] = exc
                continue
            except EngramError:  # MemoryNotFound is a LookupError too: it is the answer, not a gone space
                raise
            except LookupError:
                raise self._gone() from None
            for (i, item, row, _vec), written in zip(todo, done, strict=True):
                out[i] = self._receipt(item, row, written)
            break
        return [o if o is not None else self._exists("?") for o in out]

    def _taken(self, ids: builtins.list[str]) -> set[str]:
        return {mid for mid in ids if self.store.get(self.id, mid) is not None}

    def update(self, memory_id: str, *, put: MemoryInput | None = None,
               patch: MemoryPatch | None = None) -> UpdateReceipt:
        for _ in range(CHANGED_RETRIES):
            try:
                return self._update(memory_id, put, patch)
            except EmbedderChanged as changed:
                self.adopt(changed.dimension, changed.embedder)
        raise self._changing()

    def _update(self, memory_id: str, put: MemoryInput | None, patch: MemoryPatch | None) -> UpdateReceipt:
        try:
            if put is not None:
                row, vec = self._row(put, self.clock(), memory_id)
                done = self.store.put(self.id, row, vec, self.policy, self.made_for,
                                      embedded=put.embedding is None and vec is not None)
            else:
                assert patch is not None
                changes = patch.given()
                given_vec = changes.pop("embedding", None)
                if isinstance(changes.get("memory_type"), MemoryType):
                    changes["memory_type"] = changes["memory_type"].value
                text = str(changes["content"]) if "content" in changes else ""
                if "content" in changes and len(text) > self.settings.max_content_chars:
                    raise InvalidInput(f"content has {len(text)} characters; at most "
                                       f"{self.settings.max_content_chars} are allowed")
                vec = self._vector(given_vec, text) if (given_vec is not None or text) else None
                done = self.store.patch(self.id, memory_id, changes, vec, self.policy, self.made_for,
                                        embedded=given_vec is None and vec is not None)
        except EngramError:  # MemoryNotFound is a LookupError too: it is the answer, not a gone space
            raise
        except LookupError:
            raise self._gone() from None
        return UpdateReceipt(memory=self.to_memory(done.memory), created=done.created, lsn=done.lsn,
                             durability="fsync")

    def forget(self, memory_id: str, mode: ForgetMode = ForgetMode.suppress) -> ForgetReceipt:
        try:
            done = self.store.forget(self.id, memory_id, mode.value)
        except EngramError:  # MemoryNotFound is a LookupError too: it is the answer, not a gone space
            raise
        except LookupError:
            raise self._gone() from None
        if done is None:
            raise MemoryNotFound(f"no memory with id {memory_id!r} in memory space {self.id!r}",
                                 details={"memory_id": memory_id, "memory_space_id": self.id})
        lsn, removed = done
        return ForgetReceipt(memory_id=memory_id, mode=mode, lsn=lsn, removed_associations=removed,
                             memory_space_id=self.id)

    def delete_by_filter(self, node: filters.Node, mode: ForgetMode) -> DeleteReceipt:
        try:
            lsn, ids = self.store.forget_matching(self.id, node, mode.value)
        except EngramError:  # MemoryNotFound is a LookupError too: it is the answer, not a gone space
            raise
        except LookupError:
            raise self._gone() from None
        return DeleteReceipt(count=len(ids), mode=mode, lsn=lsn, memory_space_id=self.id)

    def associate(self, source_id: str, target_id: str, strength: float, bidirectional: bool) -> Association:
        try:
            done = self.store.associate(self.id, source_id, target_id, strength, bidirectional)
        except EngramError:  # MemoryNotFound is a LookupError too: it is the answer, not a gone space
            raise
        except LookupError:
            raise self._gone() from None
        return Association(source_id=source_id, target_id=target_id, strength=round(done.strength, 6),
                           kind="explicit", lsn=done.lsn, memory_space_id=self.id, created=done.created)

    def associations(self, memory_ids: Sequence[str], limit: int) -> builtins.list[Association]:
        return [Association(source_id=e.source_id, target_id=e.target_id, strength=round(e.strength, 6),
                            kind=e.kind, lsn=e.lsn, memory_space_id=self.id)
                for e in self.store.edges_of(self.id, memory_ids, limit)]

    # -- reads ------------------------------------------------------------------------------------
    def to_memory(self, row: MemoryRow, embedding: Vector | None = None) -> Memory:
        mem = Memory(
            id=row.id, content=row.content,
            embedding=[float(x) for x in embedding] if embedding is not None else None,
            confidence=row.confidence, created_at=from_epoch(row.created_at),
            last_access=from_epoch(row.last_access), access_count=row.access_count,
            activation=round(current_activation(row.activation, row.last_access, row.decay_rate,
                                                self.clock()), 6),
            decay_rate=row.decay_rate, tags=list(row.tags), memory_type=MemoryType(row.memory_type),
            metadata=dict(row.metadata), suppressed=row.suppressed, lsn=row.lsn,
            expires_at=from_epoch(row.expires_at) if row.expires_at is not None else None)
        if row.kind == "episode":
            mem.when = from_epoch(row.ep_when) if row.ep_when is not None else None
            mem.what, mem.where_location, mem.why, mem.how = row.what, row.where_location, row.why, row.how
            mem.who = json.loads(row.who) if row.who else []
            mem.emotional_valence, mem.importance = row.emotional_valence, row.importance
            mem.consolidation_state = (ConsolidationState(row.consolidation_state)
                                       if row.consolidation_state else None)
        return mem

    def get(self, memory_id: str, include_embedding: bool = True) -> Memory:
        row = self.store.get(self.id, memory_id)
        if row is None:
            raise MemoryNotFound(f"no memory with id {memory_id!r} in memory space {self.id!r}",
                                 details={"memory_id": memory_id, "memory_space_id": self.id})
        vec = self.store.embedding(self.id, memory_id) if include_embedding else None
        return self.to_memory(row, vec)

    def list(self, cursor: str | None = None, limit: int = 50, memory_type: str | None = None,
             include_suppressed: bool = False, filter: filters.Node | None = None) -> MemoryPage:
        """What SQLite's list gives: live memories in insertion order (a batch's items in batch
        order), ``total`` counting what the list selects on all its pages (the type, the filter,
        suppressed ones if asked). The cursor is the ``created_lsn`` of the page's last memory
        (SQLite's is its rowid): forgetting memories between two pages moves nothing."""
        after = _parse_cursor(cursor) if cursor else 0
        rows, total = self.store.list_page(self.id, after=after, limit=limit + 1, filter=filter,
                                           include_suppressed=include_suppressed, memory_type=memory_type)
        more = len(rows) > limit
        rows = rows[:limit]
        return MemoryPage(memories=[self.to_memory(r) for r in rows],
                          next_cursor=str(rows[-1].created_lsn) if more and rows else None,
                          total=total, memory_space_id=self.id)

    def count(self) -> int:
        return self.store.count(self.id)

    @property
    def last_lsn(self) -> int:
        info = self.store.space(self.id)
        if info is None:
            raise self._gone()
        return info.last_lsn

    def rows(self, ids: Sequence[str]) -> dict[str, MemoryRow]:
        out: dict[str, MemoryRow] = {}
        for mid in ids:
            row = self.store.get(self.id, mid)
            if row is not None:
                out[mid] = row
        return out

    def publish_live(self, type_: str, lsn: int, data: dict[str, Any]) -> None:
        """A live-only event (``recalled``, ``activation``): not logged, no LSN of its own, as on
        SQLite. Through the relay it reaches the streams of every server, this one's included, from
        each server's feed, after the logged events up to ``lsn``: published here directly, it
        would overtake the write the recall saw, whose event comes through the feed."""
        if self.relay is not None:
            self.relay.send(self.id, type_, lsn, data)
        elif self.events.subscriber_count:  # no relay (a handle outside a server): local only
            self.events.publish(type_, lsn, data)

    def replay_source(self) -> PgLogReader:
        return PgLogReader(self)

    def close(self, reason: str = "space closed") -> None:
        self.closed = True
        self.events.close_all(reason)


def _parse_cursor(cursor: str) -> int:
    try:
        after = int(cursor) if cursor.isascii() and cursor.isdigit() else -1
    except ValueError:
        after = -1
    if after < 0:
        raise InvalidInput(f"cursor {cursor[:40]!r} is not a cursor this server issued",
                           suggestion="Pass the next_cursor value from the previous page.")
    return after


class PgLogReader:
    """A space's rows of ``engram.events`` as a ``core.events.ReplaySource`` (resumed streams)."""

    def __init__(self, space: PostgresSpace) -> None:
        self.space = space

    def read(self, after: Position, types: frozenset[str] | None
             ) -> tuple[builtins.list[Logged], Position, Position]:
        store, sid = self.space.store, self.space.id
        trimmed = store.trimmed_upto(sid)
        rows = store.events_after(sid, after, REPLAY_CHUNK)
        last = (rows[-1].lsn, rows[-1].seq) if rows else after
        wanted = [Logged(e.type, e.lsn, e.seq, e.data, e.ts) for e in rows
                  if types is None or e.type in types]
        return wanted, last, trimmed

    def bounds(self) -> tuple[int, int]:
        trimmed = self.space.store.trimmed_upto(self.space.id)
        return trimmed[0] + 1 if trimmed[0] else 1, self.space.last_lsn

    def check(self, after: Position) -> None:
        last = self.space.last_lsn
        if after[0] > last:
            raise InvalidInput(
                f"the resume point LSN {after[0]} is beyond the last LSN of memory space "
                f"{self.space.id!r} ({last}): it comes from another incarnation of this space",
                suggestion="Reconnect without Last-Event-ID / since_lsn for live events, or with since_lsn=0 "
                           "to replay what the log holds.")


if TYPE_CHECKING:
    _pg: type[SpaceBackend] = PostgresSpace
