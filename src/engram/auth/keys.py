"""API keys: roles, principals and the key store under ``<data_root>/_system/``.

A key is an opaque token ``egk_`` + 43 url-safe characters (32 random bytes).
Only its SHA-256 is stored, in ``keys.json`` (mode 0600, replaced atomically).
The token is shown once, at creation, and never logged, stored or echoed.

The file is re-read whenever its (inode, size, mtime) changes, so keys created
or revoked by an offline ``engram key`` command or another process are seen
without a restart. Revocation and expiry are checked on every authentication;
``on_revoke`` callbacks let open streams end at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from ..errors import InvalidInput, KeyNotFound, Unauthenticated
from ..spaces.ids import MemorySpaceId

TOKEN_PREFIX = "egk_"
_TOKEN_BYTES = 32
# egk_ + the url-safe base64 of >= 32 bytes (43+ characters); anything else is malformed.
_TOKEN_RE = re.compile(r"egk_[A-Za-z0-9_-]{43,128}")
SYSTEM_DIR = "_system"
KEYS_FILE = "keys.json"
ADMIN_KEY_FILE = "admin.key"
_RECHECK_SECONDS = 0.2


class Role(StrEnum):
    admin = "admin"
    writer = "writer"
    reader = "reader"


class Action(StrEnum):
    read = "read"  # data-plane reads and streams
    write = "write"  # data-plane writes
    admin = "admin"  # space create/delete/restore/reembed, keys, /metrics, per-space health


_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.admin: frozenset(Action),
    Role.writer: frozenset({Action.read, Action.write}),
    Role.reader: frozenset({Action.read}),
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: one key's id, role, spaces (None = all) and expiry."""

    key_id: str
    name: str
    role: Role
    spaces: frozenset[str] | None
    expires_at: float | None = None

    ANONYMOUS: ClassVar[Principal]

    def covers(self, space_id: str) -> bool:
        return self.spaces is None or space_id in self.spaces

    def allows(self, action: Action) -> bool:
        return action in _ALLOWED[self.role]

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at


