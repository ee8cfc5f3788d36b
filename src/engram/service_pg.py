"""``PostgresService``: the service of a server whose spaces live in PostgreSQL (SPEC §13).

The same operations as :class:`EngramService`, so REST and gRPC are unaware of the backend; the
registry is the database's space directory (``spaces.pg_registry``), spaces are
``core.postgres.space.PostgresSpace`` handles, and stream events come from the events table
through this server's feed (``core.postgres.feed``), so any number of servers on one database
serve the same spaces.

Built here: spaces (create, list, get, delete), remember / experience / batch / get / list /
PUT / PATCH / forget / delete by filter, a per-space embedder and re-embedding
(core/postgres/reembed.py), recall (cognition/pg_recall.py: vector, text, context
cues, spreading and hybrid modes, cognitive and similarity rank, reinforcement), associate and
associations, SSE and gRPC streams (resumable), consolidation (on demand, streamed as a dream,
and on a schedule), beliefs, recognize, reminisce, complete and introspect (cognition/pg_api.py);
quotas (``max_memories``, ``max_space_bytes``) are checked inside each write's transaction
(``core.postgres.store.WritePolicy``), not by the base service's in-process reservations, so
they hold across servers. Backup and restore write and read the SQLite backup's own file
(core/postgres/backup.py), so a backup moves a space between backends. What is not built answers
``NotBuiltYet`` (501) naming the backend: never a 500.

Every database call runs in a worker thread of the service's own executors (:class:`DbExecutors`),
never on the event loop; the exception is :meth:`subscribe`, which transports call synchronously
when a stream opens (two primary-key reads). A database that cannot be reached mid-request is
``StorageUnavailable`` (503, retriable), not a 500.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, cast

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .auth.keys import KeyStore, Principal
from .auth.pg_keys import PgKeyStore
from .cognition import pg_recall
from .cognition.api import SpaceCognition
from .cognition.pg_api import PgCognition
from .cognition.scheduler import Scheduler
from .core.embedded import known_dimension
from .core.events import Subscription
from .core.models import (
    MAX_BATCH_ITEMS,
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
    SpaceStats,
    StoredItem,
    StoreReceipt,
    UpdateReceipt,
)
from .core.postgres import PostgresDatabase, PostgresStore, SchemaTooNew, latest_version, migrate
from .core.postgres import backup as pg_backup
from .core.postgres import reembed as pg_reembed
from .core.postgres.feed import REPLACED, EventFeed
from .core.postgres.live import LiveRelay
from .core.postgres.reinforce import PgReinforcer
from .core.postgres.schema import applied_versions
from .core.postgres.space import PostgresSpace, not_built
from .embedding import EmbedderSpec
from .errors import (
    EngramError,
    InvalidBackup,
    InvalidInput,
    MemorySpaceConflict,
    MemorySpaceExists,
    MemorySpaceNotFound,
    StorageError,
    StorageUnavailable,
)
from .observability import Metrics, Tracing
from .service import BackendRefused, EngramService, disk_status, parse_filter
from .settings import Settings
from .spaces import backup
from .spaces.ids import MemorySpaceId
from .spaces.pg_registry import PgRegistry
from .spaces.registry import SpaceRegistry
from .storage import backup as fmt
from .storage.eventlog import LAST_SEQ
from .types import Clock, system_clock

log = logging.getLogger("engram.service.pg")

T = TypeVar("T")


def consolidation_slots(pool_size: int) -> int:
    """How many on-demand consolidation runs one server lets hold a pooled connection at once:
    half the pool (at least one), so reads and writes always keep the other half."""
    return max(1, pool_size // 2)


def write_leaders(pool_size: int) -> int:
    """How many group commits (spaces) of one server may hold a pooled connection at once: half
    the pool (at least one), so a write burst over many spaces leaves the other half to reads."""
    return max(1, pool_size // 2)


class DbExecutors:
    """The worker threads a PostgreSQL server runs its database calls in (not asyncio's default
    executor: min(32, cores + 4) threads, 6 on two cores, which bounded a group commit to about as
    many writes whatever the number of clients).

    * ``reads`` (``engram-pg-db-*``), ``postgres_pool_size`` threads: every call but the grouped
      writes. Each holds at most one pooled connection for its whole length, so a burst of reads
      queues here, without a timeout, rather than on the pool (whose wait times out after 10 s);
      as many threads as connections, so the on-demand consolidation runs (half the pool at
      most, ``consolidation_slots``) always leave threads to the other reads.
    * ``writes`` (``engram-pg-write-*``), ``postgres_group_max + write_leaders(pool)`` threads:
      remember, batches, PUT/PATCH, forget, delete by filter, associate. A writer waiting in its
      space's lane holds a thread but no connection (core/postgres/group.py), so one hot space can
      queue a whole group (``postgres_group_max`` writes) while the previous group commits, and
      each committing leader has its thread; the groups committing at once are bounded by
      ``write_leaders`` (half the pool), so reads keep the rest of the connections.

    Calls past either bound queue in that executor (FIFO), as they queued in the default
    executor before; nothing is refused for it. Reads and committing groups together may ask
    for up to 1.5x the pool at once (as the background work, reinforcement, re-embedding, the
    schedule, also takes connections): the excess waits on the pool for about one transaction,
    within its 10 s timeout. :meth:`shutdown` (the service's ``close``) waits
    for the calls in flight and cancels the queued ones."""

    def __init__(self, pool_size: int, group_max: int) -> None:
        self.read_threads = max(1, pool_size)
        self.write_threads = max(1, group_max) + write_leaders(pool_size)
        self.reads = ThreadPoolExecutor(self.read_threads, thread_name_prefix="engram-pg-db")
        self.writes = ThreadPoolExecutor(self.write_threads, thread_name_prefix="engram-pg-write")

    async def run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        """``fn`` in ``executor``, with the caller's context (as ``asyncio.to_thread``: tracing)."""
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(ctx.run, fn))

    def shutdown(self) -> None:
        for executor in (self.writes, self.reads):
            executor.shutdown(wait=True, cancel_futures=True)


