"""``engram space backup ID FILE`` and ``engram space restore FILE --as NEW_ID [--replace]``.

Both speak REST (the file is one HTTP body each way) and show a byte progress
bar on stderr. ``backup`` downloads into a temporary file beside FILE, checks
it (layout, manifest, size and SHA-256 of the database) and only then renames
it into place: FILE is a complete, valid backup or it is not written at all.
``restore`` uploads FILE; the server checks it completely before installing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click
import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from ..client.http import EngramClient
from ..storage import backup as fmt
from . import output as out
from .connect import Target, target_options
from .spaces import space_group


def _bytes_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=out.stderr(), disable=not enabled)


def _client(target: Target) -> EngramClient:
    # A snapshot or a restore check of a big space can take longer than one --timeout
    # before the first byte; connecting still uses --timeout.
    http = httpx.Client(timeout=httpx.Timeout(target.timeout, read=None), verify=target.verify())
    return EngramClient(target.url, space=target.space, http_client=http)


@space_group.command("backup")
@click.argument("space_id", metavar="ID")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--progress/--no-progress", "show_progress", default=True, help="Progress bar on stderr.")
@target_options
def backup(target: Target, space_id: str, file: str, show_progress: bool) -> None:
    """Write a consistent backup of space ID to FILE (a tar: manifest.json + space.db).

    The server snapshots the space while it keeps serving. FILE is written only once the
    download is complete and its checksum matches; restore it with `engram space restore`.
    """
    path = Path(file)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    tmp = Path(tmp_name)
    try:
        client = _client(target)
        try:
            with os.fdopen(fd, "wb") as handle, _bytes_bar(show_progress and not target.as_json) as bar:
                task = bar.add_task(f"backup ← {space_id}", total=None)
                def shown(done: int, total: int | None) -> None:
                    bar.update(task, completed=done, total=total)

                size = client.backup(space_id, handle, progress=shown)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            client.close()
        with _bytes_bar(show_progress and not target.as_json) as bar:
            task = bar.add_task("checking", total=fmt.read_manifest(tmp)["database"]["bytes"])
            manifest = fmt.verify(tmp, progress=lambda n: bar.advance(task, n))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary = {"memory_space_id": manifest["space_id"], "file": str(file), "bytes": size,
               "last_lsn": manifest["last_lsn"], "counts": manifest["counts"],
               "sha256": manifest["database"]["sha256"]}
    if target.as_json:
        out.emit_json(summary)
        return
    c = manifest["counts"]
    out.stdout().print(Text.assemble(
        "backed up space ", (space_id, "bold"), f" to {file}: {c['memories']} memories ({c['episodes']} "
        f"episodes), {c['associations']} associations, {c['beliefs']} beliefs, LSN {manifest['last_lsn']}, "
        f"{size} bytes"))


@space_group.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--as", "space_id", required=True, metavar="NEW_ID", help="The id to restore the space as.")
@click.option("--replace", is_flag=True, help="Replace NEW_ID if it exists (it serves until the swap).")
@click.option("--progress/--no-progress", "show_progress", default=True, help="Progress bar on stderr.")
@target_options
def restore(target: Target, file: str, space_id: str, replace: bool, show_progress: bool) -> None:
    """Restore the backup in FILE as space NEW_ID.

    The server checks the whole file (checksum, integrity check, manifest) before installing
    anything; a damaged file is refused and changes nothing. Without --replace, NEW_ID must
    not exist yet.
    """
    size = os.path.getsize(file)
    client = _client(target)
    try:
        with open(file, "rb") as handle, _bytes_bar(show_progress and not target.as_json) as bar:
            task = bar.add_task(f"restore → {space_id}", total=size)
            receipt = client.restore(handle, space_id, replace=replace, size=size,
                                     progress=lambda done, _total: bar.update(task, completed=done))
    finally:
        client.close()
    if target.as_json:
        out.emit_json(receipt)
        return
    c = receipt.counts
    verb = "replaced" if receipt.replaced else "restored"
    out.stdout().print(Text.assemble(
        f"{verb} space ", (receipt.memory_space_id, "bold"), f" from {file} (backup of "
        f"{receipt.source_space_id} taken {receipt.backup_created_at}): {c['memories']} memories, "
        f"{c['associations']} associations, {c['beliefs']} beliefs, LSN {receipt.last_lsn}"))