Principal.ANONYMOUS = Principal(key_id="-", name="anonymous", role=Role.admin, spaces=None)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    role: Role
    spaces: tuple[str, ...] | None  # None = all spaces
    created_at: float
    expires_at: float | None
    revoked_at: float | None = None
    token_sha256: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        """The record as shown to users: never the hash, never the token."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role.value,
            "spaces": None if self.spaces is None else list(self.spaces),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }

    def principal(self) -> Principal:
        return Principal(key_id=self.key_id, name=self.name, role=self.role,
                         spaces=None if self.spaces is None else frozenset(self.spaces),
                         expires_at=self.expires_at)

    def to_json(self) -> dict[str, Any]:
        out = self.public()
        out["token_sha256"] = self.token_sha256
        return out

    @staticmethod
    def from_json(raw: dict[str, Any]) -> KeyRecord:
        spaces = raw.get("spaces")
        return KeyRecord(
            key_id=str(raw["key_id"]), name=str(raw.get("name", "")), role=Role(raw["role"]),
            spaces=None if spaces is None else tuple(str(s) for s in spaces),
            created_at=float(raw["created_at"]),
            expires_at=None if raw.get("expires_at") is None else float(raw["expires_at"]),
            revoked_at=None if raw.get("revoked_at") is None else float(raw["revoked_at"]),
            token_sha256=str(raw["token_sha256"]),
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def system_dir(data_root: Path) -> Path:
    path = Path(data_root) / SYSTEM_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (readers never see half a file)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def validate_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput(f"role must be one of admin, writer, reader, got {role!r}",
                           example='{"name": "agent-7", "role": "writer", "spaces": ["agent-7"]}') from None


class KeyStore:
    """The keys of one data root. Thread-safe; shared by every transport of a server."""

    def __init__(self, data_root: Path, *, recheck_seconds: float = _RECHECK_SECONDS) -> None:
        self.dir = Path(data_root) / SYSTEM_DIR  # created on the first write, not here
        self.path = self.dir / KEYS_FILE
        self._lock = threading.RLock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, KeyRecord] = {}
        self._by_hash: dict[str, KeyRecord] = {}
        self._revoke_callbacks: list[Callable[[str], None]] = []
        self._checked_at = 0.0
        self._recheck = recheck_seconds
        self._reload(force=True)

    # -- file -------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self, force: bool = False) -> None:
        # Changes made through this store are in memory at once; the file is looked at again (a
        # stat) at most every _RECHECK_SECONDS for changes made by other processes.
        now = time.monotonic()
        if not force and now - self._checked_at < self._recheck:
            return
        self._checked_at = now
        stamp = self._file_stamp()
        if not force and stamp == self._stamp:
            return
        with self._lock:
            stamp = self._file_stamp()
            if not force and stamp == self._stamp:
                return
            records: dict[str, KeyRecord] = {}
            if stamp is not None:
                raw = json.loads(self.path.read_text())
                for item in raw.get("keys", []):
                    rec = KeyRecord.from_json(item)
                    records[rec.key_id] = rec
            newly_revoked = [k for k, r in records.items()
                             if r.revoked_at is not None and k in self._records
                             and self._records[k].revoked_at is None]
            self._records = records
            self._by_hash = {r.token_sha256: r for r in records.values()}
            self._stamp = stamp
        for key_id in newly_revoked:
            self._fire(key_id)

    def _save(self) -> None:
        system_dir(self.dir.parent)
        body = {"version": 1, "keys": [r.to_json() for r in self._records.values()]}
        write_private(self.path, json.dumps(body, indent=2) + "\n")
        self._stamp = self._file_stamp()
        self._by_hash = {r.token_sha256: r for r in self._records.values()}

    def _put(self, rec: KeyRecord) -> None:
        """Store ``rec`` (new, or revoked): the one write path (the PostgreSQL store overrides it)."""
        self._records[rec.key_id] = rec
        self._save()

    def close(self) -> None:
        """Nothing to release for the file store (the PostgreSQL store stops its poller)."""

    # -- management ---------------------------------------------------------------
    def create(self, name: str, role: Role | str, spaces: Iterable[str] | None = None,
               expires_in_seconds: float | None = None) -> tuple[KeyRecord, str]:
        """A new key and its token (the only time the token exists outside the caller)."""
        rec, token = self._new(name, role, spaces, expires_in_seconds)
        with self._lock:
            self._reload(force=True)
            self._put(rec)
        return rec, token

    def create_first_admin(self, name: str) -> tuple[KeyRecord, str] | None:
        """An admin key and its token if no usable admin key exists, else None (nothing made).

        The check and the write are one step: here under the store's lock (one server per data
        dir holds it); the PostgreSQL store makes them one transaction across servers."""
        rec, token = self._new(name, Role.admin, None, None)
        with self._lock:
            self._reload(force=True)
            if self._active_admin_in(self._records.values()):
                return None
            self._put(rec)
        return rec, token

    @staticmethod
    def _active_admin_in(records: Iterable[KeyRecord]) -> bool:
        now = time.time()
        return any(r.role is Role.admin and r.revoked_at is None
                   and (r.expires_at is None or r.expires_at > now) for r in records)

    def _new(self, name: str, role: Role | str, spaces: Iterable[str] | None,
             expires_in_seconds: float | None) -> tuple[KeyRecord, str]:
        role = validate_role(str(role))
        if not isinstance(name, str) or len(name) > 200:
            raise InvalidInput("name must be a string of at most 200 characters",
                               example='{"name": "agent-7", "role": "writer"}')
        space_ids: tuple[str, ...] | None = None
        if spaces is not None:
            space_ids = tuple(sorted({str(MemorySpaceId(s)) for s in spaces}))
        if expires_in_seconds is not None and (
                isinstance(expires_in_seconds, bool) or not isinstance(expires_in_seconds, (int, float))
                or not 0 < float(expires_in_seconds) < 100 * 365 * 86400):
            raise InvalidInput(
                f"expires_in_seconds must be a positive number of seconds, got {expires_in_seconds!r}",
                example='{"name": "ci", "role": "reader", "expires_in_seconds": 86400}')
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        now = time.time()
        rec = KeyRecord(
            key_id="key_" + secrets.token_hex(8), name=name, role=role, spaces=space_ids,
            created_at=now,
            expires_at=None if expires_in_seconds is None else now + float(expires_in_seconds),
            token_sha256=hash_token(token),
        )
        return rec, token

    def list(self) -> list[KeyRecord]:
        self._reload()
        with self._lock:
            return sorted(self._records.values(), key=lambda r: (r.created_at, r.key_id))

    def get(self, key_id: str) -> KeyRecord:
        self._reload()
        rec = self._records.get(key_id)
        if rec is None:
            raise KeyNotFound(f"API key {key_id!r} does not exist", details={"key_id": key_id})
        return rec

    def revoke(self, key_id: str) -> KeyRecord:
        with self._lock:
            self._reload(force=True)
            rec = self._records.get(key_id)
            if rec is None:
                raise KeyNotFound(f"API key {key_id!r} does not exist", details={"key_id": key_id})
            if rec.revoked_at is not None:
                return rec
            rec = KeyRecord(**{**rec.__dict__, "revoked_at": time.time()})
            self._put(rec)
        self._fire(key_id)
        return rec

    def has_active_admin(self) -> bool:
        return self._active_admin_in(self.list())

    # -- authentication -----------------------------------------------------------
    def authenticate(self, token: str | None) -> Principal:
        """The principal of ``token``, or :class:`Unauthenticated` (no key material in the error)."""
        if token is None or token == "":
            raise Unauthenticated("no API key was given", details={"reason": "missing"})
        if not _TOKEN_RE.fullmatch(token):
            raise Unauthenticated("the API key is malformed: expected egk_ followed by 43+ url-safe "
                                  "characters", details={"reason": "malformed"})
        self._reload()
        digest = hash_token(token)
        rec = self._by_hash.get(digest)
        if rec is None:  # perhaps made by another process a moment ago
            rec = self._unknown(digest)
        # The dict lookup is on a hash of the secret (which leaks nothing about the token);
        # the final equality is constant-time all the same.
        if rec is None or not hmac.compare_digest(rec.token_sha256, digest):
            hmac.compare_digest(digest, digest)  # same work either way
            raise Unauthenticated("the API key is not known to this server", details={"reason": "unknown"})
        if rec.revoked_at is not None:
            raise Unauthenticated(f"API key {rec.key_id} was revoked",
                                  details={"reason": "revoked", "key_id": rec.key_id})
        if rec.expires_at is not None and time.time() >= rec.expires_at:
            raise Unauthenticated(f"API key {rec.key_id} has expired",
                                  details={"reason": "expired", "key_id": rec.key_id})
        return rec.principal()

    def _unknown(self, digest: str) -> KeyRecord | None:
        """The key of a token not in memory, if another process made it meanwhile (a stat of the
        file, and a re-read when it changed)."""
        self._reload(force=True)
        return self._by_hash.get(digest)

    def still_valid(self, principal: Principal) -> str | None:
        """None while ``principal``'s key is usable, else why not ("revoked" / "expired")."""
        if principal.key_id == "-":
            return None
        self._reload()
        rec = self._records.get(principal.key_id)
        if rec is None or rec.revoked_at is not None:
            return "revoked"
        if rec.expires_at is not None and time.time() >= rec.expires_at:
            return "expired"
        return None

    # -- revocation fan-out ---------------------------------------------------------
    def on_revoke(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(key_id)`` whenever a key is revoked; returns a function that unregisters it."""
        with self._lock:
            self._revoke_callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._revoke_callbacks:
                    self._revoke_callbacks.remove(callback)
        return remove

    def _fire(self, key_id: str) -> None:
        with self._lock:
            callbacks = list(self._revoke_callbacks)
        for cb in callbacks:
            cb(key_id)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``15m``, ``90s`` or a bare number of seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise InvalidInput(f"expected a duration like 30d, 12h, 15m or 90s, got {text!r}",
                           example="--expires 30d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
    return float(m.group(1)) * unit
