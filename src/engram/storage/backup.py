"""The backup file of one memory space: write it, read it back, and refuse anything else.

A backup is an uncompressed POSIX tar with exactly two members, in this order:

    manifest.json   what the snapshot holds (format, space, LSN, counts, embedder)
                    and the SHA-256 and size of the database
    space.db        a self-contained SQLite database (rollback journal, no WAL):
                    a page-by-page copy made by SQLite's online backup API

Tar because every system can list and unpack it (``tar tf backup.engram``), it
streams (each member's size is in its header, so a server can send it with a
known ``Content-Length`` without building it on disk) and Python reads it with
the standard library. The database is not compressed: SQLite pages of float32
embeddings hardly compress, and a plain file can be checked and opened as is.

Reading a backup (:func:`unpack`) trusts nothing: the tar must hold exactly these
two regular files, the manifest must be a format this code knows (a newer
``format_version`` is refused, not guessed at), the database's size and SHA-256
must match the manifest, ``PRAGMA integrity_check`` must pass, and the LSN and
row counts read from the database must equal the manifest's. Only a file that
passes all of this is handed on to be installed; every refusal is an
:class:`~engram.errors.InvalidBackup` naming what was wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InvalidBackup
from .sqlite_store import SCHEMA_VERSION

FORMAT = "engram-space-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DB_NAME = "space.db"
BLOCK = 512
CHUNK = 1 << 20
COUNTED = ("memories", "episodes", "associations", "beliefs")

Progress = Callable[[int], None]
"""Called with the number of bytes just handled (for progress bars)."""


# -- snapshot -------------------------------------------------------------------
def snapshot(source: sqlite3.Connection, dest: Path) -> dict[str, Any]:
    """Copy the database behind ``source`` into ``dest`` consistently; returns its facts (:func:`facts`).

    ``Connection.backup`` with the default ``pages=-1`` copies every page in one step,
    inside one read transaction of ``source``: in WAL mode that is a snapshot as of its
    start, and the space's writer keeps committing beside it (a stepwise copy would
    restart whenever the writer commits, and could starve under steady writes).
    The copy leaves WAL mode so the file stands alone, and is fsynced before use.
    """
    dst = sqlite3.connect(dest, isolation_level=None)
    try:
        source.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        found = facts(dst)
    finally:
        dst.close()
    with open(dest, "rb+") as f:
        os.fsync(f.fileno())
    return found


def facts(conn: sqlite3.Connection) -> dict[str, Any]:
    """LSN, row counts and recorded settings of a space database (what a manifest promises)."""
    def meta(key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def count(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    dim = meta("dimension")
    embedder = meta("embedder")
    return {
        "last_lsn": int(meta("last_lsn") or 0),
        "schema_version": int(meta("schema_version") or 0),
        "dimension": int(dim) if dim else None,
        "embedder": json.loads(embedder) if embedder else None,
        "counts": {
            "memories": count("SELECT count(*) FROM memories"),
            "episodes": count("SELECT count(*) FROM memories WHERE kind = 'episode'"),
            "associations": count("SELECT count(*) FROM associations"),
            "beliefs": count("SELECT count(*) FROM beliefs"),
        },
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- writing --------------------------------------------------------------------
def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o600
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def archive_size(manifest: bytes, db_size: int) -> int:
    """The exact byte length of :func:`archive_chunks` (sent as Content-Length)."""
    return BLOCK + len(manifest) + len(_pad(len(manifest))) + BLOCK + db_size + len(_pad(db_size)) + 2 * BLOCK


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def archive_chunks(manifest: bytes, db_path: Path, mtime: float) -> Iterator[bytes]:
    """The backup file, chunk by chunk, read from ``db_path`` as it goes (never whole in memory)."""
    db_size = db_path.stat().st_size
    yield _header(MANIFEST_NAME, len(manifest), mtime) + manifest + _pad(len(manifest))
    yield _header(DB_NAME, db_size, mtime)
    sent = 0
    with open(db_path, "rb") as f:
        while chunk := f.read(CHUNK):
            sent += len(chunk)
            yield chunk
    if sent != db_size:  # nothing else writes the snapshot; a short read is a fault, not data
        raise OSError(f"snapshot {db_path} changed size while being sent ({sent} of {db_size} bytes)")
    yield _pad(db_size) + b"\0" * (2 * BLOCK)


# -- reading --------------------------------------------------------------------
def read_manifest(path: Path) -> dict[str, Any]:
    """The checked manifest of the backup at ``path`` (the database is not read)."""
    with _open_tar(path) as tar:
        manifest, _ = _members(tar)
        return manifest


def verify(path: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Check the backup at ``path`` (layout, manifest, the database's size and SHA-256); returns the manifest.

    What a client can check without opening the database (``engram space backup``
    runs it before renaming a downloaded file into place); :func:`unpack` checks more.
    """
    with _open_tar(path) as tar:
        manifest, member = _members(tar)
        _copy_db(tar, member, manifest, None, progress)
    return manifest