def redacted(dsn: str) -> str:
    """``dsn`` without its password (for messages and logs)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<a DSN that does not parse>"
    if "password" in parts:
        parts["password"] = "***"
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


def _hide(text: str, dsn: str) -> str:
    try:
        secret = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return text
    return text.replace(str(secret), "***") if secret else text


def open_database(settings: Settings, clock: Clock = system_clock) -> PostgresDatabase:
    """The pool of this server, after checking the schema (migrating it when this role may)."""
    dsn = settings.postgres_dsn
    if not dsn:
        raise BackendRefused('backend = "postgres" needs postgres_dsn (the database to serve spaces '
                             "from): set ENGRAM_POSTGRES_DSN, or postgres_dsn in the config file, e.g. "
                             "postgresql://engram_app@db.example:5432/engram")
    try:
        # One plain connection first: its error says why (refused, bad password, no such
        # database), where the pool would only say that it timed out.
        psycopg.connect(dsn, connect_timeout=10).close()
        db = PostgresDatabase(dsn, min_size=1, max_size=settings.postgres_pool_size, timeout=10.0)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise BackendRefused(f"cannot connect to PostgreSQL at {redacted(dsn)}: "
                             f"{' '.join(_hide(str(exc), dsn).split()).rstrip('.?') or type(exc).__name__}. "
                             "Check that the database "
                             "is running and reachable, and the user, password and database name.") from None
    try:
        with db.pool.connection() as conn:
            have = applied_versions(conn)
            if max(have, default=0) > latest_version():
                raise SchemaTooNew(f"the database has Engram schema version {max(have)}; this Engram "
                                   f"knows up to {latest_version()}: upgrade Engram before starting it "
                                   "on this database")
            if max(have, default=0) < latest_version():
                try:
                    migrate(conn)
                except psycopg.errors.InsufficientPrivilege:
                    raise BackendRefused(
                        f"the database schema is at version {max(have, default=0)} and this server needs "
                        f"{latest_version()}, and the role it connects as may not migrate it: run the "
                        "migrations as the schema owner (engram.core.postgres.migrate), then start again"
                    ) from None
    except SchemaTooNew as exc:
        db.close()
        raise BackendRefused(str(exc)) from None
    except BackendRefused:
        db.close()
        raise
    except psycopg.Error as exc:
        db.close()
        raise BackendRefused(f"PostgreSQL at {redacted(dsn)} refused the schema check: "
                             f"{_hide(str(exc), dsn)}") from None
    return db


def _translate(exc: BaseException) -> NoReturn:
    """A database failure as the error envelope: unreachable is 503 (retry), anything else 500."""
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        raise StorageUnavailable(f"PostgreSQL is unreachable or overloaded: {type(exc).__name__}",
                                 suggestion="Retry shortly; check the database if it persists.") from exc
    raise StorageError(f"PostgreSQL failed: {type(exc).__name__}") from exc


def _exists(sid: str) -> MemorySpaceExists:
    return MemorySpaceExists(f"memory space {sid!r} already exists; restore under a new id or pass "
                             "replace=true", details={"memory_space_id": sid})


def sqlite3_meta(db_path: Path, key: str) -> str | None:
    """One meta value of a space database file (the snapshot's creation time for its manifest)."""
    return pg_backup.read_meta(db_path).get(key)


class PostgresService(EngramService):
    def __init__(self, settings: Settings, *, clock: Clock = system_clock, metrics: Metrics | None = None,
                 tracing: Tracing | None = None) -> None:
        self.db = open_database(settings, clock)
        self._closing = threading.Event()
        self._run_slots: asyncio.Semaphore | None = None  # see _runs
        self.scheduler = Scheduler("postgres", settings.consolidation_interval_seconds,
                                   self._scheduled_consolidations)
        try:
            # Exact vector scans: see docs/scale-out.md (HNSW on this machine's pgvector build).
            self.pg = PostgresStore(self.db, vector_index=False, clock=clock,
                                    group_max=settings.postgres_group_max,
                                    group_leaders=write_leaders(settings.postgres_pool_size))
            self.executors = DbExecutors(settings.postgres_pool_size, settings.postgres_group_max)
            # recalled/activation to the other servers' streams (core/postgres/live.py)
            self.relay = LiveRelay(self.db)
            super().__init__(settings, clock=clock, metrics=metrics, tracing=tracing)
            self.pg.groups.on_commit = self._grouped
            self.feed = EventFeed(settings.postgres_dsn, live=True)
            # Recall's reinforcement: one coalesced background UPDATE per space (core/postgres/reinforce.py).
            self.reinforcer = PgReinforcer(self.pg, settings.reinforce_linger_ms / 1000.0)
            # Re-embeddings started through any server (core/postgres/reembed.py).
            self.reembedder = pg_reembed.ReembedWorker(self.pg, self.embedders, settings.embedding_batch_size,
                                                       closing=self._closing)
            self.scheduler.start()
        except BaseException:
            self._closing.set()  # the re-embedding worker, if it started
            self.scheduler.stop()
            if getattr(self, "auth", None) is not None:
                self.auth.close()  # the key poller
            if getattr(self, "executors", None) is not None:
                self.executors.shutdown()
            self.db.close()
            raise

    def _grouped(self, ops: int) -> None:
        """A group commit of ``ops`` writes committed (core/postgres/group.py): the metrics."""
        self.metrics.pg_write_groups.inc()
        self.metrics.pg_grouped_writes.inc(ops)

    def _open_keys(self) -> KeyStore:
        """Keys in ``engram.api_keys``, shared by every server on the database (auth.pg_keys)."""
        return PgKeyStore(Path(self.settings.data_dir), self.db.pool.connection)

    def _open_registry(self) -> SpaceRegistry:
        root = Path(self.settings.data_dir)
        if root.is_dir():  # snapshots and uploads a crash left behind (this server's own data_dir)
            backup.recover(root, "")
        self.spaces = PgRegistry(self.settings, self.pg, self.clock, embedders=self.embedders,
                                 descriptors=self.descriptors, relay=self.relay)
        # The base service calls the registry methods PgRegistry shares with SpaceRegistry
        # (create, describe, list, delete, exists, known_ids, loaded, housekeeping) only.
        return cast(SpaceRegistry, self.spaces)

    async def _db(self, fn: Callable[[], T], executor: ThreadPoolExecutor | None = None) -> T:
        """``fn`` (blocking database work) in a worker thread (the read threads unless
        ``executor`` is given); database failures translated."""
        try:
            return await self.executors.run(executor or self.executors.reads, fn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            _translate(exc)

    async def _write(self, fn: Callable[[], T]) -> T:
        """``fn``, a write that goes through its space's group commit, in a write thread (see
        DbExecutors: it waits for its group there holding no connection)."""
        return await self._db(fn, self.executors.writes)

    def space(self, space_id: str) -> PostgresSpace:  # type: ignore[override]
        return self.spaces.get(space_id)

    async def _pg_space(self, space_id: str) -> PostgresSpace:
        return await self._db(lambda: self.spaces.get(space_id))

    async def _space(self, space_id: str) -> Any:
        return await self._pg_space(space_id)

    # -- spaces ------------------------------------------------------------------------------------
    async def create_space(self, space_id: str, dimension: int | None = None,
                           embedder: EmbedderChoice | None = None, *, actor: Principal | None = None,
                           peer: str = "-", default_ttl_seconds: float | None = None) -> Any:
        try:
            return await super().create_space(space_id, dimension, embedder, actor=actor, peer=peer,
                                              default_ttl_seconds=default_ttl_seconds)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            _translate(exc)

    # -- backup and restore (core/postgres/backup.py: the SQLite backup's file format) -------------
    @property
    def _work_root(self) -> Path:
        """Where snapshots and uploads wait on disk (the server's data_dir; nothing else lives there)."""
        root = Path(self.settings.data_dir)
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _embedder_record(self) -> dict[str, Any] | None:
        return self.embedders.default_spec().to_dict() if self.embedders is not None else None

    async def backup_space(self, space_id: str) -> backup.SpaceBackup:
        """A consistent snapshot (one REPEATABLE READ transaction) as a SQLite space database on disk,
        with the manifest a SQLite server writes: the file restores on either backend."""
        sid = MemorySpaceId(space_id)

        def take() -> backup.SpaceBackup:
            fd, name = tempfile.mkstemp(prefix=backup.SNAPSHOT_PREFIX, suffix=".db", dir=self._work_root)
            os.close(fd)
            snapshot = Path(name)
            snapshot.unlink()  # pg_backup.snapshot makes the database file itself
            try:
                try:
                    found = pg_backup.snapshot(self.db, sid, snapshot, self._embedder_record())
                except LookupError:
                    raise MemorySpaceNotFound(f"memory space {sid!r} does not exist",
                                              details={"memory_space_id": sid}) from None
                created = sqlite3_meta(snapshot, "created_at")
                manifest = backup.manifest_of(sid, snapshot, found, float(created) if created else None,
                                              self._embedder_record())
            except BaseException:
                snapshot.unlink(missing_ok=True)
                raise
            log.info("backup taken", extra={"memory_space": sid, "last_lsn": found["last_lsn"],
                                            "bytes": manifest["database"]["bytes"]})
            return backup.SpaceBackup(sid, snapshot, manifest)

        return await self._db(take)

    def new_upload(self) -> Path:
        return backup.upload_in(self._work_root)

    def check_restore(self, space_id: str, replace: bool) -> None:
        """The 409 before the upload (one primary-key read); the restore's transaction checks again."""
        sid = MemorySpaceId(space_id)
        try:
            exists = self.pg.space(sid) is not None
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            _translate(exc)
        if exists and not replace:
            raise _exists(sid)

    async def restore_space(self, space_id: str, upload: Path, *, replace: bool = False,
                            actor: Principal | None = None, peer: str = "-") -> backup.RestoreReceipt:
        """Check the upload completely (storage.backup.unpack), then write it in one transaction."""
        sid = MemorySpaceId(space_id)

        def restore() -> backup.RestoreReceipt:
            staging = Path(tempfile.mkdtemp(prefix=backup.STAGING_PREFIX, dir=self._work_root))
            try:
                db_path = staging / fmt.DB_NAME
                manifest = fmt.unpack(upload, db_path)
                own = self._check_restorable_here(pg_backup.read_meta(db_path))
                try:
                    replaced = pg_backup.restore(self.pg, sid, db_path, replace=replace, embedder=own)
                except FileExistsError:
                    raise _exists(sid) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("backup restored", extra={"memory_space": sid, "replaced": replaced,
                                               "last_lsn": manifest["last_lsn"]})
            return backup.receipt_of(sid, manifest, replaced)

        receipt = await self._db(restore)
        if receipt.replaced:
            # This server's handle of the old space: its streams end as on SQLite ("replaced").
            with self.spaces._lock:
                old = self.spaces._handles.pop(sid, None)
            if old is not None:
                old.close(REPLACED)
        self._audit("space_restored", actor, peer, sid)
        return receipt

    def _check_restorable_here(self, meta: dict[str, str]) -> str | None:
        """Returns the restored space's own embedder record (``spaces.embedder``): the backup's,
        when it chose one at creation or embeds with another model than this server's default;
        None: this server's default. (Its ``default_ttl_seconds`` is copied with the other meta
        keys; ``storage.backup.unpack`` has checked it.)"""
        raw = meta.get(pg_backup.EMBEDDER_KEY)
        if not raw:
            return None
        try:
            rec = json.loads(raw)
            provider, model, explicit = str(rec["provider"]), str(rec["model"]), bool(rec.get("explicit"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidBackup("the backup's embedder record is not JSON with a provider and a "
                                "model") from None
        spec = self.embedders.default_spec()
        if not explicit and (provider == "none" or (provider, model) == (spec.provider, spec.model)):
            return None
        EmbedderSpec.resolve(provider, model, self.settings)  # a provider or model this Engram knows
        return json.dumps({"provider": provider, "model": model, "explicit": True})

    async def reembed(self, space_id: str, embedder: EmbedderChoice | None = None) -> ReembedStatus:
        """Start (or resume) re-embedding a space (core/postgres/reembed.py): any server's worker
        does the work, one at a time per space; the switch to the new model is atomic."""
        choice = embedder or EmbedderChoice(provider=self.settings.embedder)
        spec = EmbedderSpec.resolve(choice.provider, choice.model, self.settings)
        if spec.provider == "none":
            raise InvalidInput("re-embedding needs an embedder (provider local, openai or hash)",
                               example='{"provider": "local", "model": "all-MiniLM-L6-v2"}')
        space = await self._pg_space(space_id)

        def begin() -> ReembedStatus:
            self.embedders.get(spec)  # fails now (EmbedderUnavailable) if it cannot be built
            try:
                pg_reembed.start(self.pg, space.id, spec)
            except LookupError:
                raise space._gone() from None
            return self._reembed_status(space)

        status = await self._db(begin)
        self.reembedder.wake()
        return status

    async def reembed_status(self, space_id: str) -> ReembedStatus:
        space = await self._pg_space(space_id)
        return await self._db(lambda: self._reembed_status(space))

    def _reembed_status(self, space: PostgresSpace) -> ReembedStatus:
        try:
            found = pg_reembed.progress(self.pg, space.id)
        except LookupError:
            raise space._gone() from None
        info = self.spaces.describe(space.id).embedder
        goal = None
        if found.target is not None:
            goal = EmbedderInfo(provider=found.target.provider, model=found.target.model,
                                dimension=known_dimension(found.target, self.settings.openai_dimension))
        return ReembedStatus(memory_space_id=space.id, state="running" if goal is not None else "idle",
                             done=found.done, total=found.total, embedder=info, target=goal)

    # -- memories ----------------------------------------------------------------------------------
    async def remember(self, space_id: str, item: MemoryInput) -> StoreReceipt:
        space = await self._pg_space(space_id)
        return await self._write(lambda: space.remember(item))

    async def remember_parts(self, space_id: str, item: MemoryInput) -> ReceiptParts | StoreReceipt:
        """The full receipt: the rows come back as models here (see ``remember_batch``)."""
        return await self.remember(space_id, item)

    async def experience(self, space_id: str, item: EpisodeInput) -> StoreReceipt:
        return await self.remember(space_id, item)

    async def remember_batch(self, space_id: str, items: Sequence[MemoryInput | EngramError], *,
                             receipts: bool | Literal["parts"] = True) -> BatchOutcome:
        """One transaction for the valid items (SPEC §11 "Batch"); an invalid item fails alone.
        ``receipts="parts"`` gives full receipts here (the rows come back as models)."""
        if not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH_ITEMS} memories, got {len(items)}",
                               suggestion=f"Split the memories into batches of at most {MAX_BATCH_ITEMS}.")
        checked: list[MemoryInput | EngramError] = []
        for item in items:
            if isinstance(item, MemoryInput) and item.memory_space_id not in (None, "", space_id):
                item = MemorySpaceConflict(
                    f"this item names memory space {item.memory_space_id!r}; the batch goes to {space_id!r}",
                    suggestion="Omit memory_space_id from batch items, or send the batch's own space.")
            checked.append(item)
        space = await self._pg_space(space_id)
        done = await self._write(lambda: space.remember_many(checked))
        results: list[Any] = [StoredItem(r.memory_id, r.lsn) if not receipts and isinstance(r, StoreReceipt)
                              else r for r in done]
        stored = sum(1 for r in results if isinstance(r, StoreReceipt | StoredItem))
        return BatchOutcome(results=results, stored=stored, durability="fsync", memory_space_id=space_id)

    async def update_memory(self, space_id: str, memory_id: str, *, put: MemoryInput | None = None,
                            patch: MemoryPatch | None = None) -> UpdateReceipt:
        space = await self._pg_space(space_id)
        return await self._write(lambda: space.update(memory_id, put=put, patch=patch))

    async def recall(self, space_id: str, cue: Cue) -> RecallResult:
        with self.tracing.engine_span("engram.recall", space_id):
            space = await self._pg_space(space_id)
            return await self._db(lambda: pg_recall.recall(space, cue, self.reinforcer))

    async def get_memory(self, space_id: str, memory_id: str, include_embedding: bool = True) -> Memory:
        space = await self._pg_space(space_id)
        return await self._db(lambda: space.get(memory_id, include_embedding))

    async def list_memories(self, space_id: str, cursor: str | None = None, limit: int | None = None,
                            memory_type: str | None = None, include_suppressed: bool = False,
                            filter: dict[str, Any] | str | None = None) -> MemoryPage:
        n = self.page_size(limit, 50)
        node = parse_filter(filter)
        space = await self._pg_space(space_id)
        return await self._db(lambda: space.list(cursor, n, memory_type, include_suppressed, node))

    async def delete_memories(self, space_id: str, request: DeleteByFilter) -> DeleteReceipt:
        node = parse_filter(request.filter)
        assert node is not None  # DeleteByFilter refuses an empty filter
        space = await self._pg_space(space_id)
        return await self._write(lambda: space.delete_by_filter(node, request.mode))

    async def forget(self, space_id: str, memory_id: str,
                     mode: ForgetMode = ForgetMode.suppress) -> ForgetReceipt:
        space = await self._pg_space(space_id)
        return await self._write(lambda: space.forget(memory_id, mode))

    async def associate(self, space_id: str, item: AssociateInput) -> Association:
        space = await self._pg_space(space_id)
        return await self._write(lambda: space.associate(item.source_id, item.target_id, item.strength,
                                                         item.bidirectional))

    async def associations(self, space_id: str, memory_ids: list[str], limit: int) -> list[Association]:
        space = await self._pg_space(space_id)
        return await self._db(lambda: space.associations(memory_ids, limit))

    # -- events --------------------------------------------------------------------------------------
    def subscribe(self, space_id: str, types: Iterable[str] | None = None,
                  depth: int | None = None, client: str = "local",
                  since: tuple[int, int] | None = None) -> Subscription:
        """A subscription fed from the events table (every server's writes, in LSN order)."""
        if self.shutting_down:
            from .errors import ShuttingDown

            raise ShuttingDown("the server is shutting down and accepts no new streams")
        try:
            space = self.spaces.get(space_id)
            source = space.replay_source() if since is not None else None
            if source is not None and since is not None:
                source.check(since)
            release = self.streams.admit(space_id, client)
            try:
                # attach: under the lock idle handles are dropped under (spaces/pg_registry.py)
                space, sub = self.spaces.attach(
                    space, lambda held: held.events.subscribe(types, depth, on_close=release))
                self.feed.watch(space, (space.last_lsn, LAST_SEQ))
            except BaseException:
                release()
                raise
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            _translate(exc)
        if source is not None and since is not None:
            sub.resume_from(since, source)
        return sub

    # -- consolidation and beliefs (cognition/pg_api.py) ------------------------------------------
    def cognition(self, space_id: str) -> PgCognition:  # type: ignore[override]
        return PgCognition(self.spaces.get(space_id), self.settings, self._closing)

    async def _pg_cognition(self, space_id: str) -> PgCognition:
        return PgCognition(await self._pg_space(space_id), self.settings, self._closing)

    @property
    def _runs(self) -> asyncio.Semaphore:
        """The on-demand consolidation runs (and dreams) this server lets hold a connection at
        once: half its pool. A run holds a pooled connection (and a worker thread) for its whole
        length, waiting for the space's advisory lock included; unbounded, many simultaneous runs
        took every connection and every other request waited 10 s for one, then got a 503. Runs
        past the bound wait here, on the event loop, holding neither. Made on first use, so it
        belongs to the loop that serves the requests."""
        if self._run_slots is None:
            self._run_slots = asyncio.Semaphore(consolidation_slots(self.settings.postgres_pool_size))
        return self._run_slots

    async def consolidate(self, space_id: str, item: ConsolidateInput) -> ConsolidationReport:
        with self.tracing.engine_span("engram.consolidate", space_id):
            cog = await self._pg_cognition(space_id)
            async with self._runs:
                return await self._db(lambda: cog.consolidate(item))

    async def dream(self, space_id: str, item: ConsolidateInput) -> AsyncIterator[DreamStep]:
        """One run, step by step: each step advances in a worker thread. The run is one
        transaction; a client that goes away closes the run, which rolls back (nothing written)."""
        steps = (await self._pg_cognition(space_id)).dream(item)
        sentinel = DreamStep(kind="end", progress=1.0, message="")
        # A cancelled stream leaves its current step running in its worker thread (a thread
        # cannot be interrupted; it may be waiting for the space's consolidation lock). Closing
        # the generator meanwhile would fail ("generator already executing") and leave the run's
        # transaction, its lock and its connection open until garbage collection: so the close
        # waits for that step (``gate``), in a thread of its own, never on the event loop.
        gate = threading.Lock()
        finished = False

        def advance() -> DreamStep:
            with gate:
                return next(steps, sentinel)

        def finish() -> None:
            with gate:
                steps.close()  # GeneratorExit in the run: its transaction rolls back

        await self._runs.acquire()  # released when the run's transaction is over (finish)
        released = False

        def finish_and_release() -> None:
            try:
                finish()
            finally:
                loop.call_soon_threadsafe(self._runs.release)

        loop = asyncio.get_running_loop()
        try:
            while True:
                step = await self._db(advance)
                if step is sentinel:
                    finished = True
                    return
                yield step
        finally:
            if not finished:
                released = True
                threading.Thread(target=finish_and_release, name=f"engram-dream-close-{space_id}",
                                 daemon=True).start()
            if not released:
                self._runs.release()

    async def list_beliefs(self, space_id: str, cursor: str | None = None,
                           limit: int | None = None) -> BeliefPage:
        n = self.page_size(limit, 50)
        cog = await self._pg_cognition(space_id)
        return await self._db(lambda: cog.list_beliefs(cursor, n))

    async def get_belief(self, space_id: str, belief_id: str) -> Belief:
        cog = await self._pg_cognition(space_id)
        return await self._db(lambda: cog.get_belief(belief_id))

    async def recognize(self, space_id: str, item: RecognizeInput) -> Recognition:
        cog = await self._pg_cognition(space_id)
        return await self._db(lambda: cog.recognize(item))

    async def reminisce(self, space_id: str, query: ReminisceQuery) -> Reminiscence:
        cog = await self._pg_cognition(space_id)
        return await self._db(lambda: cog.reminisce(query))

    async def complete(self, space_id: str, item: CompleteInput) -> Completion:
        cog = await self._pg_cognition(space_id)
        return await self._db(lambda: cog.complete(item))

    async def introspect(self, space_id: str) -> SpaceStats:
        cog = await self._pg_cognition(space_id)
        return await self._db(cog.introspect)

    def _scheduled_consolidations(self) -> None:
        """The schedule's tick: every space of the database, each only if its episodes changed
        since its last run and no run of it is in progress (on any server: the advisory try-lock),
        so several servers on one database consolidate each change once between them."""
        for sid in self.pg.list_spaces():
            if self._closing.is_set():
                return
            try:
                # keep=False: the schedule's visit keeps no space's handle from being dropped when idle
                space = self.spaces.get(sid, keep=False)
                PgCognition(space, self.settings, self._closing).scheduled_consolidation()
            except MemorySpaceNotFound:
                continue  # deleted meanwhile
            except (psycopg.Error, psycopg_pool.PoolTimeout):
                if self._closing.is_set():
                    return
                log.exception("scheduled consolidation failed", extra={"memory_space": sid})

    # -- not built on PostgreSQL yet (501, naming the backend) -----------------------------------------
    async def _read(self, space_id: str, fn: Callable[[Any], T], *, long: bool = False) -> T:
        raise not_built("this operation")

    async def _cog(self, space_id: str, fn: Callable[[SpaceCognition], T], *, long: bool = False) -> T:
        await self._pg_space(space_id)  # an unknown space is still a 404
        raise not_built("this cognitive operation")

    # -- health and lifecycle ------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        def collect() -> dict[str, Any]:
            try:
                total = len(self.pg.list_spaces())
                reachable, error = True, None
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                total, reachable, error = 0, False, type(exc).__name__
            disk = disk_status(self.settings.data_dir, self.settings.disk_min_free_bytes)
            if not reachable:
                log.warning("health: PostgreSQL at %s is unreachable (%s)", redacted(self.db.dsn), error)
            return {"status": "ok" if reachable and not disk["full"] else "degraded", "backend": "postgres",
                    "database": {"reachable": reachable, "error": error, "dsn": redacted(self.db.dsn)},
                    "spaces_total": total, "spaces_loaded": self.spaces.held(),  # handles held
                    "spaces": [], "degraded_spaces": [],
                    "unhealthy_space_ids": [], "disk": disk, "open_files": self.spaces.budget.describe(),
                    "shutting_down": self.shutting_down}

        return await asyncio.to_thread(collect)

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        self._closing.set()
        self.scheduler.stop(timeout=0)
        self.spaces.close()

    def close(self) -> None:
        self.shutting_down = True
        self._closing.set()
        self.scheduler.stop(timeout=30)  # a run in progress sees _closing and writes nothing more
        self.executors.shutdown()  # the calls in flight finish while all they use is still open
        self.reinforcer.close()  # what recalls left pending, while the pool is still open
        self.reembedder.close()  # a step in flight commits or rolls back before the pool goes
        self.feed.close()
        self.spaces.close()
        self.auth.close()  # stops the key poller before its pool goes
        self.db.close()
        self.embedders.close()
