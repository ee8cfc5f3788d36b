"""Durable storage of one memory space: SQLite in WAL mode behind one writer thread.

Write path (the invariant every caller relies on):

1. A caller submits a write *op* (a function of the connection) and gets a
   ``concurrent.futures.Future``.
2. The single writer thread takes every op waiting in the queue (up to
   ``max_batch``), runs each inside its own SAVEPOINT within one transaction,
   and COMMITs. With ``synchronous=FULL`` in WAL mode the commit returns only
   after the WAL is fsynced: that is the group commit, one fsync for the batch.
3. Only after the commit succeeded are the in-memory side effects applied
   (vector index, events), and only then are the futures resolved. A caller
   whose future resolved can therefore always read its write back, and a
   crash at any earlier point loses only writes nobody was told about.

If one op raises, its savepoint is rolled back and only its future fails; the
rest of the batch commits. If COMMIT itself fails (disk full, I/O error), every
future in the batch fails with ``StorageError`` and no side effect is applied:
a failed fsync is a failed write.

Reads use per-thread connections (WAL lets readers run beside the writer).

Threads: the writer and the completer (see :meth:`SpaceStore._complete`) are
started on demand by the first write and exit after ``idle_seconds`` without
work, so an idle loaded space holds no OS thread. The decision to exit and the
enqueueing of new work are made under one lock (see :meth:`SpaceStore._enqueue`),
so no write can be left in a queue nobody drains, and at most one writer and
one completer of a space run at any time: commit order and the "effects before
acknowledgement" contract are those of a single pair of threads.

Errors: :func:`is_transient` tells a condition that heals (too many open
files, disk full, read-only, I/O error, busy) from damage (a malformed file).
A transient failure fails the writes it touched with ``StorageUnavailable``
(retriable) and is reported through ``on_transient`` so the space can go
degraded and be probed again; it never leaves the store unusable.

Files are created private (0600 in 0700 directories) whatever the umask:
SQLite gives ``-wal`` and ``-shm`` the mode of the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

from ..errors import EngramError, StorageError, StorageUnavailable
from .eventlog import EVENTS_SCHEMA, LAST_SEQ, TRIMMED_KEY
from .eventlog import trim as trim_events

log = logging.getLogger("engram.storage")

SCHEMA_VERSION = 3  # 2: episode fields (what/where/who/why/how) are full-text indexed; 3: see _feeds_schema

FILE_MODE = 0o600
DIR_MODE = 0o700
_PROBE_MIN_FREE = 1 << 20  # a degraded space is not healed while its disk has less free than this

# errno values that describe the environment, not the file: they heal when the
# operator (or the load) frees descriptors or space, or remounts read-write.
_TRANSIENT_ERRNOS = frozenset({
    errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ENOMEM,
    errno.EAGAIN, errno.EACCES, errno.EPERM,
})
# SQLite primary result codes of the same kind (sqlite3.h): BUSY, LOCKED, NOMEM, READONLY,
# IOERR, FULL, CANTOPEN. CORRUPT (11) and NOTADB (26) are damage and stay out.
_TRANSIENT_SQLITE = frozenset({5, 6, 7, 8, 10, 13, 14})
_TRANSIENT_TEXT = ("unable to open database file", "database or disk is full", "readonly database",
                   "disk i/o error", "too many open files", "database is locked", "out of memory",
                   "no space left")


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` is a storage condition that can heal by itself (not damage).

    Follows ``__cause__`` so a ``StorageError`` raised from an ``OSError`` or
    ``sqlite3.Error`` is judged by its origin.
    """
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        if isinstance(cur, StorageUnavailable):
            return True
        if isinstance(cur, OSError):
            return cur.errno in _TRANSIENT_ERRNOS
        if isinstance(cur, sqlite3.Error):
            code = getattr(cur, "sqlite_errorcode", None)
            if isinstance(code, int) and (code & 0xFF) in _TRANSIENT_SQLITE:
                return True
            text = str(cur).lower()
            return any(t in text for t in _TRANSIENT_TEXT)
        cur = cur.__cause__
        seen += 1
    return False


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700 directories; existing ones are left as they are."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 (created empty if missing, tightened if looser)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        st = os.stat(path)
        if st.st_mode & 0o077:
            os.chmod(path, FILE_MODE)
        return
    os.close(fd)

def episode_text_sql(row: str) -> str:
    """SQL for an episode's searchable fields (what/where/who/why/how) of table alias ``row``."""
    fields = ("what", "where_location", "who", "why", "how")
    return " || ' ' || ".join(f"coalesce({row}.{c}, '')" for c in fields)