def unpack(path: Path, dest_db: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Check the backup at ``path`` completely and write its database to ``dest_db``; returns the manifest.

    On any refusal ``dest_db`` may hold a partial file: the caller unpacks into a
    staging directory it removes, never into a live space.
    """
    with _open_tar(path) as tar:
        manifest, member = _members(tar)
        with open(dest_db, "wb") as out:
            _copy_db(tar, member, manifest, out, progress)
            out.flush()
            os.fsync(out.fileno())
    _check_database(dest_db, manifest)
    return manifest


def _copy_db(tar: tarfile.TarFile, member: tarfile.TarInfo, manifest: dict[str, Any], out: BinaryIO | None,
             progress: Progress | None) -> None:
    """Read the database member (into ``out`` if given); its size and SHA-256 must match the manifest."""
    digest = hashlib.sha256()
    written = 0
    try:
        src = tar.extractfile(member)
        if src is None:
            raise InvalidBackup(f"{DB_NAME} in the backup is not a regular file")
        with src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidBackup(f"the backup is truncated or damaged: {exc}") from None
    expected = manifest["database"]
    if written != expected["bytes"]:
        raise InvalidBackup(f"the backup is truncated: {DB_NAME} has {written} bytes, the manifest says "
                            f"{expected['bytes']}")
    if digest.hexdigest() != expected["sha256"]:
        raise InvalidBackup(f"the backup's database does not match its checksum (sha256 "
                            f"{digest.hexdigest()}, manifest {expected['sha256']}): the file was damaged "
                            "or altered")


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(path, mode="r:") as tar:
            yield tar
    except tarfile.TarError as exc:
        raise InvalidBackup(f"not an Engram backup (expected a tar with {MANIFEST_NAME} and {DB_NAME}): "
                            f"{exc}") from None


def _members(tar: tarfile.TarFile) -> tuple[dict[str, Any], tarfile.TarInfo]:
    try:
        members = tar.getmembers()
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidBackup(f"the backup is truncated or damaged: {exc}") from None
    names = [m.name for m in members]
    if names != [MANIFEST_NAME, DB_NAME] or not all(m.isfile() for m in members):
        raise InvalidBackup(f"not an Engram backup: expected the members {[MANIFEST_NAME, DB_NAME]} as "
                            f"regular files, found {names[:5]}")
    if members[0].size > 1 << 20:
        raise InvalidBackup(f"{MANIFEST_NAME} is {members[0].size} bytes; a manifest is a few hundred")
    try:
        raw = tar.extractfile(members[0])
        manifest = json.load(io.BytesIO(raw.read() if raw is not None else b""))
    except (ValueError, tarfile.TarError, EOFError) as exc:
        raise InvalidBackup(f"the backup's {MANIFEST_NAME} is not valid JSON: {exc}") from None
    _check_manifest(manifest)
    return manifest, members[1]


def _check_manifest(m: Any) -> None:
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise InvalidBackup(f"not an Engram backup: the manifest's format is not {FORMAT!r}")
    version = m.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidBackup("the backup's manifest has no integer format_version")
    if version > FORMAT_VERSION:
        raise InvalidBackup(
            f"the backup has format version {version}, newer than this server reads ({FORMAT_VERSION})",
            suggestion="Restore it with the Engram version that made it (or a newer one).",
        )
    db = m.get("database")
    counts = m.get("counts")
    ok = (
        isinstance(db, dict) and isinstance(db.get("bytes"), int) and isinstance(db.get("sha256"), str)
        and isinstance(m.get("last_lsn"), int) and isinstance(m.get("schema_version"), int)
        and isinstance(counts, dict) and all(isinstance(counts.get(k), int) for k in COUNTED)
    )
    if not ok:
        raise InvalidBackup("the backup's manifest lacks database.bytes/sha256, last_lsn, schema_version "
                            f"or counts of {', '.join(COUNTED)}")
    if m["schema_version"] > SCHEMA_VERSION:
        raise InvalidBackup(
            f"the backup's database has storage schema {m['schema_version']}, newer than this server's "
            f"({SCHEMA_VERSION})", suggestion="Restore it with the Engram version that made it (or newer).")


def _check_database(db: Path, manifest: dict[str, Any]) -> None:
    """``integrity_check`` passes, and the database holds what the manifest says."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                raise InvalidBackup(f"the backup's database fails its integrity check: {'; '.join(rows[:3])}")
            found = facts(conn)
            ttl = conn.execute("SELECT value FROM meta WHERE key = 'default_ttl_seconds'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidBackup(f"the backup's database cannot be read: {exc}") from None
    if ttl is not None and not _is_ttl(ttl[0]):
        # the space's default TTL (core.expiry.check_default_ttl's rule): every memory written
        # without an expiry would take it, so a value no space could be created with is refused
        raise InvalidBackup(f"the backup's default_ttl_seconds is not a number of seconds above 0 "
                            f"(at most 1e10): {str(ttl[0])[:40]!r}")
    for key in ("last_lsn", "schema_version"):
        if found[key] != manifest[key]:
            raise InvalidBackup(f"the backup's database has {key} {found[key]}, "
                                f"its manifest says {manifest[key]}")
    want = {k: manifest["counts"][k] for k in COUNTED}
    if found["counts"] != want:
        raise InvalidBackup(f"the backup's database holds {found['counts']}, its manifest says {want}")


def _is_ttl(value: object) -> bool:
    try:
        seconds = float(str(value))
    except ValueError:
        return False
    return 0 < seconds <= 1e10  # false for NaN too
