"""The registry of memory spaces under one data root.

Invariants:

* A space exists iff ``<data_root>/<id>/space.json`` exists. The marker is
  written (fsync + rename) after the space's database, so a crash during
  creation leaves a directory without a marker, which is ignored and reused.
* At most one ``MemorySpace`` handle per id is ever open: loading, creating
  and deleting an id all happen under that id's lock, so concurrent callers
  from any number of threads or tasks share one store (two stores on one
  SQLite file would each run a writer thread and break group commit).
* Spaces load lazily on first use and unload after ``space_idle_unload_seconds``
  without use, so start-up and memory do not grow with idle spaces.
* At most ``budget.max_loaded`` spaces have open storage (see ``spaces.budget``):
  opening one more first unloads the least recently used spaces that nothing
  holds (no lease, subscriber, queued write or pending vector). If none can go,
  the open is refused with a retriable ``SpaceCapacityExhausted``; no other
  space is touched.
* A space whose storage failed for a transient reason is *degraded*: requests
  get a retriable ``StorageUnavailable``, and :meth:`SpaceRegistry.heal` probes
  it (or reopens it, if it never opened) with backoff, on use and from the
  server's maintenance loop, until it serves again. No restart is needed.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..cognition.api import SpaceCognition
from ..cognition.introspection import embedder_info
from ..core.backfill import EmbeddingBackfill
from ..core.embedded import implicit_spec
from ..core.expiry import DEFAULT_TTL_KEY, check_default_ttl
from ..core.models import EmbedderChoice, EmbedderInfo, SpaceDeletion, SpaceDescriptor, SpacePage
from ..core.space import MemorySpace
from ..descriptors import DescriptorBudget
from ..embedding import Embedders, EmbedderSpec
from ..errors import (
    EngramError,
    InvalidInput,
    MemorySpaceExists,
    MemorySpaceNotFound,
    SpaceCapacityExhausted,
    SpaceLimitReached,
    SpaceUnhealthy,
    StorageError,
    StorageUnavailable,
)
from ..settings import Settings
from ..storage.sqlite_store import FILE_MODE, is_transient, private_dir
from ..types import Clock, system_clock
from . import backup
from .budget import HIGH_WATER, LOW_WATER, SpaceBudget
from .ids import MemorySpaceId, is_valid

log = logging.getLogger("engram.registry")

MARKER = "space.json"


def page_of_ids(ids: list[str], cursor: str | None, limit: int,
                only: Collection[str] | None) -> tuple[list[str], str | None]:
    """One page of sorted space ids after ``cursor`` (``only``: just these ids) and the next
    page's cursor (None on the last page). Both registries page this way."""
    if only is not None:
        ids = [i for i in ids if i in only]
    if cursor:
        ids = [i for i in ids if i > cursor]
    page = ids[:limit]
    return page, (page[-1] if len(ids) > limit and page else None)


