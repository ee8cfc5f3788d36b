"""``MemorySpace``: everything one space owns, and its write path.

A space is its directory (``<data_root>/<space_id>/``), its SQLite store, its
in-memory vectors and its event bus. Nothing here can name another space: a
space only ever reads its own database and its own vectors, which is what
makes isolation structural rather than a filter.

Writes are validated on the caller's thread, turned into an op for the store's
group-commit writer, and acknowledged after the commit (see
``storage.sqlite_store``). The op's post-commit effect adds the vector and
publishes the event, so a memory is recallable the moment ``remember`` returns.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np

from ..errors import (
    EngramError,
    MemoryExists,
    MemoryNotFound,
    MemorySpaceNotFound,
    ShuttingDown,
    SpaceUnhealthy,
    StorageError,
    StorageUnavailable,
)
from ..index.ann import INDEX_FILE, SIDECAR_FILE, AnnIndex
from ..index.changes import ChangeLog
from ..index.density import LocalDensity
from ..index.vector import VectorSet, stored_row16, unit_rows16
from ..settings import Settings
from ..storage import eventlog
from ..storage.eventlog import record_event
from ..storage.sqlite_store import GroupedEffect, SnapshotStore, SpaceStore, dumps, is_transient
from ..types import Clock, system_clock
from . import filters
from .backfill import EmbeddingBackfill
from .decay import current_activation
from .embedded import NO_EMBEDDER, TextEmbedding, embed_text, known_dimension
from .events import EventBus
from .expiry import DEFAULT_TTL_KEY, LIVE_SQL, expiry_of
from .models import (
    ConsolidationState,
    DeleteReceipt,
    EpisodeInput,
    ForgetMode,
    ForgetReceipt,
    Memory,
    MemoryInput,
    MemoryPage,
    MemoryPatch,
    MemoryType,
    ReceiptParts,
    StoredItem,
    StoreReceipt,
    UpdateReceipt,
    from_epoch,
    to_epoch,
)
from .reinforce import Reinforcer
from .update import apply_updated, prepare_update

if TYPE_CHECKING:
    from ..embedding import Embedders

log = logging.getLogger("engram.space")

MEMORY_COLUMNS = (
    "rowid, id, kind, content, embedding, confidence, created_at, last_access, access_count, activation, "
    "decay_rate, tags, memory_type, metadata, suppressed, lsn, ep_when, what, where_location, who, why, how, "
    "emotional_valence, importance, consolidation_state, expires_at"
)


A = TypeVar("A")


def _unit_rows(raw: np.ndarray) -> np.ndarray:
    """Each row of a float32 matrix scaled to unit length (float32); a row whose norm is 0 or not
    finite is kept as it is. The norm is taken in float64 (float32 squares overflow above
    ~1.8e19), as ``MemorySpace._prepare_embedding`` does for one vector."""
    wide = raw.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    ok = (norms > 0.0) & np.isfinite(norms)
    if ok.all():
        units: np.ndarray = (wide / norms[:, None]).astype(np.float32)
        return units
    out = raw.copy()
    out[ok] = (wide[ok] / norms[ok, None]).astype(np.float32)
    return out


class IdPool:
    """Fresh memory ids, each exactly what ``uuid.uuid4().hex`` gives, drawn from ``os.urandom``
    256 at a time (one per space).

    ``os.urandom`` releases the GIL; asked once per memory it handed the GIL to the writer,
    completer and index threads at every write and queued to get it back (measured: ~11 us of
    wall time per unary Remember on the event loop, the gRPC server's busiest thread; in a
    batch of 256, one release per item). The bytes are the same random bytes, taken in bulk.
    """

    CHUNK = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw = b""
        self._at = 0
        self._pid = 0

    def take(self, count: int) -> builtins.list[str]:
        need = 16 * count
        with self._lock:
            if len(self._raw) - self._at < need or self._pid != os.getpid():  # never share after fork
                self._raw, self._at, self._pid = os.urandom(max(need, 16 * self.CHUNK)), 0, os.getpid()
            raw = self._raw[self._at:self._at + need]
            self._at += need
        if count == 1:  # a single remember: the same hex, without building a UUID (Round 8)
            b = bytearray(raw)
            b[6] = (b[6] & 0x0F) | 0x40  # what UUID(..., version=4) sets: the version ...
            b[8] = (b[8] & 0x3F) | 0x80  # ... and the RFC 4122 variant
            return [b.hex()]
        return [uuid.UUID(bytes=raw[i:i + 16], version=4).hex for i in range(0, need, 16)]


def _stored_item(done: tuple[dict[str, Any], int]) -> StoredItem:
    """A batch item's result when no full receipt is wanted: its id and LSN."""
    return StoredItem(done[0]["memory_id"], done[1])


_FSYNC_REASON = "durable on disk (fsync) before acknowledgement"
_BUFFERED_REASON = "buffered: acknowledged before fsync, may be lost on power failure"


_Done = tuple[Any, int]  # an op's result and its LSN, as the store settles it


def _full_receipt(parts: Callable[[_Done], ReceiptParts]) -> Callable[[_Done], StoreReceipt]:
    return lambda done: parts(done).receipt()


