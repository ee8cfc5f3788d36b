"""Backup and restore of whole memory spaces (SPEC §11), over the registry.

Backup: a reader connection of the live space is copied by SQLite's online
backup API into a snapshot file in the data root (``.backup-*.db``), while the
space keeps serving and its writer keeps committing. The snapshot and its
manifest are then sent as one tar (:mod:`engram.storage.backup`) and the
snapshot is removed.

Restore: the upload (already on disk, ``.upload-*``) is checked completely and
its database unpacked into a staging directory (``.restore-*``) beside the
space directories, with the space's marker. Only then is it installed, by
renaming the staging directory to the space's id (:meth:`SpaceRegistry.install`):

* a new id appears whole or not at all (one rename; the marker is inside);
* a replaced space keeps serving until the new one is staged and checked; then,
  under the space's lock, it is closed, moved aside to ``.replaced-<id>`` and
  the staged one renamed into place. A crash between those two renames is
  settled at the next start by :func:`recover`: a space directory with its
  marker means the restore finished (the old copy is removed); without one the
  old space is moved back. Either way the space is the old or the new one,
  never a mix.

Names starting with a dot are never valid space ids, so none of these working
files can be taken for a space; :func:`recover` removes the leftovers of a
crash at start-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from .. import __version__
from ..errors import MemorySpaceNotFound
from ..storage import backup as fmt
from .ids import MemorySpaceId

if TYPE_CHECKING:
    from .registry import SpaceRegistry

log = logging.getLogger("engram.backup")

SNAPSHOT_PREFIX = ".backup-"
UPLOAD_PREFIX = ".upload-"
STAGING_PREFIX = ".restore-"
REPLACED_PREFIX = ".replaced-"
MEDIA_TYPE = "application/x-tar"


class RestoreReceipt(BaseModel):
    """What ``POST /api/v1/spaces/{id}/restore`` answers."""

    memory_space_id: str = Field(description="The space the backup was restored as.")
    replaced: bool = Field(description="True when an existing space of that id was replaced.")
    source_space_id: str = Field(description="The id of the space the backup was taken from.")
    last_lsn: int = Field(description="The restored space's last LSN (the source's at backup time).")
    counts: dict[str, int] = Field(description="memories, episodes, associations and beliefs restored.")
    backup_created_at: str = Field(description="When the backup was taken (ISO-8601, UTC).")
    bytes: int = Field(description="Size of the restored database file.")


@dataclass
class SpaceBackup:
    """A snapshot on disk and its manifest, ready to send; :meth:`discard` removes the snapshot."""

    space_id: str
    snapshot: Path
    manifest: dict[str, Any]
    taken_at: float = field(default_factory=time.time)

    @property
    def manifest_bytes(self) -> bytes:
        return fmt.manifest_bytes(self.manifest)

    @property
    def size(self) -> int:
        return fmt.archive_size(self.manifest_bytes, int(self.manifest["database"]["bytes"]))

    @property
    def filename(self) -> str:
        return f"{self.space_id}-lsn{self.manifest['last_lsn']}.engram"

    def chunks(self) -> Iterator[bytes]:
        return fmt.archive_chunks(self.manifest_bytes, self.snapshot, self.taken_at)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.snapshot.unlink()


def take(registry: SpaceRegistry, space_id: str) -> SpaceBackup:
    """Snapshot space ``space_id`` while it serves; the caller sends then discards the result."""
    sid = MemorySpaceId(space_id)
    if not registry.exists(sid):
        raise MemorySpaceNotFound(f"memory space {sid!r} does not exist", details={"memory_space_id": sid})
    space = registry.get(sid)
    with space.lease():
        store = space.check_healthy()
        fd, name = tempfile.mkstemp(prefix=SNAPSHOT_PREFIX, suffix=".db", dir=registry.root)
        os.close(fd)
        snapshot = Path(name)
        try:
            conn = store.private_reader()
            try:
                found = fmt.snapshot(conn, snapshot)
            finally:
                conn.close()
            marker = registry.marker(sid)
            manifest = manifest_of(sid, snapshot, found, marker.get("created_at"), marker.get("embedder"))
        except BaseException:
            snapshot.unlink(missing_ok=True)
            raise
    log.info("backup taken", extra={"memory_space": sid, "last_lsn": found["last_lsn"],
                                    "bytes": manifest["database"]["bytes"]})
    return SpaceBackup(sid, snapshot, manifest)


def manifest_of(space_id: str, snapshot: Path, found: dict[str, Any], created_at: Any,
                embedder: Any) -> dict[str, Any]:
    """The manifest of a snapshot database (``found``: its ``storage.backup.facts``), on either backend."""
    return {
        "format": fmt.FORMAT,
        "format_version": fmt.FORMAT_VERSION,
        "engram_version": __version__,
        "space_id": space_id,
        "created_at": datetime.now(UTC).isoformat(),
        **found,
        "space": {"created_at": created_at, "dimension": found["dimension"], "embedder": embedder},
        "database": {"name": fmt.DB_NAME, "bytes": snapshot.stat().st_size,
                     "sha256": fmt.sha256_of(snapshot)},
    }


def receipt_of(space_id: str, manifest: dict[str, Any], replaced: bool) -> RestoreReceipt:
    """What a restore of ``manifest``'s backup as ``space_id`` answers (either backend)."""
    return RestoreReceipt(
        memory_space_id=space_id, replaced=replaced, source_space_id=str(manifest.get("space_id", "")),
        last_lsn=manifest["last_lsn"], counts={k: manifest["counts"][k] for k in fmt.COUNTED},
        backup_created_at=str(manifest.get("created_at", "")), bytes=manifest["database"]["bytes"],
    )