def _fts_text(row: str) -> str:
    """The text a memory is found by: its content and, for an episode, what/where/who/why/how.

    The FTS table has external content, so a row's 'delete' must repeat exactly the
    text that was indexed: inserts, deletes and updates all use this one expression.
    """
    return f"{row}.content || ' ' || {episode_text_sql(row)}"


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    embedding BLOB,
    confidence REAL NOT NULL,
    created_at REAL NOT NULL,
    last_access REAL NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    activation REAL NOT NULL,
    decay_rate REAL NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    memory_type TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    suppressed INTEGER NOT NULL DEFAULT 0,
    lsn INTEGER NOT NULL,
    ep_when REAL,
    what TEXT,
    where_location TEXT,
    who TEXT,
    why TEXT,
    how TEXT,
    emotional_valence REAL,
    importance REAL,
    consolidation_state TEXT
);
CREATE INDEX IF NOT EXISTS memories_when ON memories(ep_when) WHERE ep_when IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_created ON memories(created_at);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    content, tags, content='memories', content_rowid='rowid', tokenize='porter unicode61'
);
CREATE TABLE IF NOT EXISTS fts_deferred (since INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS memories_fts_ai AFTER INSERT ON memories
WHEN NOT EXISTS (SELECT 1 FROM fts_deferred) BEGIN
    INSERT INTO memories_fts(rowid, content, tags) VALUES (new.rowid, {new}, new.tags);
END;
CREATE TRIGGER IF NOT EXISTS memories_fts_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, tags)
        VALUES ('delete', old.rowid, {old}, old.tags);
    DELETE FROM associations WHERE source = old.rowid OR target = old.rowid;
END;
CREATE TRIGGER IF NOT EXISTS memories_fts_au
AFTER UPDATE OF content, tags, what, where_location, who, why, how ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, tags)
        VALUES ('delete', old.rowid, {old}, old.tags);
    INSERT INTO memories_fts(rowid, content, tags) VALUES (new.rowid, {new}, new.tags);
