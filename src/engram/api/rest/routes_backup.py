"""Backup and restore of a whole space: ``/api/v1/spaces/{id}/backup`` and ``.../restore`` (SPEC §11).

Both move one file (docs/backup.md). The backup is sent from a snapshot on disk
with its exact ``Content-Length``; the snapshot is removed when the response
ends, however it ends. The restore body bypasses the JSON body limit (the
middleware lets this route read its own body): it is streamed to a file in the
data root under ``max_restore_bytes``, then checked and installed by the
service; the file is removed whatever the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi import APIRouter, Query
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from ...errors import InvalidBackup, PayloadTooLarge
from ...service import EngramService
from ...spaces.backup import MEDIA_TYPE, RestoreReceipt, SpaceBackup
from ...spaces.ids import MemorySpaceId
from .access import principal_of
from .encode import ok
from .routes_spaces import SPACE_ID_PATH
from .space import SCOPE_SPACE, peer_of

RESTORE_PATH_SUFFIX = "/restore"
BINARY = {"schema": {"type": "string", "format": "binary"}}


def is_restore_upload(method: str, path: str) -> bool:
    """The request whose body this module reads itself (the middleware must not buffer it)."""
    return method == "POST" and path.startswith("/api/v1/spaces/") and path.endswith(RESTORE_PATH_SUFFIX)


def router(service: EngramService) -> APIRouter:
    r = APIRouter(prefix="/api/v1/spaces", tags=["spaces"])
    limit = service.settings.max_restore_bytes

    @r.get(
        "/{space_id}/backup",
        summary="Back up a memory space",
        description="Streams one file (a tar of `manifest.json` and `space.db`, see docs/backup.md): a "
        "consistent snapshot of the space taken with SQLite's online backup API while the space keeps "
        "serving, with its LSN, counts and the database's SHA-256 in the manifest.",
        response_class=Response,
        responses={200: {"description": "The backup file.", "content": {MEDIA_TYPE: BINARY}}},
    )
    async def backup_space(request: Request, space_id: str = SPACE_ID_PATH) -> Response:
        request.scope[SCOPE_SPACE] = MemorySpaceId(space_id)
        taken = await service.backup_space(space_id)
        return StreamingResponse(
            _send(taken), media_type=MEDIA_TYPE,
            headers={"content-length": str(taken.size),
                     "content-disposition": f'attachment; filename="{taken.filename}"',
                     "x-engram-lsn": str(taken.manifest["last_lsn"])})

    @r.post(
        "/{space_id}/restore",
        response_model=RestoreReceipt,
        status_code=201,
        summary="Restore a memory space from a backup",
        description="The body is a backup file as `GET /api/v1/spaces/{id}/backup` sends it (at most "
        "`max_restore_bytes`). It is checked completely (checksum, integrity check, manifest) before "
        "anything is installed: a damaged file is 400 `INVALID_BACKUP` and changes nothing. Without "
        "`replace` the space must not exist (409 `MEMORY_SPACE_EXISTS`); with `replace=true` an existing "
        "space serves until the restored one takes its place at once (200).",
        responses={200: {"model": RestoreReceipt, "description": "An existing space was replaced."}},
        openapi_extra={"requestBody": {"required": True, "content": {MEDIA_TYPE: BINARY,
                                                                     "application/octet-stream": BINARY}}},
    )
    async def restore_space(
        request: Request, space_id: str = SPACE_ID_PATH,
        replace: bool = Query(False, description="Replace the space if it exists."),
    ) -> Response:
        sid = MemorySpaceId(space_id)
        request.scope[SCOPE_SPACE] = sid
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        service.check_restore(sid, replace)  # a 409 before the client sends gigabytes
        upload = await asyncio.to_thread(service.new_upload)
        try:
            await _receive(request, upload.open("wb"), limit)
            who, peer = principal_of(request.scope), peer_of(request.scope)
            receipt = await service.restore_space(sid, upload, replace=replace, actor=who, peer=peer)
        finally:
            upload.unlink(missing_ok=True)
        return ok(receipt, 200 if receipt.replaced else 201)

    return r


async def _send(taken: SpaceBackup) -> AsyncIterator[bytes]:
    # The snapshot goes when the response ends: sent in full, failed, or the client
    # left (the iteration is cancelled and this finally still runs).
    try:
        async for chunk in iterate_in_threadpool(taken.chunks()):
            yield chunk
    finally:
        taken.discard()


async def _receive(request: Request, f: BinaryIO, limit: int) -> None:
    """Stream the body into ``f`` (closed here), at most ``limit`` bytes."""
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _too_large(total, limit)
            if chunk:
                await asyncio.to_thread(f.write, chunk)
        await asyncio.to_thread(f.flush)
    except ClientDisconnect:
        # Nobody is left to read the answer; what came is refused like a truncated file.
        raise InvalidBackup("the client went away before the backup was fully sent") from None
    finally:
        f.close()


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the backup is {size} bytes or more; this server restores at most {limit} bytes (max_restore_bytes)",
        suggestion="Raise max_restore_bytes in the server settings.",
        example=f"max_restore_bytes = {limit * 2}  (engram.toml) or ENGRAM_MAX_RESTORE_BYTES={limit * 2}",
    )
