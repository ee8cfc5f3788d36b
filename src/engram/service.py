"""``EngramService``: the one set of operations every transport calls.

REST, gRPC, the CLI (through REST) and in-process callers all go through these
methods, so space resolution, validation and error behaviour exist once. Each
data-plane method takes the already-resolved space id first; transports obtain
it from :meth:`resolve_space`, which implements SPEC §2 for both transports.

Blocking work (waiting for a group commit, numpy search, consolidation) runs
off the event loop: writes await the commit future, reads run in a worker
thread, so one slow space never stalls the loop serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor  # noqa: F401  (imported now, not on the first

# to_thread: a lazy import needs a descriptor, and must not turn a full descriptor table into a 500)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from .auth.guard import Authorizer
from .auth.keys import KeyRecord, KeyStore, Principal
from .auth.quotas import Quotas
from .cognition.api import SpaceCognition
from .cognition.associations import edges_of
from .cognition.introspection import embedder_info
from .cognition.recall import recall as _recall
from .core import filters, readgate
from .core.admission import StreamAdmission
from .core.embedded import known_dimension
from .core.events import Subscription
from .core.models import (
    MAX_BATCH_ITEMS,
    STORED_RESULTS,
    AssociateInput,
    Association,
    BatchOutcome,
    Belief,
    BeliefPage,
    CompleteInput,
    Completion,
    ConsolidateInput,
    ConsolidationReport,
    Cue,
    DeleteByFilter,
    DeleteReceipt,
    DreamStep,
    EmbedderChoice,
    EmbedderInfo,
    EpisodeInput,
    ForgetMode,
    ForgetReceipt,
    Memory,
    MemoryInput,
    MemoryPage,
    MemoryPatch,
    RecallResult,
    ReceiptParts,
    Recognition,
    RecognizeInput,
    ReembedStatus,
    Reminiscence,
    ReminisceQuery,
    SpaceDeletion,
    SpaceDescriptor,
    SpacePage,
    SpaceStats,
    StoredItem,
    StoreReceipt,
    UpdateReceipt,
)
from .core.space import MemorySpace
from .descriptors import DescriptorBudget
from .embedding import Embedders, EmbedderSpec
from .errors import (
    DefaultSpaceProtected,
    EngramError,
    InvalidInput,
    MemoryNotFound,
    MemorySpaceConflict,
    MemorySpaceRequired,
)
from .observability import Metrics, Tracing
from .readpool import ReadPool
from .settings import Settings
from .spaces import backup
from .spaces.ids import MemorySpaceId
from .spaces.registry import SpaceRegistry
from .types import Clock, system_clock

log = logging.getLogger("engram.service")

T = TypeVar("T")

FALLBACK_WARNING = (
    "299 engram \"No memory space given; using the default space '{space}'. This fallback is deprecated: "
    "set the X-Memory-Space header (REST) or the memory_space_id field (gRPC).\""
)


class BackendRefused(Exception):
    """The storage backend cannot start (PostgreSQL: no DSN, no connection, or a schema this server
    cannot use). The message says which and how to fix it, never a password; ``engram start``
    exits 2 with it (server.run)."""


@dataclass(frozen=True)
class SpaceResolution:
    space_id: str
    fell_back: bool
    # which source named it: "header:X-Memory-Space", "query:space", "body", "field", "metadata", "default"
    source: str
    warning: str | None = None


class EngramService:
    def __init__(self, settings: Settings, *, clock: Clock = system_clock, metrics: Metrics | None = None,
                 tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or Metrics(settings.metrics_space_label_cap)
        self.tracing = tracing or Tracing(None)  # disabled unless the server built a provider
        self.embedders = Embedders(settings)
        # RLIMIT_NOFILE divided once: spaces, HTTP connections, subscribers (engram.descriptors).
        self.descriptors = DescriptorBudget.from_settings(settings)
        log.info("%s", self.descriptors.describe())
        self.registry = self._open_registry()
        self._read_gate = readgate.Gate(settings.read_concurrency)
        self.streams = StreamAdmission(settings.max_subscribers_per_space,
                                       settings.max_subscribers_per_client, self.descriptors.subscribers,
                                       derived=self.descriptors.subscribers_derived)
        self.auth = Authorizer.from_settings(settings, keys=self._open_keys())
        self.quotas = Quotas(settings.max_memories, settings.max_space_bytes)
        self.shutting_down = False
        # Recall on worker processes (engram.readpool): started with the first recall.
        self.read_pool = (ReadPool(settings, settings.read_workers, self.metrics)
                          if settings.read_workers else None)

    def _open_keys(self) -> KeyStore | None:
        """The API key store: None is the file store of ``data_dir`` (PostgresService overrides)."""
        return None

    def _open_registry(self) -> SpaceRegistry:
        """Where this server's spaces live: SQLite files under ``data_dir`` (PostgresService overrides)."""
        return SpaceRegistry(self.settings, self.clock, embedders=self.embedders,
                             descriptors=self.descriptors)

    # -- space resolution (SPEC §2) ---------------------------------------------
    def resolve_space(
        self,
        sources: Sequence[tuple[str, str | None]],
        *,
        transport: str,
        operation: str,
        peer: str = "unknown",
    ) -> SpaceResolution:
        """Choose the space from ``(source_name, value)`` pairs, in precedence order.

        Every given value is validated; values that disagree are a conflict
        naming both sources (so a body can never override a proxy-set header).
        No value at all means the default space, logged, counted and flagged,
        or an error when ``require_explicit_space`` is set.
        """
        given = [(name, value) for name, value in sources if value not in (None, "")]
        for _name, value in given:
            MemorySpaceId(value)
        if given:
            first_name, first = given[0]
            for name, value in given[1:]:
                if value != first:
                    raise MemorySpaceConflict(
                        f"memory space named twice with different values: {first_name}={first!r} "
                        f"and {name}={value!r}",
                        details={"sources": {first_name: first, name: value}},
                    )
            return SpaceResolution(first, False, first_name)
        if self.settings.require_explicit_space:
            raise MemorySpaceRequired(
                f"{operation} needs a memory space and none was given (require_explicit_space = true)"
            )
        space = self.settings.default_space
        self.metrics.fallback.labels(transport, operation).inc()
        log.warning(
            "request named no memory space; using default space (deprecated)",
            extra={"memory_space": space, "transport": transport, "route": operation, "peer": peer},
        )
        return SpaceResolution(space, True, "default", FALLBACK_WARNING.format(space=space))

    def space(self, space_id: str) -> MemorySpace:
        space = self.registry.get(space_id)
        space.check_healthy()
        return space

    async def _space(self, space_id: str) -> MemorySpace:
        """:meth:`space` for the event loop: a loaded space at once, else opened (or healed,
        or room made for it by unloading others) in a worker thread, never on the loop."""
        space = self.registry.loaded_handle(space_id)
        if space is None:
            space = await asyncio.to_thread(self.registry.get, space_id)
        space.check_healthy()
        return space

    # -- space administration ---------------------------------------------------
    async def create_space(self, space_id: str, dimension: int | None = None,
                           embedder: EmbedderChoice | None = None, *, actor: Principal | None = None,
                           peer: str = "-", default_ttl_seconds: float | None = None
                           ) -> tuple[SpaceDescriptor, bool]:
        _, created = await asyncio.to_thread(self.registry.create, space_id, dimension, embedder,
                                             default_ttl_seconds)
        if created:
            self._audit("space_created", actor, peer, space_id)
        return await asyncio.to_thread(self.registry.describe, space_id), created

    def page_size(self, limit: int | None, default: int) -> int:
        """The one page-size check of every listing, on every transport: ``None`` (or gRPC's
        unset 0) is ``default``; anything else must lie in 1..max_page_size."""
        maximum = self.settings.max_page_size
        if limit is None:
            return min(default, maximum)
        if limit < 1 or limit > maximum:
            raise InvalidInput(f"page size (limit / page_size) must be between 1 and {maximum} "
                               f"(the server's max_page_size), got {limit}",
                               example=f"limit={min(default, maximum)}")
        return limit

    async def list_spaces(self, cursor: str | None = None, limit: int | None = None, *,
                          principal: Principal | None = None) -> SpacePage:
        """A page of spaces sorted by id; a key bound to some spaces sees only those."""
        size = self.page_size(limit, 100)
        if principal is None or principal.spaces is None:
            return await asyncio.to_thread(self.registry.list, cursor, size)
        mine = principal.spaces

        def page() -> SpacePage:
            return self.registry.list(cursor, size, only=mine)

        return await asyncio.to_thread(page)

    async def get_space(self, space_id: str) -> SpaceDescriptor:
        return await asyncio.to_thread(self.registry.describe, space_id, True)

    async def reembed(self, space_id: str, embedder: EmbedderChoice | None = None) -> ReembedStatus:
        """Start (or resume) re-embedding a space; the switch to the new model is atomic when done."""
        choice = embedder or EmbedderChoice(provider=self.settings.embedder)
        spec = EmbedderSpec.resolve(choice.provider, choice.model, self.settings)

        def start(space: MemorySpace) -> ReembedStatus:
            return _reembed_status(space, space.start_reembed(spec))

        return await self._read(space_id, start, long=True)

    async def reembed_status(self, space_id: str) -> ReembedStatus:
        return await self._read(space_id, lambda s: _reembed_status(s, s.reembed_status()))

    async def delete_space(self, space_id: str, *, actor: Principal | None = None,
                           peer: str = "-") -> SpaceDeletion:
        """Erase a space. The default space is refused while unnamed requests fall back to it:
        deleting it would turn every such request into a 404 until the next restart recreates it.
        With ``require_explicit_space`` nothing falls back, and it is an ordinary space."""
        if space_id == self.settings.default_space and not self.settings.require_explicit_space:
            raise DefaultSpaceProtected(
                f"the default memory space {space_id!r} cannot be deleted; forget its memories instead",
                details={"memory_space_id": space_id},
            )
        deletion = await asyncio.to_thread(self.registry.delete, space_id)
        if self.read_pool is not None:
            self.read_pool.drop(space_id)
        self._audit("space_deleted", actor, peer, space_id)
        return deletion

    async def backup_space(self, space_id: str) -> backup.SpaceBackup:
        """A consistent snapshot of the space on disk; send ``.chunks()``, then ``.discard()`` it."""
        return await asyncio.to_thread(backup.take, self.registry, space_id)

    def new_upload(self) -> Path:
        """A temporary file in the data root to receive a backup into (removed by the caller)."""
        return backup.new_upload(self.registry)

    def check_restore(self, space_id: str, replace: bool) -> None:
        """Raise now what installing a restore as ``space_id`` would (409s), before any upload."""
        self.registry.check_restorable(MemorySpaceId(space_id), replace)

    async def restore_space(self, space_id: str, upload: Path, *, replace: bool = False,
                            actor: Principal | None = None, peer: str = "-") -> backup.RestoreReceipt:
        receipt = await asyncio.to_thread(backup.restore, self.registry, space_id, upload, replace=replace)
        if self.read_pool is not None:
            self.read_pool.drop(space_id)
        self._audit("space_restored", actor, peer, space_id)
        return receipt

    # -- API keys (SPEC §10; who may call these is the transport's Authorizer.check) ----------
    def create_key(self, name: str, role: str, spaces: Iterable[str] | None = None,
                   expires_in_seconds: float | None = None, *, actor: Principal | None = None,
                   peer: str = "-") -> tuple[KeyRecord, str]:
        """A new key and its token (shown to the caller once, never logged or stored)."""
        rec, token = self.auth.store().create(name, role, spaces, expires_in_seconds)
        self._audit("key_created", actor, peer, rec.key_id, role=rec.role.value)
        return rec, token

    def create_first_admin_key(self, name: str) -> tuple[KeyRecord, str] | None:
        """An admin key if no usable one exists (the server's bootstrap), else None; atomic across
        every server sharing the key store (auth.pg_keys)."""
        made = self.auth.store().create_first_admin(name)
        if made is not None:
            self._audit("key_created", None, "-", made[0].key_id, role=made[0].role.value)
        return made

    def list_keys(self) -> list[KeyRecord]:
        return self.auth.store().list()

    def revoke_key(self, key_id: str, *, actor: Principal | None = None, peer: str = "-") -> KeyRecord:
        rec = self.auth.store().revoke(key_id)
        self._audit("key_revoked", actor, peer, key_id)
        return rec

    def _audit(self, event: str, actor: Principal | None, peer: str, target: str, **extra: str) -> None:
        who = actor or Principal.ANONYMOUS
        self.auth.record(event, key_id=who.key_id, peer=peer, action=event, target=target, outcome="ok",
                         **extra)

    # -- memories ---------------------------------------------------------------
    async def remember(self, space_id: str, item: MemoryInput) -> StoreReceipt:
        # remember_async: same durability; a commit's acks wake this loop once, not once per write.
        space = await self._space(space_id)
        if not self.quotas.enabled:
            return await space.remember_async(item)
        async with self._admit(space, [item]):
            return await space.remember_async(item)

    async def remember_parts(self, space_id: str, item: MemoryInput) -> ReceiptParts | StoreReceipt:
        """:meth:`remember` giving the receipt's plain values (:class:`ReceiptParts`; its
        ``.receipt()`` is what ``remember`` returns), for a transport that encodes them itself.
        Same admission, durability and errors. A backend without parts gives the full receipt."""
        space = await self._space(space_id)
        if not self.quotas.enabled:
            return await space.remember_parts_async(item)
        async with self._admit(space, [item]):
            return await space.remember_parts_async(item)

    async def remember_batch(self, space_id: str, items: Sequence[MemoryInput | EngramError], *,
                             receipts: bool | Literal["parts"] = True) -> BatchOutcome:
        """Store the valid items in one durable group commit (SPEC §11 "Batch").

        ``items`` are parsed inputs or the error parsing one gave (the transport parses, so a
        bad item fails alone); their order is the answer's. 1 to ``MAX_BATCH_ITEMS`` items.
        Quotas admit the valid items together or refuse the whole batch (nothing stored). A
        failure of the whole commit (disk full...) is the request's error, not N item errors.
        ``receipts=False``: a stored item's result is a :class:`StoredItem` (id and LSN, all
        REST answers with) instead of a full ``StoreReceipt``; ``receipts="parts"``: a
        :class:`ReceiptParts` (the receipt's plain values, for a transport that encodes them itself).
        """
        if not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH_ITEMS} memories, got {len(items)}",
                               suggestion=f"Split the memories into batches of at most {MAX_BATCH_ITEMS}.",
                               example='{"memories": [{"content": "first"}, {"content": "second"}]}')
        space = await self._space(space_id)
        checked: list[MemoryInput | EngramError] = []
        for item in items:
            if isinstance(item, MemoryInput) and item.memory_space_id not in (None, "", space_id):
                item = MemorySpaceConflict(
                    f"this item names memory space {item.memory_space_id!r}; the batch goes to {space_id!r}",
                    suggestion="Omit memory_space_id from batch items, or send the batch's own space.")
            checked.append(item)
        valid = [i for i in checked if isinstance(i, MemoryInput)]

        async def run() -> list[StoreReceipt | StoredItem | ReceiptParts | EngramError]:
            with space.lease():
                queued = space.submit_remember_batch(checked, on_loop=True, receipts=receipts)
                out: list[StoreReceipt | StoredItem | ReceiptParts | EngramError] = []
                for entry in queued:
                    if isinstance(entry, EngramError):
                        out.append(entry)
                        continue
                    fut, build = entry
                    try:
                        out.append(build(await fut))
                    except EngramError as exc:
                        out.append(exc)
                return out

        if self.quotas.enabled and valid:
            async with self._admit(space, valid):
                results = await run()
        else:
            results = await run()
        stored = sum(1 for r in results if isinstance(r, STORED_RESULTS))
        if not stored:
            for r in results:  # the commit itself failed: the request failed, say it once
                if isinstance(r, EngramError) and r.http_status >= 500:
                    raise r
        return BatchOutcome(results=results, stored=stored, durability=self.settings.durability,
                            memory_space_id=space_id)

    async def update_memory(self, space_id: str, memory_id: str, *, put: MemoryInput | None = None,
                            patch: MemoryPatch | None = None) -> UpdateReceipt:
        """PUT (``put``: create or replace) or PATCH (``patch``: the given fields) one memory."""
        space = await self._space(space_id)

        async def run() -> UpdateReceipt:
            fut, receipt = space.submit_update(memory_id, put=put, patch=patch, on_loop=True)
            return receipt(await fut)

        if not self.quotas.enabled:
            return await run()
        item = put if put is not None else MemoryInput.model_construct(
            content=patch.content or "" if patch else "", embedding=patch.embedding if patch else None,
            tags=(patch.tags or []) if patch else [], metadata=(patch.metadata or {}) if patch else {})

        def exists() -> bool:
            try:
                space.row_by_id(memory_id)
                return True
            except MemoryNotFound:
                return False

        new = 0 if (put is None or await asyncio.to_thread(exists)) else 1
        async with self._admit(space, [item], new=new):
            return await run()

    def _admit(self, space: MemorySpace, items: list[MemoryInput], *,
               new: int | None = None) -> contextlib.AbstractAsyncContextManager[None]:
        """The quota reservation for a write of ``items`` to ``space`` (SPEC §10)."""
        store = space.store
        size = store.size_bytes if store is not None else (lambda: 0)
        return self.quotas.admit(space.id, items, lambda: asyncio.to_thread(space.count, strict=True),
                                  size, new=new)

    async def experience(self, space_id: str, item: EpisodeInput) -> StoreReceipt:
        return await self.remember(space_id, item)

    async def _read(self, space_id: str, fn: Callable[[MemorySpace], T], *, long: bool = False) -> T:
        """Run a blocking read in a worker thread, holding the space open (a lease) meanwhile,
        so idle unload can never close the store under a long recall or consolidation.

        Short reads (recall, get, list, recognize...) pass a gate of ``read_concurrency``
        threads: they are CPU-bound Python and mostly hold the GIL, so more threads running
        them at once only add GIL hand-offs (measured here: 32 concurrent recalls gave 195/s
        ungated, 343/s through a gate of one). Waiting happens in the worker thread, blocked
        in C without the GIL, never on the event loop. A read steps out of the gate around its
        native stretches (vector scan, FTS5 query: ``core.readgate.native``), so the second
        core runs them beside another read's Python. Long operations (consolidation,
        completion) skip the gate so they never hold up the short reads of any space.
        """
        space = await self._space(space_id)
        gate = None if long else self._read_gate

        def call() -> T:
            with readgate.held(gate):  # stepped out of around native work (core.readgate.native)
                return fn(space)

        with space.lease():
            return await asyncio.to_thread(call)

    async def recall(self, space_id: str, cue: Cue) -> RecallResult:
        with self.tracing.engine_span("engram.recall", space_id):
            if self.read_pool is not None:
                space = await self._space(space_id)
                with space.lease():
                    answer = await self.read_pool.recall(space, cue)
                if answer is not None:
                    return answer
                with self.read_pool.running_here():
                    return await self._read(space_id, lambda s: _recall(s, cue))
            return await self._read(space_id, lambda s: _recall(s, cue))

    async def get_memory(self, space_id: str, memory_id: str, include_embedding: bool = True) -> Memory:
        return await self._read(space_id, lambda s: s.get(memory_id, include_embedding))

    async def list_memories(self, space_id: str, cursor: str | None = None, limit: int | None = None,
                            memory_type: str | None = None, include_suppressed: bool = False,
                            filter: dict[str, Any] | str | None = None) -> MemoryPage:
        n = self.page_size(limit, 50)
        node = parse_filter(filter)
        return await self._read(space_id, lambda s: s.list(cursor, n, memory_type, include_suppressed, node))

    async def delete_memories(self, space_id: str, request: DeleteByFilter) -> DeleteReceipt:
        """Forget every memory of the space matching ``request.filter``, in one durable write."""
        node = parse_filter(request.filter)
        assert node is not None  # DeleteByFilter refuses an empty filter
        fut, receipt = (await self._space(space_id)).submit_delete_by_filter(node, request.mode)
        return receipt(await asyncio.wrap_future(fut))

    async def forget(
        self, space_id: str, memory_id: str, mode: ForgetMode = ForgetMode.suppress
    ) -> ForgetReceipt:
        fut, receipt = (await self._space(space_id)).submit_forget(memory_id, mode)
        return receipt(await asyncio.wrap_future(fut))

    # -- events -----------------------------------------------------------------
    def subscribe(self, space_id: str, types: Iterable[str] | None = None,
                  depth: int | None = None, client: str = "local",
                  since: tuple[int, int] | None = None) -> Subscription:
        """A subscription to one space's events, counted against the subscriber caps under ``client``
        (:func:`engram.core.admission.client_key`); raises ``TooManySubscribers`` beyond them. The
        slot is given back when the subscription is closed.

        ``since``: resume after this event-log position (``(lsn, seq)``; ``(lsn, LAST_SEQ)`` for
        "after every event of lsn"): the logged events after it are replayed first, then the
        live ones, with no gap and no duplicate (``Subscription.resume_from``). A position
        beyond the space's last LSN is ``InvalidInput``."""
        if self.shutting_down:
            from .errors import ShuttingDown

            raise ShuttingDown("the server is shutting down and accepts no new streams")
        space = self.space(space_id)
        source = space.replay_source() if since is not None else None
        if source is not None and since is not None:
            source.check(since)
        release = self.streams.admit(space_id, client)
        try:
            sub = space.events.subscribe(types, depth, on_close=release)
        except BaseException:
            release()
            raise
        if source is not None and since is not None:
            sub.resume_from(since, source)  # after subscribing: see resume_from for why
        return sub

    # -- cognition (implemented in engram.cognition.api) ----------------------
    def cognition(self, space_id: str) -> SpaceCognition:
        return _cognition_of(self.space(space_id))

    async def _cog(self, space_id: str, fn: Callable[[SpaceCognition], T], *, long: bool = False) -> T:
        return await self._read(space_id, lambda s: fn(_cognition_of(s)), long=long)

    async def associate(self, space_id: str, item: AssociateInput) -> Association:
        return await self._cog(space_id, lambda c: c.associate(item))

    async def associations(self, space_id: str, memory_ids: list[str], limit: int) -> list[Association]:
        """The edges touching any of ``memory_ids``, strongest first (read-only; the console's graph)."""
        return await self._read(space_id, lambda s: edges_of(s, memory_ids, limit))

    async def recognize(self, space_id: str, item: RecognizeInput) -> Recognition:
        return await self._cog(space_id, lambda c: c.recognize(item))

    async def reminisce(self, space_id: str, query: ReminisceQuery) -> Reminiscence:
        return await self._cog(space_id, lambda c: c.reminisce(query))

    async def consolidate(self, space_id: str, item: ConsolidateInput) -> ConsolidationReport:
        with self.tracing.engine_span("engram.consolidate", space_id):
            return await self._cog(space_id, lambda c: c.consolidate(item), long=True)

    async def dream(self, space_id: str, item: ConsolidateInput) -> AsyncIterator[DreamStep]:
        """Stream one consolidation run as progress / replay / insight steps."""
        space = await self._space(space_id)
        with space.lease():
            steps = _cognition_of(space).dream(item)
            sentinel = object()
            while True:
                step = await asyncio.to_thread(next, steps, sentinel)
                if step is sentinel:
                    return
                yield step  # type: ignore[misc]

    async def list_beliefs(self, space_id: str, cursor: str | None = None,
                           limit: int | None = None) -> BeliefPage:
        n = self.page_size(limit, 50)
        return await self._cog(space_id, lambda c: c.list_beliefs(cursor, n))

    async def get_belief(self, space_id: str, belief_id: str) -> Belief:
        return await self._cog(space_id, lambda c: c.get_belief(belief_id))

    async def complete(self, space_id: str, item: CompleteInput) -> Completion:
        return await self._cog(space_id, lambda c: c.complete(item), long=True)

    async def introspect(self, space_id: str) -> SpaceStats:
        return await self._cog(space_id, lambda c: c.introspect())

    # -- health -----------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """Loaded spaces (ok / degraded / unhealthy), the data dir's disk, and open files.

        ``status`` is ``ok`` only when every loaded space is healthy and the disk has
        at least ``disk_min_free_bytes`` free; otherwise ``degraded``.
        """
        def collect() -> dict[str, Any]:
            spaces = []
            for space in self.registry.loaded():
                spaces.append({
                    "id": space.id, "healthy": space.healthy, "state": space.health_state,
                    "reason": space.unhealthy_reason,
                    "memories": space.count() if space.healthy else None, "last_lsn": space.last_lsn,
                    "loaded": not space.closed,
                })
            disk = disk_status(self.settings.data_dir, self.settings.disk_min_free_bytes)
            healthy = all(s["healthy"] for s in spaces) and not disk["full"]
            return {
                "status": "ok" if healthy else "degraded",
                "spaces_total": len(self.registry.known_ids()),
                "spaces_loaded": len(spaces),
                "spaces": sorted(spaces, key=lambda s: s["id"]),
                "degraded_spaces": sorted(s["id"] for s in spaces if s["state"] == "degraded"),
                "unhealthy_space_ids": sorted(s["id"] for s in spaces if s["state"] == "unhealthy"),
                "disk": disk,
                "open_files": self.registry.budget.describe(),
                "shutting_down": self.shutting_down,
            }

        return await asyncio.to_thread(collect)

    def begin_shutdown(self) -> None:
        """Refuse new streams and end every open one (so listeners can drain)."""
        self.shutting_down = True
        for space in self.registry.loaded():
            space.events.close_all("server shutting down")

    def close(self) -> None:
        self.shutting_down = True
        if self.read_pool is not None:
            self.read_pool.close()
        self.registry.close()
        self.embedders.close()
        self.auth.close()


def parse_filter(raw: dict[str, Any] | str | None, where: str = "filter") -> filters.Node | None:
    """A metadata filter from a transport (an object, or JSON text), checked; ``InvalidInput`` if bad."""
    try:
        return filters.parse(raw, where)
    except filters.FilterError as exc:
        raise InvalidInput(str(exc), suggestion="Fix the named part of the filter; the grammar is in "
                           "docs/rest.md \"Metadata filters\".", example=filters.EXAMPLE) from None


def disk_status(path: Any, min_free: int) -> dict[str, Any]:
    """Free and total bytes of the filesystem holding ``path``; ``full`` below ``min_free``."""
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"free_bytes": None, "total_bytes": None, "min_free_bytes": min_free, "full": False,
                "error": str(exc)}
    return {"free_bytes": usage.free, "total_bytes": usage.total, "min_free_bytes": min_free,
            "full": usage.free < min_free}


def _reembed_status(space: MemorySpace, raw: dict[str, Any]) -> ReembedStatus:
    target = raw["target"]
    goal = None
    if target is not None:
        spec = EmbedderSpec(str(target["provider"]), str(target["model"]))
        goal = EmbedderInfo(provider=spec.provider, model=spec.model,
                            dimension=known_dimension(spec, space.settings.openai_dimension))
    return ReembedStatus(memory_space_id=space.id, state=raw["state"], done=raw["done"], total=raw["total"],
                         embedder=embedder_info(space), target=goal)


def _cognition_of(space: MemorySpace) -> SpaceCognition:
    return space.attached(SpaceCognition)