class SpaceRegistry:
    def __init__(self, settings: Settings, clock: Clock = system_clock, *,
                 embedders: Embedders | None = None, descriptors: DescriptorBudget | None = None) -> None:
        """``embedders`` None: spaces embed no text themselves (vectors only from clients).
        ``descriptors``: the process's descriptor budget (the service's; derived here if None)."""
        self.settings = settings
        self.clock = clock
        self.embedders = embedders
        self.backfill = EmbeddingBackfill(settings.embedding_batch_size) if embedders is not None else None
        self.root = Path(settings.data_dir)
        private_dir(self.root)
        self.budget = SpaceBudget.derive(settings.max_loaded_spaces, settings.max_spaces,
                                         descriptors or DescriptorBudget.from_settings(settings))
        log.info("open-file limit %d: up to %d spaces loaded at once (%s)", self.budget.nofile,
                 self.budget.max_loaded,
                 "derived from the limit" if self.budget.derived else "max_loaded_spaces",
                 extra={"nofile": self.budget.nofile, "max_loaded_spaces": self.budget.max_loaded})
        self.unloaded_for_budget = 0  # spaces unloaded to stay within the budget (a counter)
        # What the list shows of unloaded spaces (memory count, last LSN, dimension), taken as
        # they closed: listing thousands of spaces must not open thousands of databases (a
        # space not loaded since this process started is read from its file once, without
        # loading it: see _read_offline).
        self._offline: dict[str, OfflineFacts] = {}
        self._lock = threading.Lock()  # guards the dicts below, never held during I/O
        self._id_locks: dict[str, threading.RLock] = {}
        self._loaded: dict[str, MemorySpace] = {}
        self._known: set[str] = set()
        self._creating = 0
        self._opening = 0  # budget slots reserved by opens in progress (see _room_for)
        self._meta: dict[str, dict[str, Any]] = {}
        self.on_open: list[Callable[[MemorySpace], None]] = []  # hooks (metrics, tests)
        backup.recover(self.root, MARKER)  # finish or undo a restore a crash cut short
        self._scan()
        for sid in (settings.default_space, *settings.bootstrap_spaces):
            self.create(sid)

    def _scan(self) -> None:
        with os.scandir(self.root) as it:
            for entry in it:
                if (
                    entry.is_dir()
                    and is_valid(entry.name)
                    and os.path.exists(os.path.join(entry.path, MARKER))
                ):
                    self._known.add(entry.name)

    def _id_lock(self, sid: str) -> threading.RLock:
        with self._lock:
            lock = self._id_locks.get(sid)
            if lock is None:
                lock = self._id_locks[sid] = threading.RLock()
            return lock

    # -- create / get -----------------------------------------------------------
    def exists(self, space_id: str) -> bool:
        return MemorySpaceId(space_id) in self._known

    def create(self, space_id: str, dimension: int | None = None,
               embedder: EmbedderChoice | None = None,
               default_ttl_seconds: float | None = None) -> tuple[MemorySpace, bool]:
        """Create (idempotently) and return ``(handle, created)``.

        ``embedder`` None takes the server's default embedder, unless ``dimension``
        says the vectors will come from clients at another length (then: none).
        """
        sid = MemorySpaceId(space_id)
        default_ttl = check_default_ttl(default_ttl_seconds)
        spec, explicit = self._embedder_for(embedder, dimension)
        if dimension is not None and not (1 <= dimension <= self.settings.max_embedding_dim):
            raise InvalidInput(
                f"dimension must be between 1 and {self.settings.max_embedding_dim}, got {dimension}"
            )
        with self._id_lock(sid):
            if sid in self._known:
                return self._load(sid), False
            with self._lock:
                # Count creations in flight too, so racing creates of *different*
                # ids cannot overshoot max_spaces together.
                if len(self._known) + self._creating >= self.settings.max_spaces:
                    raise SpaceLimitReached(
                        f"this server already holds {len(self._known)} memory spaces (max_spaces = "
                        f"{self.settings.max_spaces})"
                    )
                self._creating += 1
            try:
                with self._room_for(sid):
                    return self._create_locked(sid, dimension, spec, explicit, default_ttl)
            except (OSError, sqlite3.Error) as exc:
                if is_transient(exc):
                    raise StorageUnavailable(f"memory space {sid!r} could not be created now: {exc}",
                                             details={"memory_space_id": sid}) from exc
                raise StorageError(f"memory space {sid!r} could not be created: {exc}") from exc
            finally:
                with self._lock:
                    self._creating -= 1

    def _embedder_for(self, choice: EmbedderChoice | None,
                      dimension: int | None) -> tuple[EmbedderSpec | None, bool]:
        if self.embedders is None:
            if choice is not None and choice.provider.strip().lower() != "none":
                raise InvalidInput("this server embeds no text (no embedders configured); "
                                   "create the space without an embedder")
            return None, False
        if choice is not None:
            return EmbedderSpec.resolve(choice.provider, choice.model, self.settings), True
        return implicit_spec(self.embedders, dimension, self.settings.openai_dimension), False

    def _open_space(self, sid: str) -> MemorySpace:
        space = MemorySpace(sid, self.root / sid, self.settings, self.clock,
                            embedders=self.embedders, backfill=self.backfill)
        if space.healthy:
            space.attach(SpaceCognition(space, self.settings))
        return space

    def _create_locked(self, sid: MemorySpaceId, dimension: int | None, spec: EmbedderSpec | None,
                       explicit: bool, default_ttl: float | None = None) -> tuple[MemorySpace, bool]:
        """Create the space; the caller holds the id lock."""
        space_dir = self.root / sid
        if space_dir.exists():
            # No marker: leftovers of a creation or deletion cut short by a crash.
            shutil.rmtree(space_dir)
        space_dir.mkdir(mode=0o700, parents=True)
        created_at = self.clock()
        space = self._open_space(sid)
        if not space.healthy:
            reason = space.unhealthy_reason
            space.close("creation failed")
            shutil.rmtree(space_dir, onerror=_log_rm_error)
            if space.degraded:
                raise StorageUnavailable(f"memory space {sid!r} could not be created now: {reason}",
                                         details={"memory_space_id": sid})
            raise StorageError(f"memory space {sid!r} could not be created: {reason}")
        if dimension is not None and space.store is not None:
            def set_dim(conn, _lsn):  # type: ignore[no-untyped-def]
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)", (str(dimension),)
                )

            space.store.write(set_dim, mutates=False)
            space.dim = dimension
            space.vectors.dim = dimension
        if default_ttl is not None and space.store is not None:
            def set_ttl(conn, _lsn):  # type: ignore[no-untyped-def]
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                             (DEFAULT_TTL_KEY, repr(default_ttl)))

            space.store.write(set_ttl, mutates=False)
            space.default_ttl = default_ttl
        if spec is not None:
            try:
                space.configure_embedder(spec, explicit)
            except BaseException:
                space.close("creation failed")
                shutil.rmtree(space_dir, onerror=_log_rm_error)
                raise
        marker: dict[str, Any] = {"id": sid, "created_at": created_at, "dimension": space.dim,
                                  "embedder": None if spec is None else spec.to_dict()}
        if default_ttl is not None:
            marker["default_ttl_seconds"] = default_ttl
        _write_marker(space_dir, marker)
        with self._lock:
            self._known.add(sid)
            self._loaded[sid] = space
        for hook in self.on_open:
            hook(space)
        log.info("space created", extra={"memory_space": sid})
        return space, True

    def get(self, space_id: str) -> MemorySpace:
        """The loaded handle of an existing space (or a new one if auto_create_spaces)."""
        sid = MemorySpaceId(space_id)
        space = self._loaded.get(sid)
        if space is not None:
            # Publish "in use" *before* looking at ``unloading``; unload_idle sets
            # ``unloading`` *before* reading ``last_used``. Whichever order the two
            # threads run in, either the unloader sees this use and keeps the
            # space, or this caller sees the flag and takes the locked slow path.
            space.last_used = time.monotonic()
            if not space.unloading and not space.closed:
                if space.degraded and time.monotonic() >= space.retry_at:
                    return self.heal(space)
                return space
        if sid not in self._known:
            if self.settings.auto_create_spaces:
                return self.create(sid)[0]
            raise MemorySpaceNotFound(
                f"memory space {sid!r} does not exist",
                details={"memory_space_id": sid},
            )
        return self._load(sid)

    def loaded_handle(self, space_id: str) -> MemorySpace | None:
        """The open handle of a loaded, usable space without any I/O, else None (then call get)."""
        space = self._loaded.get(space_id)
        if space is None:
            return None
        space.last_used = time.monotonic()  # the same publication protocol as get()
        if space.unloading or space.closed or (space.degraded and time.monotonic() >= space.retry_at):
            return None
        return space

    def _load(self, sid: str) -> MemorySpace:
        with self._id_lock(sid):
            space = self._loaded.get(sid)
            if space is not None and not space.closed:
                return space
            if sid not in self._known:
                raise MemorySpaceNotFound(f"memory space {sid!r} does not exist")
            with self._room_for(sid):
                space = self._open_space(sid)
                with self._lock:
                    self._loaded[sid] = space
                    self._offline.pop(sid, None)  # stale once the space can change
            for hook in self.on_open:
                hook(space)
            return space

    def loaded(self) -> list[MemorySpace]:
        with self._lock:
            return list(self._loaded.values())

    def known_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._known)

    # -- describe / list ----------------------------------------------------------
    def describe(self, space_id: str, with_stats: bool = False) -> SpaceDescriptor:
        sid = MemorySpaceId(space_id)
        if sid not in self._known:
            raise MemorySpaceNotFound(
                f"memory space {sid!r} does not exist", details={"memory_space_id": sid}
            )
        meta = self._marker(sid)
        space = self._loaded.get(sid)
        if space is None or space.closed:
            space = None
            if with_stats:
                try:
                    space = self._load(sid)
                except SpaceCapacityExhausted:
                    space = None  # described from its files, like any unloaded space
        desc = SpaceDescriptor(
            id=sid,
            created_at=datetime.fromtimestamp(float(meta.get("created_at", 0.0)), tz=UTC),
            dimension=(space.dim if space is not None else meta.get("dimension")),
            loaded=space is not None and not space.closed,
            default_ttl_seconds=(space.default_ttl if space is not None else meta.get("default_ttl_seconds")),
        )
        if space is not None:
            desc.embedder = embedder_info(space)
            desc.embedding_backlog = space.embedding_backlog
            desc.memory_count = space.count()
            desc.last_lsn = space.last_lsn
            desc.healthy = space.healthy
            desc.reason = space.unhealthy_reason
        else:
            facts = self._offline_facts(sid)
            desc.memory_count = facts.memory_count
            desc.last_lsn = facts.last_lsn
            if facts.dimension is not None:
                desc.dimension = facts.dimension  # bound by a first embedding after creation
            recorded = meta.get("embedder")
            if isinstance(recorded, dict):
                desc.embedder = EmbedderInfo(provider=str(recorded.get("provider")),
                                             model=str(recorded.get("model")),
                                             dimension=desc.dimension)
        if with_stats and space is not None and space.healthy:
            # A damaged space is described (healthy=false and why), never an error:
            # health checks and operators must be able to see it.
            try:
                desc.stats = space.attached(SpaceCognition).introspect().model_dump(mode="json")
            except LookupError:
                desc.stats = None
            except SpaceUnhealthy:
                desc.healthy = False
                desc.reason = space.unhealthy_reason
        return desc

    def marker(self, space_id: str) -> dict[str, Any]:
        """What the space's marker records (id, created_at, dimension, embedder)."""
        return dict(self._marker(MemorySpaceId(space_id)))

    def _marker(self, sid: str) -> dict[str, Any]:
        cached = self._meta.get(sid)
        if cached is None:
            try:
                cached = json.loads((self.root / sid / MARKER).read_text())
            except (OSError, ValueError):
                cached = {"id": sid, "created_at": 0.0}
            self._meta[sid] = cached
        return cached

    def list(self, cursor: str | None = None, limit: int = 100, *,
             only: Collection[str] | None = None) -> SpacePage:
        """A page of spaces sorted by id (``only``: just these ids, the spaces of an API key). The
        page size was checked by the service (EngramService.page_size)."""
        page, next_cursor = page_of_ids(self.known_ids(), cursor, limit, only)
        return SpacePage(spaces=[self.describe(i) for i in page], next_cursor=next_cursor)

    # -- restore (see spaces.backup) ------------------------------------------------
    @staticmethod
    def write_marker(space_dir: Path, data: dict[str, Any]) -> None:
        _write_marker(space_dir, data)

    def check_restorable(self, space_id: str, replace: bool) -> None:
        """Raise if a restore as ``space_id`` could not be installed (exists without replace, or full)."""
        sid = MemorySpaceId(space_id)
        if sid in self._known:
            if not replace:
                raise MemorySpaceExists(
                    f"memory space {sid!r} already exists; restore under a new id or pass replace=true",
                    details={"memory_space_id": sid})
        elif len(self._known) + self._creating >= self.settings.max_spaces:
            raise SpaceLimitReached(f"this server already holds {len(self._known)} memory spaces "
                                    f"(max_spaces = {self.settings.max_spaces})")

    def install(self, space_id: str, staged: Path, *, replace: bool) -> bool:
        """Make the checked, marked directory ``staged`` (in the data root) space ``space_id``.

        Returns True if an existing space was replaced. A new id appears by one
        rename. A replaced space serves until this point; then, under its id lock
        (requests wait, holders of the old handle get a retriable ShuttingDown),
        it is closed, moved aside and the new directory renamed in. A crash
        between the two renames is settled by ``backup.recover`` at the next start.
        """
        sid = MemorySpaceId(space_id)
        space_dir = self.root / sid
        with self._id_lock(sid):
            self.check_restorable(sid, replace)
            replaced = sid in self._known
            if not replaced:
                if space_dir.exists():  # no marker: leftovers of a create or delete cut short
                    shutil.rmtree(space_dir)
                os.rename(staged, space_dir)
                _fsync_dir(self.root)
                with self._lock:
                    self._known.add(sid)
                    self._meta.pop(sid, None)
                    self._offline.pop(sid, None)
                return False
            old = self._loaded.get(sid)
            if old is not None:
                old.unloading = True
                with self._lock:
                    self._loaded.pop(sid, None)
                old.close("memory space replaced by a restore")
            aside = self.root / (backup.REPLACED_PREFIX + sid)
            if aside.exists():
                shutil.rmtree(aside)
            os.rename(space_dir, aside)
            try:
                os.rename(staged, space_dir)
            except BaseException:
                os.rename(aside, space_dir)
                raise
            _fsync_dir(self.root)
            with self._lock:
                self._meta.pop(sid, None)
                self._offline.pop(sid, None)
            shutil.rmtree(aside, onerror=_log_rm_error)
            log.info("space replaced by a restore", extra={"memory_space": sid})
            return True

    # -- delete / unload ----------------------------------------------------------
    def delete(self, space_id: str) -> SpaceDeletion:
        sid = MemorySpaceId(space_id)
        with self._id_lock(sid):
            if sid not in self._known:
                raise MemorySpaceNotFound(
                    f"memory space {sid!r} does not exist", details={"memory_space_id": sid}
                )
            space = self._loaded.pop(sid, None)
            memories = space.count() if space is not None else self._offline_facts(sid).memory_count
            if space is not None:
                space.close("memory space deleted")
            space_dir = self.root / sid
            files, size = 0, 0
            for p in _walk(space_dir):
                files += 1
                with contextlib.suppress(OSError):
                    size += p.stat().st_size
            # Remove the marker first (durably): a crash mid-delete then leaves an
            # unmarked directory, which is not a space and is cleaned on re-create.
            try:
                (space_dir / MARKER).unlink()
                _fsync_dir(space_dir)
            except FileNotFoundError:
                pass
            # The space is gone once its marker is; a file rmtree cannot remove is
            # logged and the unmarked directory is cleaned by the next create.
            shutil.rmtree(space_dir, onerror=_log_rm_error)
            _fsync_dir(self.root)
            with self._lock:
                self._known.discard(sid)
                self._meta.pop(sid, None)
                self._offline.pop(sid, None)
            log.info("space deleted", extra={"memory_space": sid, "memories": memories})
            return SpaceDeletion(id=sid, deleted=True, memories_removed=memories, bytes_removed=size,
                                 files_removed=files)

    def unload_idle(self, idle_seconds: float | None = None) -> builtins.list[str]:
        """Close spaces unused for ``idle_seconds`` (default: the setting); returns their ids.

        Safe beside requests: a space with live subscribers or leases is kept,
        and the idle test is repeated under the space's lock after raising the
        ``unloading`` flag (see :meth:`get` for the other half of the protocol).
        Queued writes of an unloaded space finish durably before it closes.
        """
        limit = self.settings.space_idle_unload_seconds if idle_seconds is None else idle_seconds
        out = []
        for space in self.loaded():
            if time.monotonic() - space.last_used < limit:
                continue
            with self._id_lock(space.id):
                if self._loaded.get(space.id) is not space or space.closed:
                    continue
                space.unloading = True
                idle = time.monotonic() - space.last_used >= limit
                # A space with vectors still to compute stays until they are done.
                if not idle or not space.evictable:
                    space.unloading = False
                    continue
                with self._lock:
                    self._loaded.pop(space.id, None)
                self._close_unloaded(space, "unloaded (idle)")
                out.append(space.id)
                log.info("space unloaded (idle)", extra={"memory_space": space.id})
        return out

    def _close_unloaded(self, space: MemorySpace, reason: str) -> None:
        """Close an unloaded space (caller holds its lock), remembering what the list shows of it."""
        facts = OfflineFacts(space.count(), space.last_lsn, space.dim) if space.healthy else None
        space.close(reason)
        # Writes still queued commit during close: then the count taken above is stale, and the
        # file is read the next time the list asks.
        if facts is not None and space.last_lsn == facts.last_lsn:
            with self._lock:
                self._offline[space.id] = facts

    def _offline_facts(self, sid: str) -> OfflineFacts:
        facts = self._offline.get(sid)
        if facts is None:
            # Reading takes up to three descriptors for a moment: not when the process is
            # already short of them (the loaded spaces and connections come first).
            read = None if self.budget.fds_above(HIGH_WATER) else _read_offline(self.root / sid)
            if read is None:
                return OfflineFacts(0, 0, None)  # unreadable now: not remembered, read again next time
            with self._lock:
                facts = self._offline.setdefault(sid, read)
        return facts

    # -- budget ------------------------------------------------------------------
    def _holding(self) -> int:
        """Loaded spaces that hold open storage (a degraded space that never opened holds none),
        plus the slots reserved by opens in progress."""
        with self._lock:
            return self._holding_locked()

    def _holding_locked(self) -> int:
        loaded = sum(1 for s in self._loaded.values() if s.store is not None and not s.closed)
        return loaded + self._opening

    @contextlib.contextmanager
    def _room_for(self, sid: str, *, required: bool = True) -> Iterator[None]:
        """Hold a budget slot for opening ``sid`` until the block has put the opened space in
        ``_loaded`` (see :meth:`_reserve`). ``required=False`` takes a slot even when no room
        could be made (a reopen that may still succeed)."""
        self._reserve(sid, required)
        try:
            yield
        finally:
            with self._lock:
                self._opening -= 1

    def _reserve(self, sid: str, required: bool) -> None:
        """Before opening ``sid``: unload least recently used spaces until a slot is free, and take it.

        Runs with ``sid``'s lock held; victims' locks are only *tried* (never waited
        for), so two threads making room for each other's spaces cannot deadlock. The
        check and the reservation are one step under ``_lock``, so concurrent opens of
        different spaces cannot overshoot the budget together; a thread that loses a
        freed slot to another unloads the next victim. Raises ``SpaceCapacityExhausted``
        (retriable) when every loaded space is in use.
        """
        budget = self.budget
        victims: builtins.list[MemorySpace] | None = None
        passes = 0
        if budget.fds_above(HIGH_WATER):  # descriptor pressure: best effort, down to the low mark
            victims = self._victims(sid)
            while victims and budget.fds_above(LOW_WATER):
                self._try_unload(victims.pop(0), "unloaded (descriptor pressure)")
        while True:
            with self._lock:
                if not required or self._holding_locked() < budget.max_loaded:
                    self._opening += 1
                    return
            if victims is None:
                victims = self._victims(sid)
            unloaded = False
            while victims and not unloaded:
                unloaded = self._try_unload(victims.pop(0), "unloaded (space budget)")
            if not unloaded:
                # A pass unloaded nothing: look again (others may have unloaded, finished their
                # work or their opens meanwhile), for a few seconds at most, and give up at once
                # when nothing loaded is idle and nothing is being opened.
                passes += 1
                victims = self._victims(sid)
                with self._lock:
                    opening = self._opening  # others' opens: their spaces become victims soon
                if passes > 2500 or not (opening or any(v.evictable for v in victims)):
                    source = (f"the open-file limit {budget.nofile}" if budget.derived
                              else "max_loaded_spaces")
                    raise SpaceCapacityExhausted(
                        f"{self._holding()} memory spaces are loaded or opening (the budget is "
                        f"{budget.max_loaded}, from {source}) and every one of them is in use "
                        "(streams, leases or writes in flight)",
                        details={"memory_space_id": sid, "max_loaded_spaces": budget.max_loaded},
                    )
                time.sleep(0.002)

    def _victims(self, sid: str) -> builtins.list[MemorySpace]:
        """Loaded spaces other than ``sid`` that hold storage, least recently used first."""
        return sorted((s for s in self.loaded() if s.id != sid and s.store is not None),
                      key=lambda s: s.last_used)

    def trim(self) -> int:
        """Between loads (the maintenance loop): above the high water mark of descriptors, unload
        least recently used idle spaces down to the low mark. Returns how many were unloaded."""
        if not self.budget.fds_above(HIGH_WATER):
            return 0
        unloaded = 0
        for victim in sorted((s for s in self.loaded() if s.store is not None), key=lambda s: s.last_used):
            if self._try_unload(victim, "unloaded (descriptor pressure)"):
                unloaded += 1
                if not self.budget.fds_above(LOW_WATER):
                    break
        return unloaded

    def _try_unload(self, space: MemorySpace, reason: str) -> bool:
        """Unload ``space`` if nothing holds it and its lock is free now; never waits."""
        lock = self._id_lock(space.id)
        if not lock.acquire(blocking=False):
            return False
        try:
            if self._loaded.get(space.id) is not space or space.closed:
                return False
            # The same two-sided protocol as unload_idle/get: raise the flag, then check
            # that no caller published a use since we looked. A get() that runs after the
            # flag is up takes the locked slow path and reopens the space after us.
            seen = space.last_used
            space.unloading = True
            if space.last_used != seen or not space.evictable:
                space.unloading = False
                return False
            with self._lock:
                self._loaded.pop(space.id, None)
            self._close_unloaded(space, reason)
            self.unloaded_for_budget += 1
            log.debug("space unloaded to stay within the budget", extra={"memory_space": space.id})
            return True
        finally:
            lock.release()

    # -- healing -----------------------------------------------------------------
    def heal(self, space: MemorySpace) -> MemorySpace:
        """One attempt to bring a degraded space back; returns the handle to use now.

        A space whose storage is open (a write or read failed transiently) is
        probed in place: a fresh connection that takes and drops the write lock.
        A space that never opened is reopened. Failure pushes ``retry_at`` out
        (backoff); damage found on the way marks it unhealthy for good.
        """
        sid = space.id
        with self._id_lock(sid):
            current = self._loaded.get(sid)
            if current is not space or space.closed:
                return current if current is not None else space
            if not space.degraded or time.monotonic() < space.retry_at:
                return space
            if space.store is not None:
                try:
                    space.store.probe()
                except (sqlite3.Error, OSError, StorageError) as exc:
                    if is_transient(exc):
                        space.mark_degraded(f"still unavailable: {exc}")
                    else:
                        space.mark_unhealthy(f"storage damaged: {exc}")
                    return space
                space.mark_recovered()
                return space
            with self._lock:
                self._loaded.pop(sid, None)
            space.close("reopening after a transient storage error")
            # Over the budget the reopen still goes ahead (it may succeed, or degrade again).
            with self._room_for(sid, required=False):
                fresh = self._open_space(sid)
                if fresh.degraded:
                    fresh.failures = space.failures + 1
                    fresh.retry_at = time.monotonic() + fresh.retry_delay()
                else:
                    log.info("space healthy again after a transient storage error",
                             extra={"memory_space": sid})
                with self._lock:
                    self._loaded[sid] = fresh
            for hook in self.on_open:
                hook(fresh)
            return fresh

    def heal_due(self) -> builtins.list[str]:
        """Heal every degraded loaded space whose retry time has come; returns the ids now healthy."""
        now = time.monotonic()
        healed = []
        for space in self.loaded():
            if space.degraded and now >= space.retry_at and not space.closed and self.heal(space).healthy:
                healed.append(space.id)
        return healed

    def sweep_expired(self) -> int:
        """Sweep every loaded, healthy space of its expired memories (the server's maintenance
        task calls this every ``expiry_sweep_interval_seconds``: one sweeper for the server, no
        thread per space); returns how many memories were removed."""
        removed = 0
        for space in self.loaded():
            if space.closed or not space.healthy:
                continue
            try:
                removed += space.sweep_expired()
            except (EngramError, sqlite3.Error) as exc:  # the next round retries; other spaces go on
                log.warning("expiry sweep failed: %s", exc, extra={"memory_space": space.id})
        return removed

    def unload(self, space_id: str) -> bool:
        """Close one loaded space now (it reloads lazily on next use); False if it was not loaded.

        Unlike :meth:`unload_idle` this does not wait for the space to be idle:
        queued writes finish durably, and a request still holding the old handle
        gets a retriable ``ShuttingDown``.
        """
        sid = MemorySpaceId(space_id)
        with self._id_lock(sid):
            space = self._loaded.get(sid)
            if space is None or space.closed:
                return False
            space.unloading = True
            with self._lock:
                self._loaded.pop(sid, None)
            self._close_unloaded(space, "unloaded")
            return True

    def close(self) -> None:
        if self.backfill is not None:
            self.backfill.close()  # first: it writes through the stores closed below
        for space in self.loaded():
            space.close("server shutting down")
        with self._lock:
            self._loaded.clear()