END;
CREATE TABLE IF NOT EXISTS associations (
    source INTEGER NOT NULL,
    target INTEGER NOT NULL,
    strength REAL NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    lsn INTEGER NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS associations_target ON associations(target);
CREATE TABLE IF NOT EXISTS beliefs (
    id TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    centroid BLOB,
    strength REAL NOT NULL,
    schema_confidence REAL NOT NULL,
    citations TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    run_id TEXT NOT NULL,
    lsn INTEGER NOT NULL
);
-- cognition: spreading skips suppressed memories; this partial index keeps that check cheap
CREATE INDEX IF NOT EXISTS memories_suppressed ON memories(rowid) WHERE suppressed = 1;
"""
SCHEMA = SCHEMA.replace("{new}", _fts_text("new")).replace("{old}", _fts_text("old"))

# -- metadata index (SPEC §11 filters; core.filters.rowid_set_sql reads it) -----------------------
# One row per metadata entry: (memory rowid, key, value class, value). Derived from
# memories.metadata by triggers, so every writer (remember, update, delete, restore) keeps it
# exact without knowing it exists. ``v`` is declared BLOB, i.e. with no affinity: numbers stay
# numbers and strings stay strings ('3' is never 3). Classes: 0 null, 1 boolean (v 0/1),
# 2 number, 3 string, 4 anything else (never matched). Kept apart from SCHEMA and
# schema_version: added to existing databases by _ensure_metadata_index (meta key
# 'metadata_index'), idempotently.
METADATA_INDEX_VERSION = "1"
_META_ROWS = """SELECT {row}, key,
    CASE type WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1
              WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 ELSE 4 END,
    atom FROM json_each({meta})"""
METADATA_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_meta (
    mrowid INTEGER NOT NULL,
    mkey TEXT NOT NULL,
    vtype INTEGER NOT NULL,
    v BLOB
);
CREATE INDEX IF NOT EXISTS memory_meta_kv ON memory_meta(mkey, vtype, v, mrowid);
CREATE INDEX IF NOT EXISTS memory_meta_row ON memory_meta(mrowid);
CREATE TRIGGER IF NOT EXISTS memory_meta_ai AFTER INSERT ON memories WHEN new.metadata != '{{}}' BEGIN
    INSERT INTO memory_meta(mrowid, mkey, vtype, v) {new_rows};
END;
CREATE TRIGGER IF NOT EXISTS memory_meta_ad AFTER DELETE ON memories WHEN old.metadata != '{{}}' BEGIN
    DELETE FROM memory_meta WHERE mrowid = old.rowid;
END;
CREATE TRIGGER IF NOT EXISTS memory_meta_au AFTER UPDATE OF metadata ON memories BEGIN
    DELETE FROM memory_meta WHERE mrowid = old.rowid;
    INSERT INTO memory_meta(mrowid, mkey, vtype, v) {new_rows};
END;
""".format(new_rows=_META_ROWS.format(row="new.rowid", meta="new.metadata"))

WriteOp = Callable[[sqlite3.Connection, int], Any]
"""A write op gets the connection and the LSN it may use; returns its result."""


class _NeedsSavepoints(Exception):
    """An op submitted with ``savepoint=False`` failed after changing rows."""


class GroupedEffect:
    """A post-commit effect applied once per *run* of consecutive ops that share it.

    Pass one instance as ``after`` of many ops: the completer calls
    ``apply([(result, lsn), ...])`` once for each run of consecutive successful
    ops of a batch that carry this same instance, in commit order, so per-call
    costs (locks, index wake-ups) are paid per run instead of per write. The
    contract of ``after`` is unchanged: effects run after the commit, and no
    future of the run resolves before ``apply`` has returned.
    """

    __slots__ = ("apply",)

    def __init__(self, apply: Callable[[list[tuple[Any, int]]], None]) -> None:
        self.apply = apply

    def __call__(self, result: Any, lsn: int) -> None:
        self.apply([(result, lsn)])


class _Pending:
    __slots__ = ("after", "critical", "future", "inserts_only", "mutates", "op", "quiet", "savepoint",
                 "waiter")

    def __init__(self, op: WriteOp, future: Future[Any] | None, mutates: bool,
                 after: Callable[[Any, int], None] | None, savepoint: bool = True,
                 waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None,
                 critical: bool = False, inserts_only: bool = False, quiet: bool = False) -> None:
        self.critical = critical  # its failure fails the whole commit (a group's bracket op)
        # It changes nothing a recall ranks by or returns beyond counters (reinforcement):
        # its commit leaves ``SpaceStore.epoch`` alone (see there).
        self.quiet = quiet
        # It only INSERTs new memories (a remember): a run of such ops may have its full text
        # indexed after the run instead of row by row (SpaceStore.defer_fts).
        self.inserts_only = inserts_only
        self.op = op
        self.future = future
        self.mutates = mutates
        self.after = after
        self.savepoint = savepoint
        self.waiter = waiter  # an asyncio future to settle on its own loop (submit_async)

    def fail(self, exc: BaseException) -> None:
        if self.future is not None:
            try:
                if not self.future.done():
                    self.future.set_exception(exc)
            except InvalidStateError:  # cancelled by its caller meanwhile
                pass
        elif self.waiter is not None:
            _settle_on(self.waiter[0], [(self.waiter[1], exc, None)])


def _settle(items: list[tuple[asyncio.Future[Any], BaseException | None, Any]]) -> None:
    """Runs on the event loop: settle the asyncio futures of one committed batch."""
    for fut, exc, value in items:
        if fut.done():  # cancelled by its caller; the write itself stands
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


def _settle_on(loop: asyncio.AbstractEventLoop,
               items: list[tuple[asyncio.Future[Any], BaseException | None, Any]]) -> None:
    try:
        loop.call_soon_threadsafe(_settle, items)
    except RuntimeError:  # the loop is closed: nobody is awaiting these any more
        log.warning("event loop closed before %d write acknowledgement(s) could be delivered", len(items))


class SpaceStore:
    """The SQLite database of one space, at ``<space_dir>/space.db``."""

    DB_NAME = "space.db"

    def __init__(self, space_dir: Path, *, durable: bool = True, max_batch: int = 512,
                 idle_seconds: float = 2.0, event_log_max: int = 100_000) -> None:
        self.dir = space_dir
        self.path = space_dir / self.DB_NAME
        self.durable = durable
        self.max_batch = max_batch
        self.idle_seconds = max(0.01, idle_seconds)
        self.event_log_max = max(1, event_log_max)
        self._trim_every = max(1, min(10_000, self.event_log_max // 10))
        # An entry is one write, a group of writes that must share one commit (submit_group), or
        # None (the stop sentinel of close()).
        self._queue: queue.SimpleQueue[_Pending | list[_Pending] | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        # Guards: the closed flag, the writer's running flag and its exit decision,
        # enqueueing, and the in-flight count (see _enqueue).
        self._submit_lock = threading.Lock()
        self._writer_running = False
        self._thread: threading.Thread | None = None
        self._inflight = 0  # writes submitted and not yet acknowledged (or failed)
        self._done_lock = threading.Lock()  # the same, for the completer and its queue
        self._completer_running = False
        self._completer: threading.Thread | None = None
        self.commits = 0
        self.ops_committed = 0
        # Bumped after every commit (its in-memory effects applied) that holds a write other than
        # a quiet one: equal epochs mean the same stored state for a read (engram.readpool).
        self.epoch = 0
        # Called on the completer thread with the epoch about to be published, after the commit's
        # in-memory effects (its owner seals what they changed: index.changes).
        self.on_epoch: Callable[[int], None] | None = None
        self.broken: str | None = None  # set if the writer thread died; every later write fails
        # Called (on the failing thread) with a transient storage error: the space goes degraded.
        self.on_transient: Callable[[BaseException], None] | None = None
        # Runs before every submit (see submit): the owner queues its deferred writes there.
        self.before_submit: Callable[[], None] | None = None
        private_dir(self.dir)
        private_file(self.path)
        self._writer = self._connect()
        try:
            # Opening replays the committed WAL frames and ignores a torn tail
            # (frames whose checksum chain breaks): SQLite's own recovery.
            if self._writer.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                # A new database: every CREATE in one transaction (one fsync, not one each).
                self._writer.executescript("BEGIN IMMEDIATE;\n" + SCHEMA + "\nCOMMIT;")
            else:
                self._writer.executescript(SCHEMA)  # IF NOT EXISTS: writes nothing when current
            self.last_lsn = int(self._meta_get(self._writer, "last_lsn") or 0)
            version = self._meta_get(self._writer, "schema_version")
            if version is None:
                self._writer.execute("BEGIN IMMEDIATE")
                self._meta_set(self._writer, "schema_version", str(SCHEMA_VERSION))
                self._meta_set(self._writer, "created_at", repr(time.time()))
                self._writer.execute("COMMIT")
            elif version == "1":
                self._migrate_1_to_2()
            self._feeds_schema()
            self._fts_deferral_schema()
            self._ensure_metadata_index()
            # The database and WAL files now exist; make their directory entries
            # durable too, or a power cut could lose a freshly created file whole.
            _fsync_dir(self.dir)
        except BaseException:
            self._writer.close()
            raise
        self._done: queue.SimpleQueue[list[tuple[_Pending, Any, int, BaseException | None]] | None] = (
            queue.SimpleQueue())
        self._trimmed_at = self.last_lsn - self._trim_every  # the first batch checks the log's size

    def _migrate_1_to_2(self) -> None:
        """Re-index full text with the episode fields, in one transaction (runs before the writer starts).

        Version 1 indexed content and tags only, under triggers named memories_ai/ad/au;
        SCHEMA has just created the version-2 triggers beside them, so the old ones go and
        the index is rebuilt from the rows with the version-2 text.
        """
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in ("memories_ai", "memories_ad", "memories_au"):
                conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('delete-all')")
            conn.execute(
                f"INSERT INTO memories_fts(rowid, content, tags) SELECT rowid, {_fts_text('m')}, tags "
                "FROM memories AS m"
            )
            self._meta_set(conn, "schema_version", "2")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("storage migrated to schema 2 (episode fields full-text indexed)",
                 extra={"memory_space": self.dir.name})

    def _fts_deferral_schema(self) -> None:
        """Give an older database the insert trigger that a batch can defer (runs before the writer).

        Idempotent. A ``fts_deferred`` row only ever lives inside a batch's transaction
        (:meth:`defer_fts` / :meth:`index_deferred_fts`); one found here would mean rows
        committed without their full-text entries, so the index is rebuilt from the rows.
        """
        conn = self._writer
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'memories_fts_ai'"
                           ).fetchone()
        current = sql is not None and "fts_deferred" in str(sql[0])
        stray = conn.execute("SELECT count(*) FROM fts_deferred").fetchone()[0]
        if current and not stray:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not current:
                conn.execute("DROP TRIGGER IF EXISTS memories_fts_ai")
                for statement in _statements(SCHEMA):
                    if "memories_fts_ai" in statement:
                        conn.execute(statement)
            if stray:
                log.error("full-text entries of a batch were missing; rebuilding the full-text index",
                          extra={"memory_space": self.dir.name})
                conn.execute("DELETE FROM fts_deferred")
                conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def defer_fts(conn: sqlite3.Connection, lsn: int) -> None:
        """A group's first op (:meth:`submit_group` ``bracket``): memories inserted from here on get
        their full-text entries from :meth:`index_deferred_fts`, all at once, instead of one per
        INSERT from the trigger. Why: an INSERT that fires triggers runs under a statement
        savepoint, and FTS5 flushes its pending terms into a new segment at every savepoint, so
        row-by-row indexing writes one tiny segment per memory (measured: ~4x the cost of the
        INSERT itself; docs/benchmarks.md "Where a batch's time goes")."""
        conn.execute("INSERT INTO fts_deferred(since) SELECT coalesce(max(rowid), 0) FROM memories")

    @staticmethod
    def rows_deleted(conn: sqlite3.Connection) -> None:
        """After memories were deleted inside a write op: if a full-text deferral is open
        (:meth:`defer_fts`), lower its mark to the largest surviving row from before it. SQLite
        gives a new row the largest rowid + 1, so deleting the largest hands its rowid to the next
        INSERT, which the mark would otherwise leave unindexed (an expired memory's id reused
        inside a batch does exactly that). A no-op outside a deferral."""
        conn.execute("UPDATE fts_deferred SET since = (SELECT coalesce(max(rowid), 0) FROM memories "
                     "WHERE rowid <= fts_deferred.since)")

    @staticmethod
    def index_deferred_fts(conn: sqlite3.Connection, lsn: int) -> None:
        """A group's last op: the full-text entries of every memory inserted since :meth:`defer_fts`
        (rowids only grow within the writer's transaction, and :meth:`rows_deleted` keeps the mark
        below a rowid a delete freed), with the trigger's own text."""
        conn.execute(
            f"INSERT INTO memories_fts(rowid, content, tags) SELECT m.rowid, {_fts_text('m')}, m.tags "
            "FROM memories AS m WHERE m.rowid > (SELECT since FROM fts_deferred)")
        conn.execute("DELETE FROM fts_deferred")

    def _ensure_metadata_index(self) -> None:
        """Create and fill the metadata index once per database (runs before the writer starts).

        Idempotent: the meta key 'metadata_index' is set in the same transaction that built it,
        so a crash half-way leaves no key and the next open builds it again from scratch.
        """
        if self._meta_get(self._writer, "metadata_index") == METADATA_INDEX_VERSION:
            return
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(METADATA_INDEX_SCHEMA):
                conn.execute(statement)
            conn.execute("DELETE FROM memory_meta")
            conn.execute("INSERT INTO memory_meta(mrowid, mkey, vtype, v) "
                         + _META_ROWS.format(row="m.rowid", meta="m.metadata").replace(
                             "FROM json_each(m.metadata)", "FROM memories AS m, json_each(m.metadata)")
                         + " WHERE m.metadata != '{}'")
            self._meta_set(conn, "metadata_index", METADATA_INDEX_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- schema 3: event log and expiry (resumable feeds, SPEC §11) ----------------------------
    def _feeds_schema(self) -> None:
        """Add the event log and ``memories.expires_at`` (idempotent: safe on every open).

        A database from before schema 3 has writes its log never saw: the trim point is set to
        its last LSN, so a resume from before it is told ``reset`` instead of a silent gap.
        """
        conn = self._writer
        cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(memories)")}
        version = self._meta_get(conn, "schema_version")
        has_log = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone() is not None
        if "expires_at" in cols and has_log and version == str(SCHEMA_VERSION):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if "expires_at" not in cols:
                conn.execute("ALTER TABLE memories ADD COLUMN expires_at REAL")
            conn.execute(
                "CREATE INDEX IF NOT EXISTS memories_expires ON memories(expires_at) "
                "WHERE expires_at IS NOT NULL")
            for statement in EVENTS_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version != str(SCHEMA_VERSION) and self.last_lsn > 0:
                self._meta_set(conn, TRIMMED_KEY, f"{self.last_lsn}:{LAST_SEQ}")
            self._meta_set(conn, "schema_version", str(SCHEMA_VERSION))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _trim_events(self, conn: sqlite3.Connection, lsn: int) -> None:
        """Keep the newest ``event_log_max`` events; inside the batch's transaction, once per
        ``_trim_every`` LSNs, so the cost (an index walk and a range delete) is shared by many writes."""
        if lsn - self._trimmed_at < self._trim_every:
            return
        self._trimmed_at = lsn
        trim_events(conn, self.event_log_max)

    # -- connections ----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-8192")  # 8 MiB page cache per connection
            conn.execute("PRAGMA busy_timeout=30000")
        except BaseException:
            conn.close()  # e.g. EMFILE opening the WAL: never leak the database's descriptor
            raise
        return conn

    def reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageError(f"space storage at {self.dir} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
                conn.execute("PRAGMA query_only=ON")
            except sqlite3.Error as exc:
                # Not a reason to degrade the space: its writer and other readers still work.
                raise self.translate(exc, "open a reader of", degrade=False) from exc
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def translate(self, exc: BaseException, doing: str, *, degrade: bool = True) -> StorageError:
        """The error to raise for ``exc``: retriable ``StorageUnavailable`` if transient (and,
        with ``degrade``, the space told through ``on_transient``), else ``StorageError``."""
        if is_transient(exc):
            hook = self.on_transient
            if hook is not None and degrade:
                hook(exc)
            return StorageUnavailable(f"could not {doing} space {self.dir.name!r}: {exc}",
                                      details={"memory_space_id": self.dir.name})
        return StorageError(f"could not {doing} space {self.dir.name!r}: {exc}")

    @property
    def busy(self) -> bool:
        """True while a write is queued, committing, or awaiting its acknowledgement."""
        return self._inflight > 0

    @property
    def threads_running(self) -> int:
        """How many of this store's threads (writer, completer) are alive now."""
        return int(self._writer_running) + int(self._completer_running)

    @staticmethod
    def _meta_get(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _meta_set(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def meta(self, key: str) -> str | None:
        return self._meta_get(self.reader(), key)

    # -- the write path -------------------------------------------------------
    def submit(self, op: WriteOp, *, mutates: bool = True,
               after: Callable[[Any, int], None] | None = None, wait: bool = True,
               savepoint: bool = True, flush_first: bool = True, inserts_only: bool = False,
               quiet: bool = False) -> Future[Any]:
        """Queue a write; the future resolves after the batch holding it is durable.

        ``mutates`` ops get a fresh LSN. ``after(result, lsn)`` runs on the writer
        thread after the commit and before the future resolves (in-memory effects).
        ``wait=False`` is for background writes (reinforcement) that nobody awaits.
        ``savepoint=False`` skips the per-op savepoint (two statements per op) for
        ops that either succeed or fail without having changed anything, like a
        single INSERT; if such an op does leave changes behind, the batch is
        redone with savepoints, so the flag can cost time but never correctness.
        ``before_submit`` (if set) runs first, unless ``flush_first`` is False: the space
        queues its coalesced background writes there, ahead of this one (core.reinforce).
        ``inserts_only``: the op only INSERTs new memories (see :meth:`defer_fts`).
        ``quiet``: the op leaves :attr:`epoch` alone (see :class:`_Pending`).
        """
        if flush_first and self.before_submit is not None:
            self.before_submit()
        fut: Future[Any] | None = Future() if wait else None
        # The closed check and the put happen under one lock that close() also
        # takes to enqueue its stop sentinel: no write can land behind the
        # sentinel, where the writer would never see it and its caller would hang.
        self._enqueue(_Pending(op, fut, mutates, after, savepoint, inserts_only=inserts_only, quiet=quiet))
        return fut if fut is not None else _done_future()

    def submit_async(self, op: WriteOp, *, mutates: bool = True,
                     after: Callable[[Any, int], None] | None = None,
                     savepoint: bool = True, inserts_only: bool = False) -> asyncio.Future[Any]:
        """Like :meth:`submit`, for a caller on an event loop: returns an asyncio future.

        Same durability contract; the difference is delivery: all writes of one
        batch awaited on the same loop are settled by a single thread-safe call,
        instead of one wake-up of the loop per write.
        """
        if self.before_submit is not None:
            self.before_submit()
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[Any] = loop.create_future()
        self._enqueue(_Pending(op, None, mutates, after, savepoint, (loop, afut), inserts_only=inserts_only))
        return afut

    def submit_group(self, ops: list[WriteOp], *, after: Callable[[Any, int], None] | None = None,
                     savepoint: bool = True, on_loop: bool = False,
                     bracket: tuple[WriteOp, WriteOp] | None = None, inserts_only: bool = False) -> list[Any]:
        """Queue ``ops`` as one group: the writer runs all of them in ONE transaction (one fsync).

        Each op keeps its own savepoint, LSN, result and failure, exactly as if submitted alone
        (an op that raises fails alone; the others commit); what the group adds is that the
        writer never splits it across two commits, whatever ``max_batch`` says, and never
        interleaves another writer's op inside it. Returns one future per op, in order:
        ``concurrent.futures.Future`` objects, or asyncio futures with ``on_loop=True`` (call it
        from the running loop, as :meth:`submit_async`). ``bracket``: two ops run first and last
        in the group's transaction (no LSN, no future); if either fails, the whole commit fails
        and nothing of it is applied. ``inserts_only``: as :meth:`submit`'s, for every op.
        """
        items: list[_Pending] = []
        futures: list[Any] = []
        loop = asyncio.get_running_loop() if on_loop else None
        for op in ops:
            if loop is not None:
                afut: asyncio.Future[Any] = loop.create_future()
                items.append(_Pending(op, None, True, after, savepoint, (loop, afut),
                                      inserts_only=inserts_only))
                futures.append(afut)
            else:
                fut: Future[Any] = Future()
                items.append(_Pending(op, fut, True, after, savepoint, inserts_only=inserts_only))
                futures.append(fut)
        if items and bracket is not None:
            items.insert(0, _Pending(bracket[0], None, False, None, False, critical=True))
            items.append(_Pending(bracket[1], None, False, None, False, critical=True))
        if items:
            self._enqueue(items)
        return futures

    def _enqueue(self, item: _Pending | list[_Pending]) -> None:
        """Queue one write, starting the writer thread if it is not running.

        Why one lock: the writer decides to exit (``_loop``) under this lock and
        only when the queue is empty, and this put happens under it too. So
        either the running writer will see the item, or it has already left and
        the flag says so and a new writer starts here; there is never a queued
        write with no writer, and never two writers. The closed check shares the
        lock with ``close()``, so no write lands behind the stop sentinel.
        """
        with self._submit_lock:
            if self._closed:
                raise StorageError(f"space storage at {self.dir} is closed")
            if self.broken is not None:
                raise StorageError(f"space storage at {self.dir} cannot write: {self.broken}")
            if not self._writer_running:
                # Started before the put: if no thread can be started (the process is at its
                # thread limit) the write is refused, retriably, instead of queued for nobody.
                # The new writer cannot leave before the put: leaving takes this lock.
                thread = threading.Thread(target=self._run, name=f"engram-writer-{self.dir.name}",
                                          daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:
                    raise StorageUnavailable(f"cannot start the writer of space {self.dir.name!r}: {exc}",
                                             details={"memory_space_id": self.dir.name}) from exc
                self._thread = thread
                self._writer_running = True
            self._queue.put(item)
            self._inflight += len(item) if isinstance(item, list) else 1

    def _settled(self, n: int) -> None:
        """``n`` writes are done with this store. Called *before* their callers are answered:
        a caller that was just acknowledged must find the store idle (``busy`` False), or the
        unloader would take the space it is about to use again for busy and refuse to make room
        (a spurious SPACE_CAPACITY_EXHAUSTED)."""
        with self._submit_lock:
            self._inflight -= n

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.broken = f"writer thread failed: {exc!r}"
            log.exception("writer thread of %s died", self.dir.name, extra={"memory_space": self.dir.name})
            err = StorageError(f"write to space {self.dir.name!r} failed: {self.broken}")
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
                for one in (item if isinstance(item, list) else [item] if item is not None else []):
                    self._settled(1)
                    one.fail(err)

    def _loop(self) -> None:
        conn = self._writer
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                # Idle: leave, unless a write arrived between the timeout and the lock
                # (see _enqueue for why this check and the put share the lock).
                with self._submit_lock:
                    if self._queue.empty():
                        self._writer_running = False
                        return
                continue
            if first is None:
                break
            # A group (submit_group) is taken whole, even past max_batch: its ops share a commit.
            batch = list(first) if isinstance(first, list) else [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, list):
                    batch.extend(item)
                else:
                    batch.append(item)
            self._commit_batch(conn, self._defer_fts_of_runs(batch))
            if stop:
                break

    def _defer_fts_of_runs(self, batch: list[_Pending]) -> list[_Pending]:
        """``batch`` with every run of 2 or more consecutive ``inserts_only`` ops bracketed by
        :meth:`defer_fts` / :meth:`index_deferred_fts` (critical: if either fails, the commit
        fails whole). Only runs of inserts: an op that updates or deletes a memory needs the full
        text of the rows before it in place (its trigger deletes their entries)."""
        out: list[_Pending] = []
        added = 0
        i = 0
        while i < len(batch):
            j = i
            while j < len(batch) and batch[j].inserts_only:
                j += 1
            if j - i >= 2:
                out.append(_Pending(self.defer_fts, None, False, None, False, critical=True))
                out.extend(batch[i:j])
                out.append(_Pending(self.index_deferred_fts, None, False, None, False, critical=True))
                added += 2
                i = j
            else:
                out.append(batch[i])
                i += 1
        if added:
            with self._submit_lock:
                self._inflight += added  # settled with the rest of the batch
        return out

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            try:
                results, lsn = self._run_ops(conn, batch, trust_flags=True)
            except _NeedsSavepoints:
                # An op that promised to fail atomically left changes behind:
                # redo the whole batch with a savepoint around every op.
                conn.execute("ROLLBACK")
                results, lsn = self._run_ops(conn, batch, trust_flags=False)
            if lsn != self.last_lsn:
                self._meta_set(conn, "last_lsn", str(lsn))
                self._trim_events(conn, lsn)
            conn.execute("COMMIT")  # synchronous=FULL: returns after the WAL is fsynced
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error as rb_exc:  # the batch has failed already; say so, then fail it
                log.error("rollback after failed commit in %s also failed: %s", self.dir.name, rb_exc,
                          extra={"memory_space": self.dir.name})
            log.error("group commit failed in %s: %s", self.dir.name, exc,
                      extra={"memory_space": self.dir.name})
            err = self.translate(exc, "write to")
            self._settled(len(batch))
            for item in batch:
                item.fail(err)
            return
        self.last_lsn = lsn
        self.commits += 1
        self.ops_committed += sum(1 for item in batch if not item.critical)  # bracket ops are no writes
        # Post-commit effects and acknowledgements run on the completer thread, in
        # commit order, so this thread can start the next batch (and its fsync)
        # at once. A caller's future still resolves only after its effects ran.
        # The completer is started and retired with the same protocol as the
        # writer (_enqueue), under its own lock: at most one runs, so batches are
        # acknowledged in commit order.
        with self._done_lock:
            self._done.put(results)
            if self._completer_running:
                return
            completer = threading.Thread(target=self._complete, name=f"engram-ack-{self.dir.name}",
                                         daemon=True)
            self._completer_running = True
            try:
                completer.start()
                self._completer = completer
                return
            except RuntimeError:  # no thread to be had: acknowledge here, still in commit order
                self._completer_running = False
                self._done.get_nowait()  # the queue held only this batch (no completer was running)
        log.warning("could not start the acknowledgement thread of %s; acknowledging inline", self.dir.name,
                    extra={"memory_space": self.dir.name})
        self._complete_batch(results)

    def _run_ops(self, conn: sqlite3.Connection, batch: list[_Pending],
                 trust_flags: bool) -> tuple[list[tuple[_Pending, Any, int, BaseException | None]], int]:
        results: list[tuple[_Pending, Any, int, BaseException | None]] = []
        lsn = self.last_lsn
        if conn.in_transaction:
            # A failed COMMIT whose ROLLBACK failed too (disk full, EMFILE) leaves the
            # transaction open; end it now, or every later BEGIN would fail forever.
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        for item in batch:
            item_lsn = lsn + 1 if item.mutates else lsn
            guarded = item.savepoint or not trust_flags
            if guarded:
                conn.execute("SAVEPOINT op")
            before = conn.total_changes
            try:
                res = item.op(conn, item_lsn)
            except BaseException as exc:
                if item.critical:
                    raise  # the whole commit fails (rolled back by _commit_batch): nothing half-applied
                if isinstance(exc, sqlite3.Error) and is_transient(exc):
                    # Disk full, I/O error...: retriable, and the space goes degraded until probed.
                    exc = self.translate(exc, "write to")
                if guarded:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                elif conn.total_changes != before:
                    raise _NeedsSavepoints() from exc
                results.append((item, None, 0, exc))
                continue
            if guarded:
                conn.execute("RELEASE op")
            if item.mutates:
                lsn = item_lsn
            results.append((item, res, item_lsn, None))
        return results, lsn

    def _complete(self) -> None:
        """The completer thread: apply post-commit effects, then resolve futures, batch by batch."""
        while True:
            try:
                results = self._done.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._done_lock:  # the same exit protocol as the writer's (see _enqueue)
                    if self._done.empty():
                        self._completer_running = False
                        return
                continue
            if results is None:
                return
            self._complete_batch(results)

    def _complete_batch(self, results: list[tuple[_Pending, Any, int, BaseException | None]]) -> None:
        """Apply the batch's post-commit effects, mark it settled (:meth:`_settled`), then answer
        its callers; settled exactly once, even if something here fails."""
        settled = False
        try:
            self._apply_effects(results)
            if not all(item.quiet or item.critical for item, *_ in results):
                hook = self.on_epoch
                if hook is not None:
                    try:
                        hook(self.epoch + 1)
                    except Exception:  # only copies' catching up depends on it: they reload instead
                        log.exception("sealing the changes of a commit failed in %s", self.dir.name,
                                      extra={"memory_space": self.dir.name})
                self.epoch += 1  # after the effects: a reader seeing it sees them too
            self._settled(len(results))
            settled = True
            self._answer(results)
        finally:
            if not settled:
                self._settled(len(results))

    def _apply_effects(self, results: list[tuple[_Pending, Any, int, BaseException | None]]) -> None:
        grouped_upto = 0  # results before this index had their GroupedEffect applied with their run
        for i, (item, res, item_lsn, exc) in enumerate(results):
            if exc is None and item.after is not None and i >= grouped_upto:
                try:
                    if isinstance(item.after, GroupedEffect):
                        # The run: this op and the successful ops right after it sharing
                        # the effect. All of it is applied before any of them is acknowledged.
                        end = i + 1
                        while (end < len(results) and results[end][0].after is item.after
                               and results[end][3] is None):
                            end += 1
                        grouped_upto = end
                        item.after.apply([(r[1], r[2]) for r in results[i:end]])
                    else:
                        item.after(res, item_lsn)
                except Exception:  # the write is durable; an in-memory effect failing is logged
                    log.exception("post-commit effect failed in %s", self.dir.name,
                                  extra={"memory_space": self.dir.name})

    def _answer(self, results: list[tuple[_Pending, Any, int, BaseException | None]]) -> None:
        # asyncio waiters are settled with one wake-up per loop per batch, not one per write.
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], BaseException | None, Any]]
        ] = {}
        for item, res, item_lsn, exc in results:
            if item.waiter is not None:
                by_loop.setdefault(item.waiter[0], []).append(
                    (item.waiter[1], exc, None if exc is not None else (res, item_lsn)))
                continue
            if item.future is None:
                if exc is not None and not isinstance(exc, EngramError):
                    log.warning("background write failed in %s: %s", self.dir.name, exc)
                continue
            # A caller may have cancelled its future (asyncio.wrap_future cancels the
            # concurrent future when the awaiting task is cancelled, e.g. a client
            # disconnect). Its write stands; only the delivery is skipped. Setting a
            # result on a cancelled future would raise and kill this thread.
            if item.future.done():
                continue
            try:
                if exc is not None:
                    item.future.set_exception(exc)
                else:
                    item.future.set_result((res, item_lsn))
            except InvalidStateError:  # cancelled between the check and the set
                pass
        for loop, items in by_loop.items():
            _settle_on(loop, items)

    def write(self, op: WriteOp, *, mutates: bool = True,
              after: Callable[[Any, int], None] | None = None, flush_first: bool = True) -> tuple[Any, int]:
        """Submit and wait: returns ``(result, lsn)`` once durable."""
        fut = self.submit(op, mutates=mutates, after=after, flush_first=flush_first)
        return fut.result()  # type: ignore[no-any-return]

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """Finish every queued write (durably), then close all connections."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            writer = self._thread if self._writer_running else None
            if writer is not None:
                self._queue.put(None)
        # A writer that is not running left an empty queue (see _enqueue); one that is
        # drains every queued write before it reaches the sentinel.
        if writer is not None:
            writer.join()
        with self._done_lock:
            completer = self._completer if self._completer_running else None
            if completer is not None:
                self._done.put(None)
        if completer is not None:
            completer.join()
        try:
            # Everything is already durable in the WAL; this only shortens the next open.
            self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint on close of %s failed: %s", self.dir.name, exc,
                        extra={"memory_space": self.dir.name})
        self._writer.close()
        self._close_readers()

    def _close_readers(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._readers.clear()

    def probe(self) -> None:
        """Raise if the store cannot open a connection and take the write lock now (heal check).

        Uses a connection of its own, so it runs beside the writer without touching its
        connection; ``BEGIN IMMEDIATE`` + ``ROLLBACK`` writes nothing.
        """
        if not os.access(self.path, os.W_OK) or not os.access(self.dir, os.W_OK):
            raise StorageUnavailable(f"{self.path} is not writable")
        free = shutil.disk_usage(self.dir).free
        if free < _PROBE_MIN_FREE:  # a write would only fail again: stay degraded, back off
            raise StorageUnavailable(f"only {free} bytes free on the disk holding {self.dir}")
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def private_reader(self) -> sqlite3.Connection:
        """A read-only connection the caller owns (and closes): for long scans that
        must be interruptible (``conn.interrupt()``) without touching shared readers."""
        conn = self._connect()
        conn.execute("PRAGMA query_only=ON")
        return conn

    def integrity_problem(self, conn: sqlite3.Connection | None = None) -> str | None:
        """``None`` if ``PRAGMA quick_check`` passes, else what it found.

        An interrupted check (``conn.interrupt()``) raises ``sqlite3.OperationalError``:
        that is not damage, and must not be reported as such.
        """
        try:
            rows = (conn or self.reader()).execute("PRAGMA quick_check").fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc).lower():
                raise
            return str(exc)
        except sqlite3.DatabaseError as exc:
            return str(exc)
        msgs = [str(r[0]) for r in rows]
        return None if msgs == ["ok"] else "; ".join(msgs[:5])

    def size_bytes(self) -> int:
        total = 0
        for p in self.dir.iterdir():
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        return total


def _statements(script: str) -> list[str]:
    """The statements of a schema script (triggers hold ';' inside BEGIN ... END)."""
    out: list[str] = []
    buf = ""
    for line in script.strip().splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _done_future() -> Future[Any]:
    f: Future[Any] = Future()
    f.set_result((None, 0))
    return f


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one, shared: json.dumps
# builds a new encoder on every call that passes options (it caches only the default one).


def dumps(value: Any) -> str:
    """Compact JSON (``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``)."""
    return _COMPACT.encode(value)


class SnapshotStore(SpaceStore):
    """A space's database read by another process (a read worker, engram.readpool): its reader
    connections only, never a writer. The process that owns the space keeps writing it; SQLite's
    WAL gives each read a consistent snapshot beside those writes. Every write raises."""

    def __init__(self, space_dir: Path) -> None:  # no super().__init__: that opens the writer
        self.dir = space_dir
        self.path = space_dir / self.DB_NAME
        if not self.path.is_file():
            raise StorageError(f"no database at {self.path}")
        self.durable = True
        self._local = threading.local()
        self._readers = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._inflight = 0
        self.epoch = 0
        self.on_epoch = None
        self.on_transient = None
        self.before_submit = None
        self.last_lsn = int(self.meta("last_lsn") or 0)

    def _enqueue(self, item: _Pending | list[_Pending]) -> None:
        raise StorageError(f"space storage at {self.dir} is open read-only here")

    def close(self) -> None:
        self._closed = True
        self._close_readers()
