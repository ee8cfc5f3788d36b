"""The spaces of a PostgreSQL deployment: listed, created and deleted in the database (SPEC §13).

The SQLite registry (registry.py) knows its spaces from the directories under ``data_dir``;
here the ``engram.spaces`` table is the directory, shared by every server on the database. So a
space created through one server is listed, described and served by every other at once, and a
space deleted through one is a 404 on every other from the next request: :meth:`get` asks the
database whether the space exists on each call (one primary-key read) rather than trusting a
handle cached by this server.

Handles (``PostgresSpace``) hold no data, only the space's event bus on this server and its
dimension. A handle unused for ``space_idle_unload_seconds`` and with no subscriber on this server
is dropped (:meth:`unload_idle`, the SQLite registry's idle unload), so a server that touches many
spaces over its life keeps only those in use; the next request makes a new handle from the
database, which nobody can tell from the old one. The scheduled consolidation visits every space
without keeping or refreshing handles (``get(keep=False)``). Heal and trim are no-ops here.
Expiry is swept per handle held, then in every other space with memories due
(``PostgresStore.sweep_due``: held by another server or by none), each under its sweep lock.

Dropping versus subscribing: a handle is dropped only under ``_lock`` and only with no
subscriber; :meth:`attach` subscribes under the same lock and puts the handle back if it was
dropped since the request got it. So no subscriber is ever left on a handle the registry no
longer holds (the feed would then stop serving it when a new handle of the space is watched).
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TypeVar

from ..core.embedded import known_dimension
from ..core.expiry import check_default_ttl
from ..core.models import EmbedderChoice, EmbedderInfo, SpaceDeletion, SpaceDescriptor, SpacePage
from ..core.postgres.feed import REPLACED
from ..core.postgres.live import LiveRelay
from ..core.postgres.space import PostgresSpace, spec_of
from ..core.postgres.store import PostgresStore
from ..descriptors import DescriptorBudget
from ..embedding import Embedders
from ..embedding.base import EmbedderSpec
from ..errors import DimensionMismatch, InvalidInput, MemorySpaceNotFound
from ..settings import Settings
from ..types import Clock, system_clock
from .budget import SpaceBudget
from .ids import MemorySpaceId
from .registry import page_of_ids

log = logging.getLogger("engram.spaces.pg")
T = TypeVar("T")


class PgRegistry:
    """The registry API the service uses, over the database's space directory."""

    def __init__(self, settings: Settings, store: PostgresStore, clock: Clock = system_clock, *,
                 embedders: Embedders | None = None, descriptors: DescriptorBudget | None = None,
                 relay: LiveRelay | None = None) -> None:
        self.settings = settings
        self.relay = relay  # given to every handle: live-only events reach the other servers
        # Open files: nothing per space here, but /health reports the process's limits the same way.
        self.budget = SpaceBudget.derive(settings.max_loaded_spaces, settings.max_spaces,
                                         descriptors or DescriptorBudget.from_settings(settings))
        self.store = store
        self.clock = clock
        self.embedders = embedders
        self._handles: dict[str, PostgresSpace] = {}
        self._lock = threading.Lock()
        for sid in (settings.default_space, *settings.bootstrap_spaces):
            self.create(sid)

    # -- the directory -------------------------------------------------------------------------
    def exists(self, space_id: str) -> bool:
        return self.store.space(space_id) is not None

    def known_ids(self) -> builtins.list[str]:
        return self.store.list_spaces()

    def create(self, space_id: str, dimension: int | None = None, embedder: EmbedderChoice | None = None,
               default_ttl_seconds: float | None = None) -> tuple[PostgresSpace, bool]:
        sid = MemorySpaceId(space_id)
        default_ttl = check_default_ttl(default_ttl_seconds)
        if dimension is not None and not 1 <= dimension <= self.settings.max_embedding_dim:
            raise InvalidInput(f"dimension must be between 1 and {self.settings.max_embedding_dim}, "
                               f"got {dimension}")
        record, dimension = self._embedder_record(embedder, dimension)
        created = self.store.create_space(sid, dimension, self.clock(), default_ttl, record)
        if created:
            log.info("space created", extra={"memory_space": sid})
        return self.get(sid), created

    def _embedder_record(self, choice: EmbedderChoice | None,
                         dimension: int | None) -> tuple[str | None, int | None]:
        """The space's embedder record (``spaces.embedder``) and dimension, as SQLite's registry
        and ``configure_embedder`` decide them: no choice is the server's default (no record); a
        chosen embedder of known size sets the dimension, and refuses another one asked for."""
        if choice is None:
            return None, dimension
        if self.embedders is None:
            if choice.provider.strip().lower() != "none":
                raise InvalidInput("this server embeds no text (no embedders configured); "
                                   "create the space without an embedder")
            return None, dimension
        spec = EmbedderSpec.resolve(choice.provider, choice.model, self.settings)
        size = known_dimension(spec, self.settings.openai_dimension) if spec.provider != "none" else None
        if size is not None and dimension is not None and size != dimension:
            raise DimensionMismatch(
                f"embedder {spec} makes {size}-dimensional vectors but the space was asked for dimension "
                f"{dimension}",
                suggestion="Omit dimension (the embedder sets it), or choose an embedder of that size.",
                details={"expected": size, "received": dimension})
        return json.dumps({**spec.to_dict(), "explicit": True}), size if size is not None else dimension

    def get(self, space_id: str, *, keep: bool = True) -> PostgresSpace:
        """This server's handle of ``space_id``, if the database has the space (checked each call).

        ``keep=False`` (a visit by housekeeping, not a request): a handle held is used but not
        marked used, and none is made to be held, so the visit keeps no space from idling out."""
        sid = MemorySpaceId(space_id)
        info = self.store.space(sid)
        with self._lock:
            handle = self._handles.get(sid)
        # A handle of another incarnation (deleted, perhaps created again elsewhere with another
        # dimension or default TTL, or replaced by a restore: ``spaces.incarnation`` differs) is
        # dropped and its streams closed, as a deletion or SQLite's replacing restore closes them.
        stale = None
        if handle is not None and (info is None or handle.incarnation != info.incarnation):
            stale = handle
        if info is not None and (handle is None or stale is not None):
            fresh = PostgresSpace(sid, self.store, self.settings, self.clock, dimension=info.dimension,
                                  embedders=self.embedders, created_at=info.created_at,
                                  default_ttl=self.store.default_ttl(sid),  # read once: it never changes
                                  relay=self.relay, embedder=info.embedder, incarnation=info.incarnation)
            with self._lock:
                handle = self._handles.get(sid)
                if handle is None or handle.incarnation != info.incarnation:
                    handle = fresh
                    if keep or stale is not None:  # a stale handle is replaced in any case
                        self._handles[sid] = fresh
        elif info is None and handle is not None:
            with self._lock:
                if self._handles.get(sid) is handle:
                    del self._handles[sid]
        if stale is not None and (info is None or stale is not handle):
            stale.close("memory space deleted" if info is None else REPLACED)
        if info is None:
            raise _not_found(sid)
        assert handle is not None
        if keep:
            handle.last_used = time.monotonic()
        # bound by a first vector, perhaps on another server; switched by a re-embedding
        handle.adopt(info.dimension, info.embedder)
        return handle

    def attach(self, handle: PostgresSpace,
               subscribe: Callable[[PostgresSpace], T]) -> tuple[PostgresSpace, T]:
        """``subscribe(h)`` on the handle the registry holds for ``handle``'s space, under the lock
        :meth:`unload_idle` drops handles under: ``handle`` itself, put back if it was dropped
        since :meth:`get` returned it, or the one made since then by another request."""
        with self._lock:
            held = self._handles.setdefault(handle.id, handle)
            held.last_used = time.monotonic()
            return held, subscribe(held)

    def held(self) -> int:
        """How many space handles this server holds (/health's ``spaces_loaded`` on PostgreSQL)."""
        with self._lock:
            return len(self._handles)

    def loaded_handle(self, space_id: str) -> PostgresSpace | None:
        return None  # always ask the database (get): another server may have deleted it

    def loaded(self) -> builtins.list[PostgresSpace]:
        return []  # nothing is loaded: the health page lists no per-space files here

    def describe(self, space_id: str, with_stats: bool = False) -> SpaceDescriptor:
        sid = MemorySpaceId(space_id)
        info = self.store.space(sid)
        if info is None:
            raise _not_found(sid)
        spec = spec_of(info.embedder, self.embedders) if self.embedders is not None else None
        return SpaceDescriptor(
            id=sid, created_at=datetime.fromtimestamp(info.created_at, tz=UTC),
            memory_count=self.store.count(sid), dimension=info.dimension, last_lsn=info.last_lsn, loaded=True,
            default_ttl_seconds=self.store.default_ttl(sid),
            # text is embedded before its write here: nothing waits for a vector
            embedding_backlog=0,
            embedder=EmbedderInfo(provider=spec.provider, model=spec.model,
                                  dimension=None if spec.provider == "none" else info.dimension)
            if spec is not None else None)

    def list(self, cursor: str | None = None, limit: int = 100, *,
             only: Collection[str] | None = None) -> SpacePage:
        page, next_cursor = page_of_ids(self.known_ids(), cursor, limit, only)
        described = []
        for sid in page:
            try:
                described.append(self.describe(sid))
            except MemorySpaceNotFound:
                continue  # deleted by another server since the listing
        return SpacePage(spaces=described, next_cursor=next_cursor)

    def delete(self, space_id: str) -> SpaceDeletion:
        sid = MemorySpaceId(space_id)
        count = self.store.count(sid)
        if not self.store.delete_space(sid):
            raise _not_found(sid)
        with self._lock:
            handle = self._handles.pop(sid, None)
        if handle is not None:
            handle.close("memory space deleted")
        log.info("space deleted", extra={"memory_space": sid, "memories": count})
        return SpaceDeletion(id=sid, deleted=True, memories_removed=count, bytes_removed=0, files_removed=0)

    # -- housekeeping (the server's maintenance loop) -----------------------------------------------
    def sweep_expired(self) -> int:
        with self._lock:
            handles = list(self._handles.values())
        swept = 0
        for h in handles:  # and the event log kept to its retention (eventlog.trim on SQLite)
            swept += self.store.sweep_expired(h.id, self.settings.expiry_sweep_batch)
            self.store.trim_events(h.id, self.settings.event_log_max_events)
            # the fans of vectors stored without one (SQLite measures them after opening a space),
            # in spaces that embed text (the others keep none: WritePolicy.fans)
            if h.embedding_active:
                self.store.measure_fans(h.id)
        # and every other space with memories due, held by no server or by another one (each under
        # its sweep lock: servers doing this at once take different spaces)
        swept += self.store.sweep_due(self.settings.expiry_sweep_batch)
        return swept

    def heal_due(self) -> builtins.list[str]:
        return []

    def trim(self) -> int:
        return 0

    def unload_idle(self, idle_seconds: float | None = None) -> builtins.list[str]:
        """Drop the handles unused for ``idle_seconds`` (default: ``space_idle_unload_seconds``)
        with no subscriber on this server; returns their ids. Nothing is closed: a request that
        got a dropped handle just before finishes on it (it holds no data), and :meth:`attach`
        puts it back should that request subscribe."""
        limit = self.settings.space_idle_unload_seconds if idle_seconds is None else idle_seconds
        now = time.monotonic()
        with self._lock:
            idle = [sid for sid, h in self._handles.items()
                    if now - h.last_used >= limit and h.events.subscriber_count == 0]
            for sid in idle:
                del self._handles[sid]
        if idle:
            log.debug("dropped %d idle space handles", len(idle))
        return idle

    def close(self) -> None:
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for handle in handles:
            handle.close("server shutting down")


def _not_found(sid: str) -> MemorySpaceNotFound:
    return MemorySpaceNotFound(f"memory space {sid!r} does not exist", details={"memory_space_id": sid})
