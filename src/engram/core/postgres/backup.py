"""Backup and restore of one space on PostgreSQL, in the SQLite backup's own file format (SPEC §11).

A backup file (``storage/backup.py``: a tar of ``manifest.json`` and ``space.db``) carries a
self-contained SQLite database of the space. On PostgreSQL the same file is made and read, so a
backup is portable: a PostgreSQL backup restores on a SQLite server and a SQLite backup restores
on a PostgreSQL one (how a space moves from the embedded default to PostgreSQL and back).

:func:`snapshot` reads the space in ONE transaction, ``REPEATABLE READ, READ ONLY``: every query
sees the same snapshot of the database, so the LSN, the rows and the event log agree with each
other while other servers keep writing. It writes them into an empty SQLite database created by
the SQLite store itself (``SpaceStore``: the same tables, triggers, full-text and metadata
indexes as any SQLite space), in one SQLite transaction; the triggers fill the full-text and
metadata indexes from the rows, exactly as on a SQLite server.

:func:`restore` writes a checked database (``storage.backup.unpack`` has verified its checksum,
integrity and counts) into PostgreSQL in ONE transaction: the space row, its meta, memories (and
their typed metadata rows), associations, beliefs and the event log. Every value is checked
against its column's type first; a file that passes the checksum can still have been written by
hand, and anything that does not fit is an :class:`~engram.errors.InvalidBackup` that rolls the
whole transaction back: nothing of a refused restore is ever visible. ``replace`` deletes the old
space inside that same transaction, so other servers see the old space or the new one, never a
mix and never none.

Identifiers. SQLite's ``rowid`` is a memory's insertion order (associations point at rowids).
PostgreSQL's twin is ``memories.created_lsn`` when the schema has it (migration 3): then
``rowid = created_lsn`` both ways, exactly. Without it (older schema) the rows are numbered
1, 2, ... in list order ``(created_at, id)``. Either way a rowid never exceeds the space's
last LSN (each insert took its own LSN), so a restored space's later writes sort after them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg.types.json import Jsonb

from ...errors import InvalidBackup
from ...storage.backup import facts
from ...storage.sqlite_store import SpaceStore, dumps
from . import queries as q
from .connection import PostgresDatabase, SpaceTx
from .schema import MAX_INDEXED_DIMENSION
from .store import PostgresStore, _meta_class

#: Meta keys each side writes itself (from the space row, or the SQLite store's own).
OWN_META = frozenset({"schema_version", "last_lsn", "dimension", "created_at", "metadata_index"})
#: Meta of a re-embedding in progress on SQLite: its vectors are not carried (see docs/backup.md).
SKIPPED_META = frozenset({"reembed"})
EMBEDDER_KEY = "embedder"

#: memories' columns as both stores name them (SQLite adds ``rowid``, PostgreSQL ``space_id``).
MEMORY_COLUMNS = (
    "id", "kind", "content", "embedding", "confidence", "created_at", "last_access", "access_count",
    "activation", "decay_rate", "tags", "memory_type", "metadata", "suppressed", "lsn", "ep_when", "what",
    "where_location", "who", "why", "how", "emotional_valence", "importance", "consolidation_state",
    "expires_at",
)
BELIEF_COLUMNS = ("id", "content", "centroid", "strength", "schema_confidence", "citations", "created_at",
                  "updated_at", "run_id", "lsn")
EVENT_COLUMNS = ("lsn", "seq", "type", "memory_id", "data", "ts")
FETCH = 2000  # rows per round trip of a server-side cursor
BATCH = 500  # rows per executemany of a restore (pipelined: one round trip, not one per row)


# -- PostgreSQL -> file --------------------------------------------------------------------------
def has_column(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    """Whether ``engram.<table>.<column>`` exists (columns added by later migrations are optional)."""
    row = conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'engram' "
                       "AND table_name = %s AND column_name = %s", (table, column)).fetchone()
    return row is not None


@contextlib.contextmanager
def snapshot_tx(db: PostgresDatabase, space_id: str) -> Iterator[SpaceTx]:
    """One read-only REPEATABLE READ transaction on ``space_id``: every query sees one snapshot."""
    with db.pool.connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # before any read
        conn.execute(q.SET_SPACE, {"space": space_id})
        yield SpaceTx(conn, space_id)


def _stream(tx: SpaceTx, name: str, query: str) -> Iterator[tuple[Any, ...]]:
    """Rows of ``query`` through a server-side cursor (a big space is never whole in memory)."""
    with tx.conn.cursor(name=name) as cur:
        cur.itersize = FETCH
        cur.execute(query, {"space": tx.space_id})
        yield from cur


def _blob(vector: Any) -> bytes | None:
    """A stored halfvec as the SQLite store keeps vectors: float32 bytes."""
    if vector is None:
        return None
    return np.asarray(vector.to_numpy(), dtype=np.float32).tobytes()


def empty_space_db(dest: Path) -> None:
    """An empty space database at ``dest`` made by the SQLite store (its exact schema)."""
    work = dest.parent / f"{dest.name}.d"
    store = SpaceStore(work, durable=False)
    try:
        store.close()
        (work / SpaceStore.DB_NAME).rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def snapshot(db: PostgresDatabase, space_id: str, dest: Path,
             default_embedder: dict[str, Any] | None) -> dict[str, Any]:
    """Write space ``space_id`` as a SQLite space database at ``dest``; returns its facts
    (``storage.backup.facts``: LSN, counts, dimension, embedder). Raises LookupError if the space
    does not exist. ``default_embedder`` is recorded when the space has no embedder of its own
    (a PostgreSQL space embeds with its server's default)."""
    empty_space_db(dest)
    out = sqlite3.connect(dest, isolation_level=None)
    try:
        out.execute("PRAGMA journal_mode=DELETE")
        out.execute("BEGIN")
        with snapshot_tx(db, space_id) as tx:
            space = tx.one("SELECT created_at, dimension, last_lsn FROM engram.spaces "
                           "WHERE space_id = %(space)s")
            if space is None:
                raise LookupError(space_id)
            created_at, dimension, last_lsn = float(space[0]), space[1], int(space[2])
            own_embedder = None  # the space's own embedder (migration 4), else the server's default
            if has_column(tx.conn, "spaces", "embedder"):
                chosen = tx.one("SELECT embedder FROM engram.spaces WHERE space_id = %(space)s")
                own_embedder = None if chosen is None or chosen[0] is None else str(chosen[0])
            meta: dict[str, str] = {str(k): str(v) for k, v in tx.execute(
                "SELECT key, value FROM engram.space_meta WHERE space_id = %(space)s")}
            ordered = has_column(tx.conn, "memories", "created_lsn")
            order = "created_lsn" if ordered else "created_at, id"
            rowids: dict[str, int] = {}
            cols = ", ".join(MEMORY_COLUMNS)
            marks = ", ".join("?" * (len(MEMORY_COLUMNS) + 1))
            insert = f"INSERT INTO memories (rowid, {cols}) VALUES ({marks})"
            query = (f"SELECT {cols}{', created_lsn' if ordered else ''} FROM engram.memories "
                     f"WHERE space_id = %(space)s ORDER BY {order}")
            for n, row in enumerate(_stream(tx, "engram_backup_memories", query), start=1):
                values = dict(zip(MEMORY_COLUMNS, row, strict=False))
                rowid = int(row[len(MEMORY_COLUMNS)]) if ordered else n
                rowids[str(values["id"])] = rowid
                values["embedding"] = _blob(values["embedding"])
                values["tags"] = dumps(values["tags"])
                values["metadata"] = dumps(values["metadata"])
                values["suppressed"] = int(bool(values["suppressed"]))
                out.execute(insert, (rowid, *(values[c] for c in MEMORY_COLUMNS)))
            for s, t, strength, kind, created, updated, lsn in tx.execute(
                    "SELECT source_id, target_id, strength, kind, created_at, updated_at, lsn "
                    "FROM engram.associations WHERE space_id = %(space)s"):
                out.execute("INSERT INTO associations (source, target, strength, kind, created_at, "
                            "updated_at, lsn) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (rowids[s], rowids[t], strength, kind, created, updated, lsn))
            for row in tx.execute(f"SELECT {', '.join(BELIEF_COLUMNS)} FROM engram.beliefs "
                                  "WHERE space_id = %(space)s ORDER BY id"):
                b = dict(zip(BELIEF_COLUMNS, row, strict=True))
                b["centroid"] = _blob(b["centroid"])
                b["citations"] = dumps(b["citations"])
                out.execute(f"INSERT INTO beliefs ({', '.join(BELIEF_COLUMNS)}) VALUES "
                            f"({', '.join('?' * len(BELIEF_COLUMNS))})", tuple(b[c] for c in BELIEF_COLUMNS))
            for lsn, seq, type_, mid, data, ts in _stream(
                    tx, "engram_backup_events", f"SELECT {', '.join(EVENT_COLUMNS)} FROM engram.events "
                    "WHERE space_id = %(space)s ORDER BY lsn, seq"):
                out.execute("INSERT INTO events (lsn, seq, type, memory_id, data, ts) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (lsn, seq, type_, mid, dumps(data), ts))
        own = {"last_lsn": str(last_lsn), "created_at": repr(created_at)}
        if dimension is not None:
            own["dimension"] = str(int(dimension))
        if own_embedder is not None:
            own[EMBEDDER_KEY] = own_embedder
        elif EMBEDDER_KEY not in meta and default_embedder is not None:
            own[EMBEDDER_KEY] = dumps({**default_embedder, "explicit": False})
        for key, value in {**{k: v for k, v in meta.items() if k not in OWN_META}, **own}.items():
            out.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        out.execute("COMMIT")
        found = facts(out)
    finally:
        out.close()
    with open(dest, "rb+") as f:
        os.fsync(f.fileno())
    return found


# -- file -> PostgreSQL --------------------------------------------------------------------------
def _bad(what: str) -> InvalidBackup:
    return InvalidBackup(f"the backup's database holds {what}: it was not written by Engram, or was altered")


def _text(v: Any, name: str, *, null: bool = False) -> str | None:
    if v is None and null:
        return None
    if not isinstance(v, str) or "\x00" in v:
        raise _bad(f"a {name} that is not text ({type(v).__name__})")
    return v


def _num(v: Any, name: str, *, null: bool = False) -> float | None:
    if v is None and null:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        raise _bad(f"a {name} that is not a finite number ({v!r:.40})")
    return float(v)


def _int(v: Any, name: str, low: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v < 1 << 63:
        raise _bad(f"a {name} that is not an integer of at least {low} ({v!r:.40})")
    return v


def _json(v: Any, name: str, kind: type) -> Any:
    try:
        value = json.loads(_text(v, name) or "")
    except ValueError:
        raise _bad(f"a {name} that is not JSON") from None
    if not isinstance(value, kind):
        raise _bad(f"a {name} that is not a JSON {kind.__name__}")
    return value


def _vector(v: Any, name: str, dim: int | None) -> HalfVector | None:
    if v is None:
        return None
    if not isinstance(v, bytes) or not v or len(v) % 4:
        raise _bad(f"a {name} that is not float32 bytes")
    vec = np.frombuffer(v, dtype=np.float32)
    if dim is not None and vec.shape[0] != dim:
        raise _bad(f"a {name} of {vec.shape[0]} dimensions in a space of dimension {dim}")
    if not np.isfinite(vec).all() or float(np.abs(vec).max()) > 65504.0:
        raise _bad(f"a {name} with values PostgreSQL's halfvec cannot hold (non-finite or beyond 65504)")
    return HalfVector(vec)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}


def _meta(src: sqlite3.Connection) -> dict[str, str]:
    rows = src.execute("SELECT key, value FROM meta")
    return {str(k): _text(v, f"meta value of {k!r}") or "" for k, v in rows}


def read_meta(db_path: Path) -> dict[str, str]:
    """The ``meta`` table of a checked space database (what a caller may refuse on, before writing)."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return _meta(src)
    finally:
        src.close()


def restore(store: PostgresStore, space_id: str, db_path: Path, *, replace: bool,
            embedder: str | None = None) -> bool:
    """Write the checked space database at ``db_path`` as space ``space_id`` in one transaction;
    returns True if an existing space was replaced. Raises ``FileExistsError`` if the space exists
    and not ``replace``, :class:`InvalidBackup` if any row does not fit (nothing is written).
    ``embedder``: the restored space's own embedder record (``spaces.embedder``; None: the
    server's default)."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        with store.db.space(space_id) as tx:
            try:
                return _restore(store, tx, src, replace, embedder)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                # a value the checks above let through but PostgreSQL refuses: the file's fault
                raise _bad(f"rows PostgreSQL refuses ({exc.__class__.__name__}: {str(exc).strip()[:200]})"
                           ) from None
            except sqlite3.Error as exc:  # a table or column the SQLite store always has is missing
                raise _bad(f"tables that are not a space's ({exc})") from None
    finally:
        src.close()


_INSERT_SPACE = ("INSERT INTO engram.spaces (space_id, created_at, dimension, last_lsn) "
                 "VALUES (%(space)s, %(created_at)s, %(dimension)s, %(last_lsn)s)")


def _restore(store: PostgresStore, tx: SpaceTx, src: sqlite3.Connection, replace: bool,
             embedder: str | None) -> bool:
    meta = _meta(src)
    try:
        last_lsn = int(meta.get("last_lsn", "0"))
        dimension = int(meta["dimension"]) if meta.get("dimension") else None
        created_at = float(meta.get("created_at", "0") or 0)
    except ValueError:
        raise _bad("a last_lsn, dimension or created_at in meta that is not a number") from None
    if dimension is not None and not 1 <= dimension <= MAX_INDEXED_DIMENSION:
        raise _bad(f"dimension {dimension} (PostgreSQL spaces take 1..{MAX_INDEXED_DIMENSION})")
    if not math.isfinite(created_at) or last_lsn < 0:
        raise _bad("a negative last_lsn or a non-finite created_at")
    existing = tx.one("SELECT 1 FROM engram.spaces WHERE space_id = %(space)s FOR UPDATE") is not None
    if existing:
        if not replace:
            raise FileExistsError(tx.space_id)
        # Same transaction as the inserts below: other servers see the old space until the commit,
        # then the new one; the cascade takes every row of the old space with it.
        tx.execute(q.DELETE_SPACE)
    counted = has_column(tx.conn, "spaces", "memory_rows")
    row = {"created_at": created_at, "dimension": dimension, "last_lsn": last_lsn}
    if tx.one(_INSERT_SPACE + " ON CONFLICT (space_id) DO NOTHING RETURNING space_id", row) is None:
        # Created meanwhile by a transaction that committed after our check (a restore or create
        # through another server): ON CONFLICT waited for it. Not ours to replace unless asked.
        if not replace:
            raise FileExistsError(tx.space_id)
        tx.execute(q.DELETE_SPACE)
        existing = True
        tx.execute(_INSERT_SPACE, row)
    for key, value in meta.items():
        if key not in OWN_META and key not in SKIPPED_META:
            tx.execute(q.SET_META, {"key": key, "value": value})
    if embedder is not None:
        tx.execute("UPDATE engram.spaces SET embedder = %(embedder)s WHERE space_id = %(space)s",
                   {"embedder": embedder})
    ids = _memories(store, tx, src, dimension, last_lsn, has_column(tx.conn, "memories", "created_lsn"))
    if counted:
        tx.execute("UPDATE engram.spaces SET memory_rows = %(n)s WHERE space_id = %(space)s",
                   {"n": len(ids)})
    if has_column(tx.conn, "spaces", "memory_bytes"):
        tx.execute(q.RECOUNT_BYTES)
    if has_column(tx.conn, "spaces", "next_expiry"):
        tx.execute(q.SETTLE_NEXT_EXPIRY)  # the restored memories' soonest expiry: every server sweeps them
    edges = _Batch(tx)
    for s, t, strength, kind, created, updated, lsn in src.execute(
            "SELECT source, target, strength, kind, created_at, updated_at, lsn FROM associations"):
        if s not in ids or t not in ids:
            raise _bad("an association whose memory is not in the backup")
        edges.add("INSERT INTO engram.associations (space_id, source_id, target_id, strength, kind, "
                   "created_at, updated_at, lsn) VALUES (%(space)s, %(s)s, %(t)s, %(w)s, %(kind)s, %(c)s, "
                   "%(u)s, %(lsn)s)",
                   {"s": ids[s], "t": ids[t], "w": _num(strength, "association strength"),
                    "kind": _text(kind, "association kind"), "c": _num(created, "association time"),
                    "u": _num(updated, "association time"), "lsn": _int(lsn, "association LSN")})
    for row in src.execute(f"SELECT {', '.join(BELIEF_COLUMNS)} FROM beliefs"):
        b = dict(zip(BELIEF_COLUMNS, row, strict=True))
        tx.execute(
            "INSERT INTO engram.beliefs (space_id, id, content, centroid, strength, schema_confidence, "
            "citations, created_at, updated_at, run_id, lsn) VALUES (%(space)s, %(id)s, %(content)s, "
            "%(centroid)s, %(strength)s, %(conf)s, %(citations)s, %(created)s, %(updated)s, %(run)s, "
            "%(lsn)s)",
            {"id": _text(b["id"], "belief id"), "content": _text(b["content"], "belief content"),
             "centroid": None if b["centroid"] in (None, b"") else _vector(b["centroid"], "belief centroid",
                                                                         None),
             "strength": _num(b["strength"], "belief strength"),
             "conf": _num(b["schema_confidence"], "belief confidence"),
             "citations": Jsonb(_json(b["citations"], "belief's citations", list)),
             "created": _num(b["created_at"], "belief time"), "updated": _num(b["updated_at"], "belief time"),
             "run": _text(b["run_id"], "belief run id"), "lsn": _int(b["lsn"], "belief LSN")})
    edges.flush()
    events = _Batch(tx)
    if "events" in {str(r[0]) for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
        for lsn, seq, type_, mid, data, ts in src.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY lsn, seq"):
            events.add(q.INSERT_EVENT, {"lsn": _int(lsn, "event LSN"), "seq": _int(seq, "event seq"),
                                        "type": _text(type_, "event type"),
                                        "memory_id": _text(mid, "event memory id", null=True),
                                        "data": Jsonb(_json(data, "event's data", dict)),
                                        "ts": _num(ts, "event time")})
    events.flush()
    if store.vector_index and dimension is not None:
        tx.execute(q.ENSURE_VECTOR_INDEX)
    if last_lsn:
        store.notify(tx, last_lsn)  # wake other servers' feeds (a replaced space's watchers)
    return existing


class _Batch:
    """Inserts of one transaction, sent ``BATCH`` rows at a time with ``executemany``. Statements
    flush in the order they were first added (a memory before its metadata rows: foreign keys)."""

    def __init__(self, tx: SpaceTx) -> None:
        self.tx = tx
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.count = 0

    def add(self, query: str, params: dict[str, Any]) -> None:
        self.rows.setdefault(query, []).append({"space": self.tx.space_id, **params})
        self.count += 1
        if self.count >= BATCH:
            self.flush()

    def flush(self) -> None:
        with self.tx.conn.cursor() as cur:
            for query, rows in self.rows.items():
                cur.executemany(query, rows)
        self.rows, self.count = {}, 0


def _memories(store: PostgresStore, tx: SpaceTx, src: sqlite3.Connection, dimension: int | None,
              last_lsn: int, created_lsn: bool) -> dict[int, str]:
    """Insert every memory (and its typed metadata rows); returns rowid -> id."""
    have = _columns(src, "memories")
    cols = [c for c in MEMORY_COLUMNS if c in have]
    extra = ", created_lsn" if created_lsn else ""
    insert = (f"INSERT INTO engram.memories (space_id, {', '.join(MEMORY_COLUMNS)}{extra}) "
              "VALUES (%(space)s, " + ", ".join(f"%({c})s" for c in MEMORY_COLUMNS)
              + (", %(rowid)s)" if created_lsn else ")"))
    ids: dict[int, str] = {}
    batch = _Batch(tx)
    for row in src.execute(f"SELECT rowid, {', '.join(cols)} FROM memories ORDER BY rowid"):
        m = dict.fromkeys(MEMORY_COLUMNS)
        m.update(zip(cols, row[1:], strict=True))
        rowid = _int(row[0], "memory rowid", low=1)
        if created_lsn and rowid > max(last_lsn, 1):
            raise _bad(f"a memory rowid {rowid} beyond the space's last LSN {last_lsn}")
        mid = _text(m["id"], "memory id")
        if not mid:
            raise _bad("a memory with an empty id")
        metadata = _json(m["metadata"] if m["metadata"] is not None else "{}", "memory's metadata", dict)
        tags = _json(m["tags"] if m["tags"] is not None else "[]", "memory's tags", list)
        params = {
            "rowid": rowid, "id": mid, "kind": _text(m["kind"], "memory kind"),
            "content": _text(m["content"], "memory content"),
            "embedding": _vector(m["embedding"], "memory embedding", dimension),
            "tags": Jsonb(tags), "metadata": Jsonb(metadata),
            "memory_type": _text(m["memory_type"], "memory type"),
            "suppressed": bool(_int(m["suppressed"] or 0, "suppressed flag")),
            "lsn": _int(m["lsn"], "memory LSN"),
            "access_count": _int(m["access_count"] or 0, "access count"),
        }
        for c in ("confidence", "created_at", "last_access", "activation", "decay_rate"):
            params[c] = _num(m[c], f"memory {c}")
        for c in ("ep_when", "emotional_valence", "importance", "expires_at"):
            params[c] = _num(m[c], f"memory {c}", null=True)
        for c in ("what", "where_location", "who", "why", "how", "consolidation_state"):
            params[c] = _text(m[c], f"memory {c}", null=True)
        if params["embedding"] is not None and dimension is None:
            raise _bad("a memory embedding in a space without a dimension")
        batch.add(insert, params)
        for key, value in metadata.items():
            vtype, vnum, vtext = _meta_class(value)
            batch.add(q.INSERT_META, {"memory_id": mid, "mkey": key, "vtype": vtype, "vnum": vnum,
                                      "vtext": vtext})
        ids[rowid] = mid
    batch.flush()
    return ids