class MemorySpace(TextEmbedding):
    def __init__(
        self, space_id: str, space_dir: Path, settings: Settings, clock: Clock = system_clock, *,
        embedders: Embedders | None = None, backfill: EmbeddingBackfill | None = None,
        replica: bool = False,
    ) -> None:
        self.id = space_id
        # A read worker's copy (engram.readpool): opened read-only, it writes nothing and
        # notes the rows its recalls would reinforce in ``reinforced`` for the owner to apply.
        self.replica = replica
        self.reinforced: builtins.list[int] = []
        # Set on a copy by the read pool for each recall, from the server's own state at that
        # moment: its embedding backlog (a copy keeps no backlog of its own) and the words its
        # text search prunes a query to (core.text.search_words; the server's vocabulary).
        self.given_backlog: int | None = None
        self.given_words: dict[tuple[str, ...], builtins.list[str]] | None = None
        self.instance = uuid.uuid4().hex  # this opening of the space (a reopened space is another)
        self.dir = space_dir
        self.settings = settings
        self.clock = clock
        self.events = EventBus(space_id, depth=settings.subscriber_queue_depth,
                               max_lag_seconds=settings.subscriber_max_lag_seconds)
        self.vectors = VectorSet(float32_max=settings.vector_float32_max, int8_pass=settings.vector_int8_pass)
        self._ids = IdPool()
        self.healthy = True
        self.unhealthy_reason: str | None = None
        # Not healthy for a transient reason (EMFILE, disk full, read-only...): requests get a
        # retriable 503 and the registry probes or reopens the space from ``retry_at`` on, with
        # backoff over ``failures`` (see SpaceRegistry.heal). Damage is not degraded: it stays.
        self.degraded = False
        self.failures = 0
        self.retry_at = 0.0  # time.monotonic() from which the next heal attempt may run
        self.last_used = time.monotonic()
        self.opened_at = time.time()
        self._closed = False
        self.closed_reason: str | None = None
        self._leases = 0
        # The background integrity check's own connection. The check thread closes it and
        # close() interrupts it: both under _check_lock, so close() never interrupts a
        # connection the thread has just closed (sqlite3 raises ProgrammingError for that).
        self._check_conn: sqlite3.Connection | None = None
        self._check_lock = threading.Lock()
        self._check_thread: threading.Thread | None = None
        self.integrity_checked = threading.Event()  # set once the open-time integrity check has a verdict
        self.unloading = False  # set by the registry while it decides to unload (see SpaceRegistry.get)
        self._lock = threading.Lock()
        self.store: SpaceStore | None = None
        self.reinforcer: Reinforcer | None = None
        self.ann: AnnIndex | None = None
        self._attached: dict[type, Any] = {}  # per-space state of higher layers (see attach)
        self.dim: int | None = None
        self.default_ttl: float | None = None  # seconds; memories stored without an expiry get it
        # Embedding (SPEC §9). ``embedder_spec`` is what this space embeds text with
        # (provider "none": vectors come from clients only); ``embedder_explicit`` says
        # it was chosen at creation, so a client vector of another length is an error
        # rather than a reason to fall back to client vectors.
        self.embedders = embedders
        self.backfill = backfill
        self.embedder_spec = NO_EMBEDDER
        self.embedder_explicit = False
        # rowids of live memories awaiting their vector, in rowid order (see core.backfill)
        self._pending: dict[int, int] = {}  # rowid -> when it became pending (see _pend_locked)
        self._pending_seq = 0
        self._pending_cv = threading.Condition()
        self.reembed_target = None  # the embedder a re-embedding in progress switches to
        self.density = LocalDensity()  # each memory's fan (index.density), measured in the background
        self._unmeasured: dict[int, None] = {}  # vector keys whose fan is still to measure
        # One shared post-commit effect for every remember: applied once per run of
        # remembers in a commit batch (see GroupedEffect), not once per write.
        self._stored_effect = GroupedEffect(self._apply_stored)
        self._open()

    # -- opening and recovery ---------------------------------------------------
    def _open(self) -> None:
        """Open storage and rebuild derived state. Damage marks *this* space unhealthy.

        Recovery is SQLite's: opening the WAL database replays every committed
        (fsynced) transaction and discards a torn tail, so what an acknowledged
        write put there is back. ``quick_check`` then proves the file is sane
        before the space serves; any damage found keeps the space unhealthy
        (reads and writes fail with ``SpaceUnhealthy``) and never affects the
        other spaces, which have their own files and threads.
        """
        if self.replica:
            self._open_replica()
            return
        t0 = time.perf_counter()
        try:
            self.store = SpaceStore(self.dir, durable=self.settings.durability == "fsync",
                                    max_batch=self.settings.group_commit_max_batch,
                                    idle_seconds=self.settings.space_thread_idle_seconds,
                                    event_log_max=self.settings.event_log_max_events)
            self.store.on_transient = self._on_transient
            self.reinforcer = Reinforcer(self.store, self.settings.reinforce_linger_ms / 1000.0)
            self.store.before_submit = self.reinforcer.flush
            background_check = self.store.size_bytes() > self.settings.integrity_check_sync_max_bytes
            if not background_check:
                problem = self.store.integrity_problem()
                if problem is not None:
                    raise sqlite3.DatabaseError(f"integrity check failed: {problem}")
            self._read_layout(self.store)
            self.ann = AnnIndex(self.vectors, self.dir, self.settings)
            covered = self._load_vectors(self.ann.load_checkpoint(self.dim, self.store.last_lsn))
            self._bind_embedder()
        except (sqlite3.DatabaseError, StorageError, OSError, ValueError) as exc:
            if is_transient(exc):
                self.mark_degraded(f"storage could not be opened: {exc}")
            else:
                self.mark_unhealthy(f"storage could not be opened: {exc}")
            self.integrity_checked.set()
            if self.store is not None:
                try:
                    self.store.close()
                except (sqlite3.Error, StorageError) as close_exc:
                    log.warning(
                        "closing damaged store failed: %s", close_exc, extra={"memory_space": self.id}
                    )
                self.store = None
            self.ann = None
            return
        self.ann.attach_loaded(covered)
        self.vectors.ann = self.ann
        self.ann.start()
        self._load_pending()
        self._sweep_on_open()
        if background_check:
            # Large files are checked beside serving, so reopening stays fast; loading
            # every embedding above has already read most of the memories table. The
            # check owns its connection so close() can interrupt it and wait for it.
            self._check_conn = self.store.private_reader()
            self._check_thread = threading.Thread(
                target=self._background_check, name=f"engram-check-{self.id}", daemon=True
            )
            self._check_thread.start()
        else:
            self.integrity_checked.set()
        log.info("space opened", extra={"memory_space": self.id, "memories": len(self.vectors),
                                        "seconds": round(time.perf_counter() - t0, 3),
                                        "index_from_checkpoint": self.ann.loaded_from_checkpoint})

    def _read_layout(self, store: SpaceStore) -> None:
        """The space's dimension and default expiry from its metadata, and an empty vector set."""
        dim = store.meta("dimension")
        self.dim = int(dim) if dim else None
        ttl = store.meta(DEFAULT_TTL_KEY)
        self.default_ttl = float(ttl) if ttl else None
        self.vectors = VectorSet(self.dim, self.settings.vector_float32_max, self.settings.vector_int8_pass)

    def _open_replica(self) -> None:
        """Open as a read worker's copy: the database through readers only, the vectors loaded
        from it, and nothing started that writes (no writer, reinforcement, sweep, index
        builder, embedder or background check). Exact search only: it has no ANN index."""
        self.store = SnapshotStore(self.dir)
        self._read_layout(self.store)
        self._load_vectors(None)
        self._bind_embedder()
        self.integrity_checked.set()

    def _sweep_on_open(self) -> None:
        """Queue one expiry batch if memories expired while the space was not loaded (the
        server-wide sweeper does the rest; reads hide expired memories meanwhile)."""
        try:
            if self.has_expired():
                self.sweep_expired(wait=False)
        except (StorageError, sqlite3.Error) as exc:
            log.warning("expiry sweep on open failed: %s", exc, extra={"memory_space": self.id})

    def _rebuild_vectors(self) -> None:
        """Replace the in-memory vectors and index from the database (after a re-embedding).

        Readers hold the old set until they next look at ``self.vectors``: the swap of one
        attribute is atomic, and the old checkpoint (other vectors) is removed first.
        """
        assert self.store is not None
        old_ann = self.ann
        if old_ann is not None:
            old_ann.stop()
        for name in (INDEX_FILE, SIDECAR_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
        vectors = VectorSet(self.dim, self.settings.vector_float32_max, self.settings.vector_int8_pass)
        previous, self.vectors = self.vectors, vectors
        self.density = LocalDensity(self.density.k)  # new vectors, new neighbourhoods
        ann = AnnIndex(vectors, self.dir, self.settings)
        try:
            self._load_vectors(None)
        except BaseException:
            self.vectors = previous
            raise
        ann.attach_loaded(0)
        vectors.ann = ann
        self.ann = ann
        ann.start()
        self._to_measure(vectors.keys().tolist())

    def _load_vectors(self, checkpoint: tuple[np.ndarray, int] | None) -> int:
        """Load live embeddings into ``self.vectors``; returns how many the checkpoint covers.

        Rows the checkpointed graph already covers (key in the graph and LSN at
        or below the checkpoint's) are added first, so they take the sequence
        numbers ``0..covered-1`` and the index's prefix is exactly them.
        """
        assert self.store is not None
        conn = self.store.reader()
        cur = conn.execute(
            "SELECT rowid, lsn, embedding FROM memories "
            "WHERE embedding IS NOT NULL AND suppressed = 0 ORDER BY rowid"
        )
        graph_keys = None if checkpoint is None else np.sort(checkpoint[0])
        ckpt_lsn = 0 if checkpoint is None else checkpoint[1]
        later: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        blobs: list[tuple[int, bytes]] = []  # the stored bytes, for exact rescoring (index.raw)
        covered = 0
        while True:
            rows = cur.fetchmany(2048)  # small chunks keep the transient (blob) memory low
            if not rows:
                break
            keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            lsns = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
            mat = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            if self.dim is None:
                self.dim = mat.shape[1]
                self.vectors.dim = self.dim
            unit = unit_rows16(mat)
            if len(blobs) < self.vectors.raw.capacity:
                blobs.extend((int(r[0]), r[2]) for r in rows)
            if graph_keys is None:
                self.vectors.add_many(keys, unit, lsns)
                continue
            pos = np.minimum(np.searchsorted(graph_keys, keys), max(0, len(graph_keys) - 1))
            in_graph = (graph_keys[pos] == keys) if len(graph_keys) else np.zeros(len(keys), bool)
            ok = in_graph & (lsns <= ckpt_lsn)
            self.vectors.add_many(keys[ok], unit[ok], lsns[ok])
            covered += int(ok.sum())
            if not ok.all():
                later.append((keys[~ok], unit[~ok], lsns[~ok]))
        for keys, unit, lsns in later:
            self.vectors.add_many(keys, unit, lsns)
        self.vectors.raw.put(blobs)  # after the adds: an add drops its key's bytes
        return covered

    def _background_check(self) -> None:
        store, conn = self.store, self._check_conn
        assert store is not None and conn is not None
        try:
            problem = store.integrity_problem(conn)
            if problem is not None:
                self.mark_unhealthy(f"integrity check failed: {problem}")
        except sqlite3.OperationalError:
            pass  # interrupted by close(): no verdict
        finally:
            with self._check_lock:
                conn.close()
                self._check_conn = None
            self._check_finished()
            self.integrity_checked.set()

    def _check_finished(self) -> None:
        """Called by the check thread once its connection is closed, before it ends.

        Does nothing; a test subclass overrides it to hold the thread in exactly the state
        where it is still alive but its connection is gone (tests/unit/test_storage.py).
        """

    def mark_unhealthy(self, reason: str) -> None:
        if self.healthy or self.degraded:
            log.error("space marked unhealthy: %s", reason, extra={"memory_space": self.id})
        self.healthy = False
        self.degraded = False
        self.unhealthy_reason = reason

    def mark_degraded(self, reason: str) -> None:
        """A transient storage failure: serve 503 (retriable) until a heal attempt succeeds."""
        with self._lock:
            if not self.healthy and not self.degraded:
                return  # damage outranks a transient condition
            first = self.healthy
            self.healthy = False
            self.degraded = True
            self.unhealthy_reason = reason
            self.failures += 1
            self.retry_at = time.monotonic() + self.retry_delay()
        if first:
            log.warning("space degraded (transient storage error, will retry): %s", reason,
                        extra={"memory_space": self.id})

    def retry_delay(self) -> float:
        """Backoff before the next heal attempt: 0.25 s doubling per failure, capped by the setting."""
        return float(min(self.settings.storage_retry_max_seconds, 0.25 * 2 ** min(self.failures - 1, 16)))

    def mark_recovered(self) -> None:
        with self._lock:
            if not self.degraded:
                return
            self.healthy = True
            self.degraded = False
            self.unhealthy_reason = None
            self.failures = 0
        log.info("space healthy again after a transient storage error", extra={"memory_space": self.id})

    def _on_transient(self, exc: BaseException) -> None:
        self.mark_degraded(f"transient storage error: {exc}")

    @property
    def health_state(self) -> str:
        """``ok``, ``degraded`` (transient, retried) or ``unhealthy`` (damage)."""
        return "ok" if self.healthy else ("degraded" if self.degraded else "unhealthy")

    @property
    def evictable(self) -> bool:
        """Nothing holds this space open: no lease, subscriber, queued write or pending vector."""
        store = self.store
        return not (self._leases or self.events.subscriber_count or self._pending
                    or (store is not None and store.busy))

    def check_healthy(self) -> SpaceStore:
        if self.degraded:
            wait = max(0.0, self.retry_at - time.monotonic())
            raise StorageUnavailable(
                f"memory space {self.id!r} is temporarily unavailable: {self.unhealthy_reason}",
                details={"memory_space_id": self.id, "retry_after_seconds": round(wait, 2)},
            )
        if not self.healthy or self.store is None:
            raise SpaceUnhealthy(
                f"memory space {self.id!r} is unhealthy: {self.unhealthy_reason}",
                details={"memory_space_id": self.id},
            )
        if self._closed:
            # A handle closed under a caller: deleted spaces are gone; unloaded or
            # shutting-down ones are a retriable condition (the next get reopens).
            if self.closed_reason == "memory space deleted":
                raise MemorySpaceNotFound(f"memory space {self.id!r} was deleted",
                                          details={"memory_space_id": self.id})
            raise ShuttingDown(
                f"memory space {self.id!r} was closed ({self.closed_reason}); retry the request"
            )
        self.last_used = time.monotonic()
        return self.store

    def attach(self, part: Any) -> None:
        """Hold per-space state of a higher layer (e.g. cognition), one object per type.

        The core never looks inside; it only closes what it holds when the space closes.
        """
        self._attached[type(part)] = part

    def attached(self, kind: type[A]) -> A:
        part = self._attached.get(kind)
        if part is None:
            raise LookupError(f"no {kind.__name__} attached to memory space {self.id!r}")
        return cast(A, part)

    @contextmanager
    def lease(self) -> Iterator[MemorySpace]:
        """Hold the space open for a long operation: idle unload skips leased spaces."""
        with self._lock:
            self._leases += 1
        self.last_used = time.monotonic()
        try:
            yield self
        finally:
            with self._lock:
                self._leases -= 1
            self.last_used = time.monotonic()

    @property
    def leases(self) -> int:
        return self._leases

    def guard_read(self, exc: BaseException) -> None:
        """Turn a database error seen by a reader into an unhealthy mark (and re-raise); a
        transient one (EMFILE, I/O error, busy) into a retriable ``StorageUnavailable`` only: the
        space is not degraded for it, since its writer and other readers may well still work."""
        if self.store is not None and is_transient(exc):
            raise self.store.translate(exc, "read", degrade=False) from exc
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            self.mark_unhealthy(f"storage damaged: {exc}")
            raise SpaceUnhealthy(f"memory space {self.id!r} is unhealthy: {exc}") from exc
        raise exc

    # -- store ----------------------------------------------------------------
    def _prepare_embedding(self, embedding: Sequence[float] | np.ndarray | None
                           ) -> tuple[bytes | None, np.ndarray | None]:
        if embedding is None:
            return None, None
        if len(embedding) > self.settings.max_embedding_dim:
            from ..errors import InvalidInput

            raise InvalidInput(
                f"embedding has {len(embedding)} dimensions; "
                f"at most {self.settings.max_embedding_dim} are allowed"
            )
        if self.dim is not None:
            self.vectors.check_dim(len(embedding))
        raw = np.array(embedding, dtype=np.float32)
        wide = raw.astype(np.float64)  # float32 squares overflow above ~1.8e19: norm in float64
        norm = float(np.sqrt(wide @ wide))
        return raw.tobytes(), ((wide / norm).astype(np.float32) if norm > 0.0 and np.isfinite(norm) else raw)

    def _prepare_embeddings(self, items: Sequence[MemoryInput | EngramError]
                            ) -> dict[int, tuple[bytes, np.ndarray]]:
        """``_prepare_embedding`` of a batch's vectors at once: ``index -> (blob, unit)`` for each
        item whose embedding is an array (decoded from base64) of an accepted length. The others
        (lists, a length the space refuses) take the one-by-one path, which also raises their
        errors. The unit vectors are those of the one-by-one path up to the rounding of the norm's
        sum (a vectorised row sum instead of a dot product); the stored vector is the same."""
        by_len: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            vec: Any = item.embedding if isinstance(item, MemoryInput) else None
            if isinstance(vec, np.ndarray):  # decoded from base64 (models.validate_memory_input)
                by_len.setdefault(len(vec), []).append(i)
        out: dict[int, tuple[bytes, np.ndarray]] = {}
        for size, idx in by_len.items():
            if size > self.settings.max_embedding_dim or (self.dim is not None and size != self.dim):
                continue
            mat = np.stack([cast(Any, items[i]).embedding for i in idx]).astype(np.float32)
            units = _unit_rows(mat)
            for row, i in enumerate(idx):
                out[i] = (mat[row].tobytes(), units[row])
        return out

    def submit_remember(
        self, item: MemoryInput, *, on_loop: bool = False
    ) -> tuple[Future[Any], Callable[[tuple[Any, int]], StoreReceipt]]:
        """Queue the write; returns the commit future and the receipt builder for its result.

        ``on_loop=True`` (call it from a running event loop) returns an asyncio
        future instead, settled in batches (see ``SpaceStore.submit_async``).
        """
        fut, parts = self._submit_remember(item, on_loop)
        return fut, _full_receipt(parts)

    def _submit_remember(
        self, item: MemoryInput, on_loop: bool
    ) -> tuple[Future[Any], Callable[[tuple[Any, int]], ReceiptParts]]:
        store = self.check_healthy()
        op, parts = self.prepare_remember(item)
        try:
            if on_loop:
                return store.submit_async(op, after=self._stored_effect, savepoint=False,  # type: ignore[return-value]
                                          inserts_only=True), parts
            return store.submit(op, after=self._stored_effect, savepoint=False, inserts_only=True), parts
        except StorageError:
            if self._closed:  # closed (unloaded) since check_healthy: retriable, like a closed handle
                self.check_healthy()
            raise

    def submit_remember_batch(
        self, items: builtins.list[MemoryInput | EngramError], *, on_loop: bool = False,
        receipts: bool | Literal["parts"] = True,
    ) -> builtins.list[tuple[Any, Callable[[tuple[Any, int]], StoreReceipt | StoredItem | ReceiptParts]]
                       | EngramError]:
        """Queue every valid item as ONE group: one transaction, one fsync (SPEC §11 "Batch").

        ``items`` holds parsed inputs, or the error that parsing one produced. Each valid item
        becomes the very op ``remember`` would submit (same validation, same post-commit
        effect: vectors, pending embeddings, a ``stored`` event each), and all of them go to
        the store with ``submit_group``, so the writer commits them together and no other
        write lands between them. An op that fails (duplicate id, wrong dimension found at
        write time) fails alone and changes nothing: a remember op fails before or at its
        one INSERT, and the store redoes the batch with savepoints if that ever stops being
        true. Returns, per item, ``(future, receipt builder)`` or the item's error; with
        ``receipts=False`` the builder gives a :class:`StoredItem` (id and LSN) instead, and with
        ``receipts="parts"`` the receipt's plain values (:class:`ReceiptParts`, no model built).
        """
        store = self.check_healthy()
        out: builtins.list[tuple[Any, Callable[[tuple[Any, int]], StoreReceipt | StoredItem | ReceiptParts]]
                           | EngramError] = []
        ops = []
        prepared = self._prepare_embeddings(items)
        fresh = iter(self._ids.take(sum(1 for i in items if isinstance(i, MemoryInput) and not i.id)))
        for i, item in enumerate(items):
            if isinstance(item, EngramError):
                out.append(item)
                continue
            try:
                op, parts = self.prepare_remember(item, prepared.get(i), None if item.id else next(fresh))
            except EngramError as exc:
                out.append(exc)
                continue
            ops.append(op)
            build = parts if receipts == "parts" else _full_receipt(parts) if receipts else _stored_item
            out.append((None, build))
        # inserts_only: the group's full text is indexed once, after its INSERTs (SpaceStore.defer_fts).
        futures = iter(store.submit_group(ops, after=self._stored_effect, savepoint=False, on_loop=on_loop,
                                          inserts_only=True))
        return [o if isinstance(o, EngramError) else (next(futures), o[1]) for o in out]

    def prepare_remember(
        self, item: MemoryInput, prepared: tuple[bytes, np.ndarray] | None = None, new_id: str | None = None,
    ) -> tuple[Callable[[sqlite3.Connection, int], dict[str, Any]],
               Callable[[tuple[Any, int]], ReceiptParts]]:
        """Validate ``item`` and build its write op and receipt builder (nothing is queued); the
        builder gives the receipt's plain values (``ReceiptParts.receipt()`` is the model).
        ``prepared``: its ``(blob, unit)`` from :meth:`_prepare_embeddings` (a batch); ``new_id``:
        the id to give it when it names none (a batch's, drawn together)."""
        if len(item.content) > self.settings.max_content_chars:
            from ..errors import InvalidInput

            raise InvalidInput(
                f"content has {len(item.content)} characters; "
                f"at most {self.settings.max_content_chars} are allowed"
            )
        blob, unit = prepared if prepared is not None else self._prepare_embedding(item.embedding)
        # The row the vectors keep: rounded from the stored bytes as a copy that loads them does.
        row16 = None if blob is None else stored_row16(blob)
        now = self.clock()
        expires_at = expiry_of(item, now, self.default_ttl)
        mem_id = item.id or new_id or self._ids.take(1)[0]
        is_episode = isinstance(item, EpisodeInput)
        links: list[tuple[int, float]] = []
        if item.auto_link and unit is not None and len(self.vectors):
            thr = self.settings.auto_link_threshold
            links = [
                (k, s) for k, s in self.vectors.search(unit, self.settings.auto_link_max) if s >= thr
            ]
        activation = float(item.confidence)
        tags = dumps(item.tags) if item.tags else "[]"
        meta = dumps(item.metadata) if item.metadata else "{}"
        if is_episode:
            ep = cast(EpisodeInput, item)
            ep_vals: tuple[Any, ...] = (
                to_epoch(ep.when), ep.what, ep.where_location, dumps(ep.who), ep.why, ep.how,
                ep.emotional_valence, ep.importance, ConsolidationState.recent.value,
            )
            activation = min(1.0, 0.5 * item.confidence + 0.5 * ep.importance)
        else:
            ep_vals = (None,) * 9
        adjacency = self.settings.episodic_adjacency_seconds if is_episode else 0.0
        # Text with no vector is embedded in the background after the commit (SPEC §9).
        fields = (ep.what, ep.where_location, ep.why, ep.how) if is_episode else ()
        to_embed = blob is None and self.embedding_active and bool(embed_text(item.content, *fields))
        spec_dim = known_dimension(self.embedder_spec, self.settings.openai_dimension)
        event = {
            "memory_id": mem_id, "memory_type": item.memory_type.value,
            "confidence": item.confidence, "importance": item.importance if is_episode else None,  # type: ignore[attr-defined]
            "content": item.content[:200], "kind": "episode" if is_episode else "memory",
        }
        if expires_at is not None:
            event["expires_at"] = from_epoch(expires_at).isoformat()

        def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
            # Runs without a savepoint (see SpaceStore.submit): every way it can
            # fail (dimension, duplicate id) fails before or at its first write.
            if blob is not None and self.dim is not None and len(blob) // 4 != self.dim:
                self.vectors.check_dim(len(blob) // 4)
            insert = (f"INSERT INTO memories({MEMORY_COLUMNS}) "
                      "VALUES (NULL,?,?,?,?,?,?,?,0,?,?,?,?,?,0,?,?,?,?,?,?,?,?,?,?,?)")
            values = (mem_id, "episode" if is_episode else "memory", item.content, blob, item.confidence,
                      now, now, activation, item.decay_rate, tags, item.memory_type.value, meta, lsn,
                      *ep_vals, expires_at)
            reaped = None
            try:
                cur = conn.execute(insert, values)
            except sqlite3.IntegrityError:
                # An expired memory the sweep has not reached yet is gone to every reader, so its
                # id is free: it goes first, exactly as the sweep would take it.
                reaped = self.reap_expired_id(conn, mem_id, now, lsn)
                if reaped is None:
                    raise MemoryExists(
                        f"a memory with id {mem_id!r} already exists in memory space {self.id!r}",
                        details={"memory_id": mem_id, "memory_space_id": self.id},
                    ) from None
                cur = conn.execute(insert, values)
            rowid = int(cur.lastrowid or 0)
            if to_embed and self.dim is None and spec_dim is not None:
                # The first text binds the space to its embedder's dimension.
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)", (str(spec_dim),)
                )
                self.dim = self.vectors.dim = spec_dim
            if (blob is not None and self.dim is None and self.embedding_active
                    and not self.embedder_explicit and spec_dim is not None and len(blob) // 4 != spec_dim):
                # An implicit embedder and a first vector of another length from a client:
                # the space takes client vectors from now on (recorded; see docs/embeddings.md).
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('embedder', ?)",
                             (dumps({**NO_EMBEDDER.to_dict(), "explicit": False}),))
                self.embedder_spec = NO_EMBEDDER
            if blob is not None and self.dim is None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)", (str(len(blob) // 4),)
                )
                self.dim = len(blob) // 4
                self.vectors.dim = self.dim
            made: list[tuple[int, float, str]] = []
            for target, strength in links:
                made.append((target, strength, "auto"))
            if adjacency > 0:
                when = ep_vals[0]
                for (other,) in conn.execute(
                    "SELECT rowid FROM memories "
                    "WHERE ep_when BETWEEN ? AND ? AND rowid != ? AND suppressed = 0 "
                    "ORDER BY abs(ep_when - ?) LIMIT 4",
                    (when - adjacency, when + adjacency, rowid, when),
                ):
                    made.append((int(other), 0.5, "temporal"))
            for target, strength, kind in made:
                for a, b in ((rowid, target), (target, rowid)):
                    conn.execute(
                        "INSERT INTO associations"
                        "(source, target, strength, kind, created_at, updated_at, lsn) "
                        "VALUES (?,?,?,?,?,?,?) ON CONFLICT(source, target) DO UPDATE SET "
                        "strength = max(strength, excluded.strength), updated_at = excluded.updated_at",
                        (a, b, float(strength), kind, now, now, lsn),
                    )
            # unit and event travel with the result to _apply_stored (the post-commit effect).
            # A fresh LSN's only event takes seq 0 without asking the log; after a reaped
            # expired memory's event (seq 0 of this LSN) the log is asked.
            return {"rowid": rowid, "memory_id": mem_id, "links": [(t, s) for t, s, k in made if k == "auto"],
                    "unit": row16, "event": record_event(conn, "stored", lsn, event, first=reaped is None),
                    "embed": to_embed, "reaped": reaped}

        durability = self.settings.durability

        def parts(done: tuple[dict[str, Any], int]) -> ReceiptParts:
            # Built on the caller's thread, not the writer's: the commit thread
            # must only do what has to be serialised.
            res, lsn = done
            link_ids = self._ids_for([t for t, _ in res["links"]])
            return ReceiptParts(
                memory_id=mem_id,
                confidence=item.confidence,
                reasoning=_FSYNC_REASON if durability == "fsync" else _BUFFERED_REASON,
                observed_at=now,
                stored_at=self.clock(),
                auto_links=[(link_ids[t], round(s, 6)) for t, s in res["links"] if t in link_ids],
                lsn=lsn,
                durability=durability,
                memory_space_id=self.id,
            )

        return op, parts

    def _apply_stored(self, run: list[tuple[dict[str, Any], int]]) -> None:
        """Post-commit effect of a run of committed remembers (commit order): vectors, then events.

        Every vector of the run is added before any of its events is published, and
        all before any of the run is acknowledged, so a memory is recallable both on
        return and by a subscriber reacting to its event. One ``add_many`` per run
        takes the vector lock and wakes the index builder once instead of per write.
        """
        reaped = [(res["reaped"], lsn) for res, lsn in run if res.get("reaped")]
        for gone, lsn in reaped:  # expired memories whose ids these writes took (reap_expired_id)
            self._forget_expired([gone["rowid"]], lsn)
        with_vec = [(res["rowid"], res["unit"], lsn) for res, lsn in run if res["unit"] is not None]
        if len(with_vec) == 1:
            self.vectors.add(*with_vec[0])
        elif with_vec:
            # Ops of one batch share the space's dimension (each op checks it at write time).
            try:
                self.vectors.add_many([k for k, _, _ in with_vec], np.stack([u for _, u, _ in with_vec]),
                                      np.fromiter((lsn for _, _, lsn in with_vec), np.int64, len(with_vec)))
            except Exception:  # keep the per-write isolation: one bad vector must not drop the others
                log.exception("batched vector add failed; adding one by one", extra={"memory_space": self.id})
                for key, unit, lsn in with_vec:
                    try:
                        self.vectors.add(key, unit, lsn)
                    except Exception:
                        log.exception("post-commit vector add failed", extra={"memory_space": self.id})
        if with_vec and self.embedding_active:  # client vectors beside the server's own
            self._to_measure(k for k, _, _ in with_vec)
        waiting = [res["rowid"] for res, _ in run if res["embed"]]
        if waiting:
            self._pend(waiting)
        if (waiting or (with_vec and self.embedding_active)) and self.backfill is not None:
            self.backfill.notify(self)  # vectors to compute, or client vectors' fan to measure
        # One wake per run; an expired memory's event comes before that of the write reusing its id.
        self.events.publish_many(ev for res, _ in run
                                 for ev in ((res["reaped"]["event"], res["event"]) if res.get("reaped")
                                            else (res["event"],)))

    # -- update (PUT / PATCH; see core.update) -----------------------------------
    def submit_update(
        self, memory_id: str, *, put: MemoryInput | None = None, patch: MemoryPatch | None = None,
        on_loop: bool = False,
    ) -> tuple[Any, Callable[[tuple[Any, int]], UpdateReceipt]]:
        """Queue one update (exactly one of ``put`` / ``patch``); future and receipt builder."""
        store = self.check_healthy()
        op, receipt = prepare_update(self, memory_id, put=put, patch=patch)

        def after(res: dict[str, Any], lsn: int) -> None:
            apply_updated(self, res, lsn)

        if on_loop:
            return store.submit_async(op, after=after), receipt
        return store.submit(op, after=after), receipt

    def update(self, memory_id: str, *, put: MemoryInput | None = None,
               patch: MemoryPatch | None = None) -> UpdateReceipt:
        fut, receipt = self.submit_update(memory_id, put=put, patch=patch)
        return receipt(fut.result())

    def remember(self, item: MemoryInput) -> StoreReceipt:
        fut, receipt = self.submit_remember(item)
        return receipt(fut.result())

    async def remember_async(self, item: MemoryInput) -> StoreReceipt:
        """``remember`` for event-loop callers: same durability, cheaper acknowledgement."""
        fut, receipt = self.submit_remember(item, on_loop=True)
        return receipt(await fut)  # type: ignore[misc]

    async def remember_parts_async(self, item: MemoryInput) -> ReceiptParts:
        """``remember_async`` giving the receipt's plain values (``.receipt()`` is the model): for
        a transport that encodes the receipt itself (gRPC's unary Remember, straight into protobuf)."""
        fut, parts = self._submit_remember(item, True)
        return parts(await fut)  # type: ignore[misc]

    # -- read helpers -----------------------------------------------------------
    def _ids_for(self, rowids: Iterable[int]) -> dict[int, str]:
        return {r: str(row[1]) for r, row in self.select_rows("rowid, id", rowids).items()}

    def select_rows(self, columns: str, rowids: Iterable[int], where: str = "") -> dict[int, tuple[Any, ...]]:
        """``rowid -> row`` of ``SELECT {columns}`` (which must start with rowid) for the given
        rowids, in chunks SQLite's parameter limit allows; ``where`` adds ``AND`` conditions.
        Expired memories are left out (core.expiry): every recall path reads its rows here."""
        ids = list(rowids)
        out: dict[int, tuple[Any, ...]] = {}
        if not ids:
            return out
        conn = self.check_healthy().reader()
        now = self.clock()
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = ",".join("?" * len(chunk))
                sql = (f"SELECT {columns} FROM memories WHERE rowid IN ({q}) AND {LIVE_SQL}"
                       f"{' AND ' + where if where else ''}")
                for row in conn.execute(sql, (*chunk, now)):
                    out[int(row[0])] = tuple(row)
        except sqlite3.DatabaseError as exc:
            self.guard_read(exc)
        return out

    def rows_by_rowid(self, rowids: Iterable[int]) -> dict[int, tuple[Any, ...]]:
        return self.select_rows(MEMORY_COLUMNS, rowids)

    def row_by_id(self, memory_id: str) -> Any:
        conn = self.check_healthy().reader()
        try:
            row = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ? AND {LIVE_SQL}",
                               (memory_id, self.clock())).fetchone()
        except sqlite3.DatabaseError as exc:
            self.guard_read(exc)
        if row is None:
            raise MemoryNotFound(
                f"no memory with id {memory_id!r} in memory space {self.id!r}",
                details={"memory_id": memory_id, "memory_space_id": self.id},
            )
        return row

    def to_memory(self, row: Any, include_embedding: bool = False) -> Memory:
        (_rowid, mid, kind, content, emb, conf, created, last_access, count, act, rate, tags, mtype, meta,
         suppressed, lsn, ep_when, what, where, who, why, how, valence, importance, cstate, expires) = row
        now = self.clock()
        mem = Memory(
            id=mid, content=content,
            embedding=np.frombuffer(emb, dtype=np.float32).tolist() if (include_embedding and emb) else None,
            confidence=conf, created_at=from_epoch(created), last_access=from_epoch(last_access),
            access_count=count, activation=round(current_activation(act, last_access, rate, now), 6),
            decay_rate=rate, tags=json.loads(tags), memory_type=MemoryType(mtype), metadata=json.loads(meta),
            suppressed=bool(suppressed), lsn=lsn,
            expires_at=from_epoch(expires) if expires is not None else None,
        )
        if kind == "episode":
            mem.when = from_epoch(ep_when) if ep_when is not None else None
            mem.what = what
            mem.where_location = where
            mem.who = json.loads(who) if who else []
            mem.why = why
            mem.how = how
            mem.emotional_valence = valence
            mem.importance = importance
            mem.consolidation_state = ConsolidationState(cstate) if cstate else None
        return mem

    def get(self, memory_id: str, include_embedding: bool = True) -> Memory:
        return self.to_memory(self.row_by_id(memory_id), include_embedding)

    def list(self, cursor: str | None = None, limit: int = 50, memory_type: str | None = None,
             include_suppressed: bool = False, filter: filters.Node | None = None) -> MemoryPage:
        conn = self.check_healthy().reader()
        after = 0
        if cursor:
            try:
                after = int(cursor)
            except ValueError:
                from ..errors import InvalidInput

                raise InvalidInput(f"cursor {cursor[:40]!r} is not a cursor this server issued",
                                   suggestion="Pass the next_cursor value from the previous page.") from None
        now = self.clock()
        where = ["rowid > ?", LIVE_SQL]
        args: list[Any] = [after, now]
        if memory_type:
            where.append("memory_type = ?")
            args.append(memory_type)
        if not include_suppressed:
            where.append("suppressed = 0")
        counted = where[1:]  # the total counts every page: all but the cursor
        if filter is not None:
            fsql, fargs = filters.where_sql(filter, "memories")
            where.append(fsql)
            counted.append(fsql)
            args.extend(fargs)
        sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY rowid LIMIT ?"
        try:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
            total = conn.execute(
                "SELECT count(*) FROM memories" + (f" WHERE {' AND '.join(counted)}" if counted else ""),
                args[1:],
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self.guard_read(exc)
        more = len(rows) > limit
        rows = rows[:limit]
        return MemoryPage(
            memories=[self.to_memory(r) for r in rows],
            next_cursor=str(rows[-1][0]) if more and rows else None,
            total=int(total),
            memory_space_id=self.id,
        )

    # -- forget ---------------------------------------------------------------
    def submit_forget(
        self, memory_id: str, mode: ForgetMode
    ) -> tuple[Future[Any], Callable[[tuple[Any, int]], ForgetReceipt]]:
        store = self.check_healthy()

        now = self.clock()

        def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
            row = conn.execute(f"SELECT rowid FROM memories WHERE id = ? AND {LIVE_SQL}",
                               (memory_id, now)).fetchone()
            if row is None:
                raise MemoryNotFound(
                    f"no memory with id {memory_id!r} in memory space {self.id!r}",
                    details={"memory_id": memory_id, "memory_space_id": self.id},
                )
            rowid = int(row[0])
            n_assoc = conn.execute(
                "SELECT count(*) FROM associations WHERE source = ? OR target = ?", (rowid, rowid)
            ).fetchone()[0]
            if mode is ForgetMode.delete:
                conn.execute("DELETE FROM memories WHERE rowid = ?", (rowid,))
                eventlog.scrub(conn, [memory_id])
            else:
                conn.execute("UPDATE memories SET suppressed = 1, lsn = ? WHERE rowid = ?", (lsn, rowid))
                n_assoc = 0
            event = record_event(conn, "forgotten", lsn, {"memory_id": memory_id, "mode": mode.value})
            return {"rowid": rowid, "assoc": int(n_assoc), "event": event}

        def after(res: dict[str, Any], lsn: int) -> None:
            self.vectors.remove(res["rowid"], lsn)
            self.density.remove(res["rowid"])
            self.events.publish_many([res["event"]])

        def receipt(done: tuple[dict[str, Any], int]) -> ForgetReceipt:
            res, lsn = done
            return ForgetReceipt(memory_id=memory_id, mode=mode, lsn=lsn,
                                 removed_associations=res["assoc"], memory_space_id=self.id)

        return store.submit(op, after=after), receipt

    def forget(self, memory_id: str, mode: ForgetMode = ForgetMode.suppress) -> ForgetReceipt:
        fut, receipt = self.submit_forget(memory_id, mode)
        return receipt(fut.result())

    # -- delete by filter (SPEC §11) --------------------------------------------
    def submit_delete_by_filter(
        self, node: filters.Node, mode: ForgetMode
    ) -> tuple[Future[Any], Callable[[tuple[Any, int]], DeleteReceipt]]:
        """Forget every memory matching ``node`` in ONE durable write (one LSN, one commit).

        ``suppress`` hides the matching memories not hidden yet; ``delete`` erases every
        matching memory, suppressed ones included (what a caller erasing a user's data
        means). Each forgotten memory gets its ``forgotten`` event, all with that LSN.
        """
        store = self.check_healthy()
        fsql, fargs = filters.where_sql(node, "memories")
        now = self.clock()  # expired memories are gone already: the sweep, not this, takes them

        def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
            if mode is ForgetMode.delete:
                cur = conn.execute(f"DELETE FROM memories WHERE {LIVE_SQL} AND {fsql} RETURNING rowid, id",
                                   (now, *fargs))
            else:
                cur = conn.execute(
                    f"UPDATE memories SET suppressed = 1, lsn = ? WHERE suppressed = 0 AND {LIVE_SQL} "
                    f"AND {fsql} RETURNING rowid, id", (lsn, now, *fargs))
            rows = [(int(r), str(i)) for r, i in cur.fetchall()]
            if mode is ForgetMode.delete:
                eventlog.scrub(conn, [mid for _, mid in rows])  # an erased memory's text leaves the log too
            events = [record_event(conn, "forgotten", lsn, {"memory_id": mid, "mode": mode.value})
                      for _, mid in rows]
            return {"rows": rows, "events": events}

        def after(res: dict[str, Any], lsn: int) -> None:
            for rowid, _ in res["rows"]:
                self.vectors.remove(rowid, lsn)
                self.density.remove(rowid)
            self.events.publish_many(res["events"])

        def receipt(done: tuple[dict[str, Any], int]) -> DeleteReceipt:
            res, lsn = done
            return DeleteReceipt(count=len(res["rows"]), mode=mode, lsn=lsn, memory_space_id=self.id)

        return store.submit(op, after=after), receipt

    def matching(self, node: filters.Node, rowids: Iterable[int]) -> set[int]:
        """Which of ``rowids`` match ``node`` (one indexed read per 500 rowids)."""
        fsql, fargs = filters.where_sql(node, "memories")
        ids = builtins.list(rowids)
        out: set[int] = set()
        if not ids:
            return out
        conn = self.check_healthy().reader()
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = ",".join("?" * len(chunk))
                out.update(int(r) for (r,) in conn.execute(
                    f"SELECT rowid FROM memories WHERE rowid IN ({q}) AND {fsql}", (*chunk, *fargs)))
        except sqlite3.DatabaseError as exc:
            self.guard_read(exc)
        return out

    # -- event log (resumable feeds) and expiry ----------------------------------
    def replay_source(self) -> _LogReader:
        """What a resumed subscription replays this space's event log through (core.events)."""
        return _LogReader(self)

    def _expired_op(self, now: float, limit: int) -> tuple[Callable[..., dict[str, Any]],
                                                             Callable[[dict[str, Any], int], None]]:
        def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
            rows = conn.execute(
                "SELECT rowid, id, expires_at FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ? "
                "ORDER BY expires_at LIMIT ?", (now, limit)).fetchall()
            if not rows:
                return {"rowids": [], "events": []}
            return {"rowids": [int(r[0]) for r in rows], "events": _delete_expired(conn, rows, lsn)}

        def after(res: dict[str, Any], lsn: int) -> None:
            self._forget_expired(res["rowids"], lsn)
            self.events.publish_many(res["events"])

        return op, after

    def reap_expired_id(self, conn: sqlite3.Connection, memory_id: str, now: float,
                        lsn: int) -> dict[str, Any] | None:
        """Inside a write op: delete the memory holding ``memory_id`` if it has expired, as the
        sweep does (row, associations, scrubbed log text, an ``expired`` event under ``lsn``).
        Returns ``{rowid, event}`` for the post-commit effect (:meth:`_forget_expired`), or None
        when no expired memory holds the id."""
        rows = conn.execute("SELECT rowid, id, expires_at FROM memories WHERE id = ? "
                            "AND expires_at IS NOT NULL AND expires_at <= ?", (memory_id, now)).fetchall()
        if not rows:
            return None
        return {"rowid": int(rows[0][0]), "event": _delete_expired(conn, rows, lsn)[0]}

    def _forget_expired(self, rowids: builtins.list[int], lsn: int) -> None:
        """Post-commit effect of deleting expired memories: out of the index and the backlog."""
        for rowid in rowids:
            self.vectors.remove(rowid, lsn)
            self.density.remove(rowid)
        if rowids:
            with self._pending_cv:
                for rowid in rowids:
                    self._pending.pop(rowid, None)

    def has_expired(self, now: float | None = None) -> bool:
        """Whether a memory has expired and awaits the sweep (an index seek)."""
        conn = self.check_healthy().reader()
        when = self.clock() if now is None else now
        return conn.execute("SELECT 1 FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT 1",
                            (when,)).fetchone() is not None

    def sweep_expired(self, batch: int | None = None, *, wait: bool = True) -> int:
        """Delete the memories that have expired, durably, ``batch`` per group commit; returns how many.

        Each batch is one write op (one LSN, one commit): rows and their associations deleted,
        their event-log text scrubbed, one ``expired`` event each (seq 0, 1, ... of that LSN);
        after the commit their vectors leave the index and the events are published. A space
        with nothing expired costs one index seek and no write (no LSN is used).
        ``wait=False`` queues one batch and returns 0 at once (the sweep on load).
        """
        limit = max(1, batch or self.settings.expiry_sweep_batch)
        store = self.check_healthy()
        total = 0
        while True:
            now = self.clock()
            if not self.has_expired(now):
                return total
            op, after = self._expired_op(now, limit)
            if not wait:
                store.submit(op, after=after, wait=False)
                return 0
            res, _lsn = store.write(op, after=after)
            total += len(res["rowids"])
            if len(res["rowids"]) < limit:
                return total

    # -- reinforcement (background, never awaited) ------------------------------
    def reinforce(self, rowids: builtins.list[int]) -> None:
        """Strengthen what a recall returned, in the background (coalesced: core.reinforce)."""
        if self.replica:
            self.reinforced.extend(rowids)
            return
        if not rowids or self._closed or self.reinforcer is None:
            return
        self.reinforcer.add(rowids, self.clock())

    # -- read workers' copies (engram.readpool) ----------------------------------
    def track_changes(self) -> ChangeLog | None:
        """Keep what each commit changes in the vectors and the fans, for read workers' copies to
        catch up without reloading (index.changes, LocalDensity.track); returns the vectors' log.
        Cheap when on already. A re-embedding replaces the vectors and fans: their logs start
        again (copies reload once)."""
        store = self.store
        if store is None or self.replica or self._closed:
            return None
        vectors = self.vectors
        self.density.track()
        got = vectors.changes
        if got is not None:
            return got
        # In this order: the hook, the log, then whether a write is in flight, then the epoch
        # (ChangeLog.begin: a write counts as in flight until after its epoch is published).
        store.on_epoch = self._seal_changes
        got = vectors.changes = ChangeLog()
        idle = not store.busy
        got.begin(store.epoch, idle)
        return got

    def _seal_changes(self, epoch: int) -> None:
        changes = self.vectors.changes
        if changes is not None:
            changes.seal(epoch)

    # -- stats and lifecycle ----------------------------------------------------
    @property
    def last_lsn(self) -> int:
        return self.store.last_lsn if self.store is not None else 0

    def count(self, *, strict: bool = False) -> int:
        """The live memories. A read failure counts 0 for a figure (stats), or raises with
        ``strict`` (a quota check must not admit a write on a count it could not take)."""
        if self.store is None:
            return 0
        try:
            return int(self.store.reader().execute(
                f"SELECT count(*) FROM memories WHERE {LIVE_SQL}", (self.clock(),)).fetchone()[0])
        except StorageError:  # no reader connection now (transient) or closed: no count
            if strict:
                raise
            return 0
        except sqlite3.DatabaseError as exc:
            if not is_transient(exc):  # a transient read failure says nothing about the file
                self.mark_unhealthy(f"storage damaged: {exc}")
            if strict:
                raise self.store.translate(exc, "count the memories of", degrade=False) from exc
            return 0

    def close(self, reason: str = "space closed") -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.closed_reason = reason
        self.events.close_all(reason)
        if self.backfill is not None:
            self.backfill.forget(self)
        with self._pending_cv:
            self._pending_cv.notify_all()  # wake wait_embedded callers: nothing more will come
        for part in self._attached.values():
            stop = getattr(part, "close", None)
            if callable(stop):
                stop()
        if self.ann is not None:
            self.ann.stop()
        if self._check_thread is not None:
            # A live thread may already have closed its connection: look at the connection
            # itself, under the lock the thread closes it with, never at is_alive().
            with self._check_lock:
                if self._check_conn is not None:
                    self._check_conn.interrupt()  # thread-safe; the check ends with "interrupted"
            self._check_thread.join()
        if self.reinforcer is not None:
            self.reinforcer.flush()  # what recalls strengthened goes in before the store closes
        if self.store is not None:
            self.store.close()
        if self.ann is not None:
            self.ann.checkpoint_if_useful()

    @property
    def closed(self) -> bool:
        return self._closed


def _delete_expired(conn: sqlite3.Connection, rows: builtins.list[Any], lsn: int) -> builtins.list[Any]:
    """Delete expired memories (``rowid, id, expires_at`` rows) inside a write op: their
    associations go by trigger, their logged text is scrubbed, and one ``expired`` event each is
    recorded under ``lsn``. Returns the events, to publish after the commit."""
    rowids = [int(r[0]) for r in rows]
    q = ",".join("?" * len(rowids))
    conn.execute(f"DELETE FROM memories WHERE rowid IN ({q})", rowids)
    SpaceStore.rows_deleted(conn)  # a write reusing an id may be inside a batch's full-text deferral
    ids = [str(r[1]) for r in rows]
    eventlog.scrub(conn, ids)
    return [record_event(conn, "expired", lsn,
                         {"memory_id": mid, "expires_at": from_epoch(float(at)).isoformat()})
            for mid, (_r, _i, at) in zip(ids, rows, strict=True)]


#: Events read from the log per replay step.
REPLAY_CHUNK = 256


class _LogReader:
    """A space's event log as a ``core.events.ReplaySource``."""

    def __init__(self, space: MemorySpace) -> None:
        self.space = space

    def read(self, after: eventlog.Position, types: frozenset[str] | None
             ) -> tuple[builtins.list[eventlog.Logged], eventlog.Position, eventlog.Position]:
        conn = self.space.check_healthy().reader()
        try:
            return eventlog.read_after(conn, after, REPLAY_CHUNK, types)
        except sqlite3.DatabaseError as exc:
            self.space.guard_read(exc)
            raise

    def bounds(self) -> tuple[int, int]:
        conn = self.space.check_healthy().reader()
        return eventlog.oldest_lsn(conn), self.space.last_lsn

    def check(self, after: eventlog.Position) -> None:
        """Refuse a resume point beyond the space's last LSN (a client of another incarnation
        of the space: deleted and created again, or restored from an older backup)."""
        last = self.space.last_lsn
        if after[0] > last:
            from ..errors import InvalidInput

            raise InvalidInput(
                f"the resume point LSN {after[0]} is beyond the last LSN of memory space "
                f"{self.space.id!r} ({last}): it comes from another incarnation of this space "
                "(deleted and created again, or restored from an older backup)",
                suggestion="Reconnect without Last-Event-ID / since_lsn for live events, or with since_lsn=0 "
                           "to replay what the log holds.",
                example="GET /api/v1/stream/activities?since_lsn=0",
            )
