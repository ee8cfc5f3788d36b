"""The association graph of one space: explicit edges, and reading edges for spreading.

Edges live in the space's ``associations`` table keyed by memory *rowids*
``(source, target)``. Three kinds exist: ``auto`` (near neighbours, written by
the store path), ``temporal`` (episodes close in time, also written there) and
``explicit`` (this module). A delete trigger removes every edge of a deleted
memory, so the graph can never point at a memory that is gone.

Suppressed memories keep their edges (suppression is reversible) but are never
*reached*: the neighbour query joins ``memories`` and skips suppressed targets,
so activation neither arrives at nor flows through them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.expiry import LIVE_SQL
from ..core.models import AssociateInput, Association, strengthened
from ..errors import InvalidInput, MemoryNotFound
from ..storage.eventlog import record_event

if TYPE_CHECKING:
    from ..core.space import MemorySpace

# Spreading looks at most this many edges per node (strongest first): a hub
# with thousands of auto-links must not blow the time budget of one recall.
MAX_FANOUT = 32

NeighbourFetch = Callable[[list[int]], dict[int, list[tuple[int, float]]]]


def associate(space: MemorySpace, item: AssociateInput) -> Association:
    """Create the edge, or strengthen it if it exists; durable when this returns."""
    store = space.check_healthy()
    if item.source_id == item.target_id:
        raise InvalidInput(
            "source_id and target_id are the same memory; an association joins two different memories",
            example='{"source_id": "m1", "target_id": "m2", "strength": 0.6}',
        )
    now = space.clock()

    def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
        rowids: dict[str, int] = {}
        for mid in (item.source_id, item.target_id):
            row = conn.execute(f"SELECT rowid, suppressed FROM memories WHERE id = ? AND {LIVE_SQL}",
                               (mid, now)).fetchone()
            if row is None or row[1]:
                raise MemoryNotFound(
                    f"no memory with id {mid!r} in memory space {space.id!r}"
                    + (" (it is suppressed)" if row is not None else ""),
                    details={"memory_id": mid, "memory_space_id": space.id},
                )
            rowids[mid] = int(row[0])
        src, dst = rowids[item.source_id], rowids[item.target_id]
        pairs = [(src, dst), (dst, src)] if item.bidirectional else [(src, dst)]
        result = 0.0
        created = False
        for a, b in pairs:
            old = conn.execute(
                "SELECT strength FROM associations WHERE source = ? AND target = ?", (a, b)
            ).fetchone()
            strength = (
                float(item.strength) if old is None else strengthened(float(old[0]), float(item.strength))
            )
            conn.execute(
                "INSERT INTO associations(source, target, strength, kind, created_at, updated_at, lsn) "
                "VALUES (?,?,?,'explicit',?,?,?) ON CONFLICT(source, target) DO UPDATE SET "
                "strength = excluded.strength, kind = 'explicit', updated_at = excluded.updated_at, "
                "lsn = excluded.lsn",
                (a, b, strength, now, now, lsn),
            )
            if (a, b) == (src, dst):
                result = strength
                created = old is None  # the asked-for direction is what the answer describes
        event = record_event(conn, "association", lsn, {
            "source_id": item.source_id,
            "target_id": item.target_id,
            "strength": round(result, 6),
            "bidirectional": item.bidirectional,
            "kind": "explicit",
        })
        return {"strength": result, "created": created, "event": event}

    def after(res: dict[str, Any], lsn: int) -> None:
        space.events.publish_many([res["event"]])

    res, lsn = store.write(op, after=after)
    return Association(
        source_id=item.source_id,
        target_id=item.target_id,
        strength=round(res["strength"], 6),
        kind="explicit",
        lsn=lsn,
        memory_space_id=space.id,
        created=bool(res["created"]),
    )


def neighbour_fetch(space: MemorySpace, fanout: int = MAX_FANOUT) -> NeighbourFetch:
    """A reader over this space's graph for :func:`spreading.spread` (suppressed targets skipped)."""
    conn = space.check_healthy().reader()

    def fetch(nodes: list[int]) -> dict[int, list[tuple[int, float]]]:
        out: dict[int, list[tuple[int, float]]] = {}
        try:
            for i in range(0, len(nodes), 400):
                chunk = nodes[i : i + 400]
                q = ",".join("?" * len(chunk))
                # Why NOT IN and not a join on memories: a memory row holds its
                # embedding before ``suppressed``, so reading that column per
                # edge walks overflow pages (~5x slower). The suppressed set
                # comes from a partial index holding only suppressed rows.
                for s, t, w in conn.execute(
                    f"SELECT source, target, strength FROM associations WHERE source IN ({q}) "
                    "AND target NOT IN (SELECT rowid FROM memories WHERE suppressed = 1)",
                    chunk,
                ):
                    out.setdefault(int(s), []).append((int(t), float(w)))
        except sqlite3.DatabaseError as exc:
            space.guard_read(exc)
        for node, lst in out.items():
            if len(lst) > fanout:  # strongest first, ties by id: deterministic
                out[node] = sorted(lst, key=lambda e: (-e[1], e[0]))[:fanout]
        return out

    return fetch


def count(space: MemorySpace) -> int:
    conn = space.check_healthy().reader()
    return int(conn.execute("SELECT count(*) FROM associations").fetchone()[0])


#: The most memory ids one :func:`edges_of` call may name.
MAX_EDGE_QUERY_IDS = 100


def edges_of(space: MemorySpace, memory_ids: list[str], limit: int) -> list[Association]:
    """The edges that touch any of ``memory_ids`` (either end), strongest first, at most ``limit``.

    Read-only. Ids this space does not have contribute nothing (no error: a console asking for the
    neighbours of a recall path must not fail because one memory was forgotten meanwhile). Edges to
    suppressed memories are listed too: they are kept while suppression lasts.
    """
    conn = space.check_healthy().reader()
    wanted = list(dict.fromkeys(memory_ids))[:MAX_EDGE_QUERY_IDS]
    if not wanted:
        return []
    q = ",".join("?" * len(wanted))
    out: list[Association] = []
    try:
        rowids = [int(r[0]) for r in conn.execute(f"SELECT rowid FROM memories WHERE id IN ({q})", wanted)]
        if not rowids:
            return []
        r = ",".join("?" * len(rowids))
        rows = conn.execute(
            "SELECT ms.id, mt.id, a.strength, a.kind, a.lsn FROM associations a "
            "JOIN memories ms ON ms.rowid = a.source JOIN memories mt ON mt.rowid = a.target "
            f"WHERE a.source IN ({r}) OR a.target IN ({r}) "
            "ORDER BY a.strength DESC, ms.id, mt.id LIMIT ?",
            [*rowids, *rowids, limit],
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
        raise
    for source, target, strength, kind, lsn in rows:
        out.append(Association(source_id=source, target_id=target, strength=round(float(strength), 6),
                               kind=str(kind), lsn=int(lsn), memory_space_id=space.id))
    return out