def new_upload(registry: SpaceRegistry) -> Path:
    """An empty file in the data root for an incoming backup (same filesystem as the spaces)."""
    return upload_in(registry.root)


def upload_in(root: Path) -> Path:
    """An empty file in ``root`` for an incoming backup (removed by the caller; :func:`recover`
    removes one a crash left)."""
    fd, name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=".engram", dir=root)
    os.close(fd)
    return Path(name)


def restore(registry: SpaceRegistry, space_id: str, upload: Path, *, replace: bool = False) -> RestoreReceipt:
    """Check the backup at ``upload`` and install it as space ``space_id``; ``upload`` is left to the caller.

    Nothing is installed unless every check passes (see :func:`engram.storage.backup.unpack`).
    """
    sid = MemorySpaceId(space_id)
    registry.check_restorable(sid, replace)  # fail early (409) before unpacking gigabytes
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=registry.root))
    try:
        manifest = fmt.unpack(upload, staging / fmt.DB_NAME)
        raw = manifest.get("space")
        recorded: dict[str, Any] = raw if isinstance(raw, dict) else {}
        created = recorded.get("created_at")
        registry.write_marker(staging, {
            "id": sid,
            "created_at": float(created) if isinstance(created, (int, float)) else registry.clock(),
            "dimension": manifest.get("dimension"),
            "embedder": recorded.get("embedder"),
        })
        replaced = registry.install(sid, staging, replace=replace)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("backup restored", extra={"memory_space": sid, "replaced": replaced,
                                       "last_lsn": manifest["last_lsn"]})
    return receipt_of(sid, manifest, replaced)


def recover(root: Path, marker: str) -> None:
    """Settle what a crash left in ``root`` (run at start-up, before spaces are scanned)."""
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name.startswith(REPLACED_PREFIX):
            space_dir = root / name[len(REPLACED_PREFIX):]
            if (space_dir / marker).exists():
                shutil.rmtree(entry)  # the restore finished: the old copy goes
                log.warning("removed the old copy of a space replaced by a restore", extra={
                    "memory_space": space_dir.name})
            else:
                if space_dir.exists():
                    shutil.rmtree(space_dir)  # unmarked: not a space (a cut-short create)
                os.rename(entry, space_dir)  # the restore did not finish: the old space stays
                log.warning("a restore was interrupted before the swap; the old space is kept", extra={
                    "memory_space": space_dir.name})
        elif name.startswith((SNAPSHOT_PREFIX, UPLOAD_PREFIX, STAGING_PREFIX)):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