def _walk(path: Path) -> Iterator[Path]:
    if not path.exists():
        return
    for p in path.rglob("*"):
        if p.is_file():
            yield p


@dataclass(frozen=True)
class OfflineFacts:
    """What the space list shows of a space that is not loaded."""

    memory_count: int
    last_lsn: int
    dimension: int | None


def _read_offline(space_dir: Path) -> OfflineFacts | None:
    """Read a closed space's facts from its file without loading it (no writer thread, no index):
    one read-only connection, opened and closed here. None if it cannot be read now."""
    db = space_dir / "space.db"
    if not db.exists():
        return OfflineFacts(0, 0, None)
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
        try:
            count = int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('last_lsn', 'dimension')"))
        finally:
            conn.close()
        dim = meta.get("dimension")
        return OfflineFacts(count, int(meta.get("last_lsn") or 0), int(dim) if dim else None)
    except (sqlite3.Error, ValueError):
        return None


def _log_rm_error(func: object, path: str, exc_info: object) -> None:
    log.error("could not remove %s while deleting a space: %s", path, exc_info)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_marker(space_dir: Path, data: dict[str, object]) -> None:
    tmp = space_dir / (MARKER + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE), "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, space_dir / MARKER)
    _fsync_dir(space_dir)
    _fsync_dir(space_dir.parent)
