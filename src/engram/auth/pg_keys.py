"""API keys in PostgreSQL (``engram.api_keys``): one key set for every server on the database.

With ``backend = "postgres"`` a key created or revoked through any server, or by ``engram key``
on the database, holds on every server: each server keeps the table in memory (as the file store
keeps ``keys.json``) and a poller thread re-reads it every :data:`POLL_SECONDS`. A revocation
made elsewhere is therefore refused here within one poll (``on_revoke`` callbacks fire then, so
open streams end too); one made here holds at once. A token not in memory is looked up in the
table (one indexed row, by the token's hash) before it is refused, so a key made on another
server works on its first request. Those look-ups are bounded: at most :data:`UNKNOWN_LOOKUPS`
per poll interval per server. Past that, an unknown token is refused without a query until the
interval ends, so a flood of made-up tokens costs the database and the event loop a fixed
amount; a key made elsewhere is then accepted from the next poll at the latest.

Only the token's SHA-256 is stored, as in the file store. The audit log and ``admin.key`` stay in
the server's own data dir (``self.dir``). If the database cannot be read, the last key set read
stays in force (logged); writes fail with the storage error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg

from ..errors import StorageError, StorageUnavailable
from .keys import KeyRecord, KeyStore, Role

log = logging.getLogger("engram.auth.pg")

#: How often each server re-reads the key table: the bound on how long a key revoked on another
#: server (or by ``engram key`` on the database) is still accepted here (docs/scale-out.md).
POLL_SECONDS = 0.25
#: Look-ups of tokens not in memory per poll interval (see the module docstring).
UNKNOWN_LOOKUPS = 32
_RETRY = "Retry shortly; check the database if it persists."

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]

_COLUMNS = "key_id, name, role, spaces, created_at, expires_at, revoked_at, token_sha256"
_SELECT = f"SELECT {_COLUMNS} FROM engram.api_keys"
_SELECT_ONE = f"{_SELECT} WHERE token_sha256 = %(digest)s"
# New keys insert; a revocation updates; the first revocation time wins (two servers may race).
_UPSERT = (f"INSERT INTO engram.api_keys ({_COLUMNS}) VALUES "
           "(%(key_id)s, %(name)s, %(role)s, %(spaces)s, %(created_at)s, %(expires_at)s, %(revoked_at)s, "
           "%(token_sha256)s) ON CONFLICT (key_id) DO UPDATE SET "
           "revoked_at = coalesce(engram.api_keys.revoked_at, EXCLUDED.revoked_at)")


# The first admin key: two servers starting at once on a table with no usable admin key would
# each see none and each make one. One transaction holds this advisory lock (two int4 keys: a key
# space apart from the migrator's and consolidation's single bigint keys) across the check and
# the insert, so the second server's check waits for the first's commit and finds its key.
_FIRST_ADMIN_LOCK = "SELECT pg_advisory_xact_lock(1701737074, 1)"  # 1701737074: "engr" in ASCII
_ACTIVE_ADMIN = ("SELECT 1 FROM engram.api_keys WHERE role = 'admin' AND revoked_at IS NULL "
                 "AND (expires_at IS NULL OR expires_at > %(now)s) LIMIT 1")


def _record(row: tuple[Any, ...]) -> KeyRecord:
    key_id, name, role, spaces, created_at, expires_at, revoked_at, digest = row
    return KeyRecord(key_id=key_id, name=name, role=Role(role),
                     spaces=None if spaces is None else tuple(spaces), created_at=float(created_at),
                     expires_at=None if expires_at is None else float(expires_at),
                     revoked_at=None if revoked_at is None else float(revoked_at), token_sha256=digest)


class PgKeyStore(KeyStore):
    """:class:`KeyStore` on ``engram.api_keys``; ``connect()`` yields a connection (a pool's, or one)."""

    def __init__(self, data_root: Path, connect: Connect, *,
                 poll_seconds: float | None = POLL_SECONDS) -> None:
        self._connect = connect
        self._stop = threading.Event()
        self._window = POLL_SECONDS if poll_seconds is None else poll_seconds
        self._window_start = 0.0
        self._window_lookups = 0
        super().__init__(data_root)  # reads the table once (KeyStore.__init__ -> _reload(force=True))
        self._poller: threading.Thread | None = None
        if poll_seconds is not None:
            self._poller = threading.Thread(target=self._poll, args=(poll_seconds,), name="engram-keys-poll",
                                            daemon=True)
            self._poller.start()

    def _poll(self, every: float) -> None:
        failing = False
        while not self._stop.wait(every):
            try:
                self._reload(force=True)
            except (psycopg.Error, StorageError) as exc:
                if not failing:
                    log.warning("cannot re-read API keys from PostgreSQL (%s); the last key set read "
                                "stays in force", type(exc).__name__)
                failing = True
            else:
                if failing:
                    log.info("API keys are read from PostgreSQL again")
                failing = False

    def _reload(self, force: bool = False) -> None:
        # Between polls the in-memory set is used; force (a write, the poller)
        # reads the table. Under the lock, so a read started before a write never lands after it.
        if not force:
            return
        with self._lock:
            rows = self._read(_SELECT, {})
            records = {rec.key_id: rec for rec in map(_record, rows)}
            newly_revoked = [k for k, r in records.items()
                             if r.revoked_at is not None and k in self._records
                             and self._records[k].revoked_at is None]
            self._records = records
            self._by_hash = {r.token_sha256: r for r in records.values()}
        for key_id in newly_revoked:
            self._fire(key_id)

    def _read(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            with self._connect() as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"cannot read API keys from PostgreSQL: {type(exc).__name__}",
                                     suggestion=_RETRY) from exc
        except psycopg.Error as exc:
            raise StorageError(f"cannot read API keys from PostgreSQL: {type(exc).__name__}") from exc

    def _unknown(self, digest: str) -> KeyRecord | None:
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self._window:
                self._window_start, self._window_lookups = now, 0
            if self._window_lookups >= UNKNOWN_LOOKUPS:
                return None  # a flood of unknown tokens: refused without a query until the window ends
            self._window_lookups += 1
        rows = self._read(_SELECT_ONE, {"digest": digest})
        if not rows:
            return None
        rec = _record(rows[0])
        with self._lock:
            self._records[rec.key_id] = rec
            self._by_hash[rec.token_sha256] = rec
        return rec

    def create_first_admin(self, name: str) -> tuple[KeyRecord, str] | None:
        """:meth:`KeyStore.create_first_admin` across every server on the database: the check for
        a usable admin key and the insert are one transaction under an advisory lock."""
        rec, token = self._new(name, Role.admin, None, None)
        with self._lock:
            made = self._write(rec, first_admin=True)
            self._reload(force=True)  # the key another server made first, or ours
        return (rec, token) if made else None

    def _put(self, rec: KeyRecord) -> None:
        self._write(rec)
        self._records[rec.key_id] = rec
        self._by_hash = {r.token_sha256: r for r in self._records.values()}

    def _write(self, rec: KeyRecord, *, first_admin: bool = False) -> bool:
        """Insert or revoke ``rec``; with ``first_admin``, only if no usable admin key exists
        (returns whether it was written)."""
        params = {**rec.to_json(), "role": rec.role.value,
                  "spaces": None if rec.spaces is None else list(rec.spaces)}
        try:
            with self._connect() as conn, conn.transaction():
                if first_admin:
                    conn.execute(_FIRST_ADMIN_LOCK)
                    if conn.execute(_ACTIVE_ADMIN, {"now": time.time()}).fetchone() is not None:
                        return False
                conn.execute(_UPSERT, params)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"cannot write the API key to PostgreSQL: {type(exc).__name__}",
                                     suggestion=_RETRY) from exc
        except psycopg.Error as exc:
            raise StorageError(f"cannot write the API key to PostgreSQL: {type(exc).__name__}") from exc
        return True

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(timeout=5)
