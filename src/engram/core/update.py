"""Updating a memory in place: PUT (create or replace) and PATCH (the given fields) (SPEC §11).

The invariant: an update rewrites the memory's row with one ``UPDATE ... WHERE rowid = ?``,
never a delete and an insert. Associations point at the rowid, so they are kept; the
full-text index follows through its ``AFTER UPDATE`` trigger, inside the same transaction; and
the row's ``lsn`` becomes the update's, so a crash either keeps the whole old row or the whole
new one (one op, one savepoint, one commit).

Vectors. A new client embedding replaces the old vector after the commit. New text without
an embedding, in a space with a server embedder, drops the old vector *at once* (in the same
post-commit effect that acknowledges the update) and queues the row for the background
embedder, as ``remember`` does: from the moment the update returns the old vector no longer
matches anything, and the memory is findable by its new text at once (full text) and by
meaning once its vector is computed. A space without an embedder (client vectors only) keeps
the client's vector when only the text changes: the client owns it.

Suppressed memories: PUT makes the memory live again (it states the whole memory);
PATCH changes the fields and leaves it suppressed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput, MemoryNotFound
from ..index.vector import stored_row16
from ..storage.eventlog import record_event
from ..storage.sqlite_store import dumps
from .embedded import embed_text
from .expiry import expiry_of
from .models import MemoryInput, MemoryPatch, MemoryType, UpdateReceipt

if TYPE_CHECKING:
    from .space import MemorySpace

#: Columns an update reads to decide, in this order.
_CURRENT = "rowid, kind, content, embedding IS NOT NULL, suppressed, what, where_location, why, how"


def prepare_update(
    space: MemorySpace, memory_id: str, *, put: MemoryInput | None = None, patch: MemoryPatch | None = None,
) -> tuple[Callable[[sqlite3.Connection, int], dict[str, Any]], Callable[[tuple[Any, int]], UpdateReceipt]]:
    """Validate and build the write op of one update (exactly one of ``put`` / ``patch``).

    The op runs on the space's writer under its own savepoint (it reads, then writes several
    statements): any failure inside it leaves the row as it was.
    """
    from .space import MEMORY_COLUMNS

    if (put is None) == (patch is None):
        raise ValueError("prepare_update takes exactly one of put= and patch=")
    if put is not None and put.id is not None and put.id != memory_id:
        raise InvalidInput(
            f"the body's id {put.id!r} differs from the path's {memory_id!r}",
            suggestion="Omit id from the body, or send the same id as in the path.",
        )
    given: dict[str, Any] = put.model_dump(exclude={"id", "auto_link", "memory_space_id"}) if put else (
        patch.given() if patch else {})
    if len(given.get("content") or "") > space.settings.max_content_chars:
        raise InvalidInput(f"content has {len(given['content'])} characters; "
                           f"at most {space.settings.max_content_chars} are allowed")
    blob, _unit = space._prepare_embedding(given.get("embedding"))
    row16 = None if blob is None else stored_row16(blob)  # the row a copy loading the bytes makes
    # PUT of a memory that does not exist creates it, as remember would (same op, same effect).
    create_op = None
    if put is not None:
        create_op, _ = space.prepare_remember(put.model_copy(update={"id": memory_id}))
    type_given = put is None or "memory_type" in put.model_fields_set
    now = space.clock()

    def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
        cur = conn.execute(f"SELECT {_CURRENT}, expires_at FROM memories WHERE id = ?",
                           (memory_id,)).fetchone()
        if cur is not None and cur[-1] is not None and cur[-1] <= now:
            # Expired, not swept yet: gone. PATCH finds nothing (and writes nothing); PUT creates
            # the memory as remember would, which first deletes the expired one as the sweep does.
            cur = None
        if cur is None:
            if create_op is None:
                raise MemoryNotFound(
                    f"no memory with id {memory_id!r} in memory space {space.id!r}",
                    suggestion="PATCH changes an existing memory; PUT creates or replaces one.",
                    details={"memory_id": memory_id, "memory_space_id": space.id},
                )
            res = create_op(conn, lsn)
            res["created"] = True
            res["row"] = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE rowid = ?",
                                      (res["rowid"],)).fetchone()
            return res
        rowid, kind, old_content, has_vec, suppressed, *ep_text, _expires = cur
        sets: dict[str, Any] = {}
        if put is not None:  # a replacement takes the expiry its input asks for (or the space default)
            sets["expires_at"] = expiry_of(put, now, space.default_ttl)
        for name in ("content", "confidence", "decay_rate"):
            if name in given:
                sets[name] = given[name]
        if "tags" in given:
            sets["tags"] = dumps(given["tags"]) if given["tags"] else "[]"
        if "metadata" in given:
            sets["metadata"] = dumps(given["metadata"]) if given["metadata"] else "{}"
        if "memory_type" in given:
            mtype = given["memory_type"] if type_given else (
                MemoryType.episodic if kind == "episode" else MemoryType.semantic)
            sets["memory_type"] = MemoryType(mtype).value
        if put is not None:
            sets["suppressed"] = 0
        content = sets.get("content", old_content)
        text = embed_text(content, *ep_text)
        # What happens to the vector (see the module docstring).
        vector: str = "keep"
        pend = False
        if blob is not None:
            if space.dim is not None and len(blob) // 4 != space.dim:
                space.vectors.check_dim(len(blob) // 4)
            if space.dim is None:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)",
                             (str(len(blob) // 4),))
                space.dim = space.vectors.dim = len(blob) // 4
            sets["embedding"] = blob
            vector = "add"
        elif put is not None or (content != old_content and space.embedding_active):
            sets["embedding"] = None
            vector = "drop"
            pend = space.embedding_active and bool(text)
        if not content and sets.get("embedding", b"" if has_vec else None) is None:
            raise InvalidInput(
                f"this update would leave memory {memory_id!r} with neither content nor an embedding",
                suggestion="Send content, an embedding, or both.",
            )
        final_suppressed = bool(sets.get("suppressed", suppressed))
        assignments = "".join(f"{c} = ?, " for c in sets)
        conn.execute(f"UPDATE memories SET {assignments}lsn = ? WHERE rowid = ?",
                     (*sets.values(), lsn, rowid))
        row = conn.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE rowid = ?", (rowid,)).fetchone()
        event = {
            "memory_id": memory_id, "memory_type": row[12], "confidence": row[5], "content": content[:200],
            "kind": kind, "fields": sorted(given), "replaced": put is not None,
        }
        return {"created": False, "rowid": int(rowid), "row": row, "vector": vector, "pend": pend,
                "suppressed": final_suppressed, "unit": row16,
                "event": record_event(conn, "updated", lsn, event)}

    durability = space.settings.durability

    def receipt(done: tuple[dict[str, Any], int]) -> UpdateReceipt:
        res, lsn = done
        return UpdateReceipt(memory=space.to_memory(res["row"]), created=res["created"], lsn=lsn,
                             durability=durability, memory_space_id=space.id)

    return op, receipt


def apply_updated(space: MemorySpace, res: dict[str, Any], lsn: int) -> None:
    """Post-commit effect of an update: vectors and backlog first, then the event."""
    if res["created"]:
        space._apply_stored([(res, lsn)])
        return
    key = res["rowid"]
    if res["suppressed"] or res["vector"] == "drop":
        space.vectors.remove(key, lsn)
        space.density.remove(key)
    elif res["vector"] == "add":
        unit: np.ndarray = res["unit"]
        space.vectors.add(key, unit, lsn)
        space.density.remove(key)
        if space.embedding_active:
            space._to_measure([key])
    if res["pend"] and not res["suppressed"]:
        space._pend([key])
        if space.backfill is not None:
            space.backfill.notify(space)
    space.events.publish_many([res["event"]])
