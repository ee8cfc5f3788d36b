"""Consolidation's reads and writes on PostgreSQL: episodes in, beliefs out (issue 17).

The SQL of a consolidation run, for ``cognition/pg_consolidation.py`` (which clusters and builds
the beliefs with the same pure code as SQLite: nothing here knows of clustering). Every function
works inside a caller's :class:`SpaceTx`, because a run is ONE transaction:

1. :func:`lock` takes the space's consolidation lock, a transaction-scoped advisory lock
   (``pg_advisory_xact_lock``) on a key derived from the space id: at most one run per space
   at a time, across every server on the database. PostgreSQL releases it at commit or
   rollback, and when a server dies mid-run (its connection ends), so no lock outlives a run.
2. :func:`episodes` reads the run's input under that lock; the run then clusters in Python,
   holding the lock (an advisory lock blocks no reader and no writer: only another run).
3. :func:`write_run` takes the space's next LSN (the counter row, first, like every write:
   store.py's lock order) and then replaces the beliefs, marks the cited episodes and logs the
   ``consolidation`` event, all under that one LSN, then NOTIFYs other servers.

Why the lock spans the snapshot and not just the write: two runs writing in LSN order could
otherwise commit an older snapshot's beliefs over a newer one's. Under the lock the run that
writes last also read last.

A deadlock is impossible: a run holds the advisory lock and then waits for the counter row;
writers hold the counter row and never wait for the advisory lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg.types.json import Jsonb

from . import queries as q
from .connection import SpaceTx
from .store import PostgresStore

META_LAST_AT = "consolidation.last_at"
META_LAST_RUN = "consolidation.last_run"
#: The fingerprint (count, newest LSN, sum of LSNs) of the episodes the last run read: any server's
#: scheduled run compares with it, so an unchanged space is not consolidated again by anyone.
META_LAST_FINGERPRINT = "consolidation.last_fingerprint"

Fingerprint = tuple[int, int, float]


def lock_key(space_id: str) -> int:
    """The advisory lock key of ``space_id``'s consolidation: 63 bits of a hash, the same on every
    server (two spaces sharing a key would only take turns, never mix their data)."""
    digest = hashlib.sha256(f"engram.consolidation\0{space_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def lock(tx: SpaceTx, wait: bool) -> bool:
    """Take the space's consolidation lock until ``tx`` ends: waiting for a run in progress on
    any server (``wait``), or not (False if one holds it: scheduled runs skip)."""
    if wait:
        tx.execute(q.CONSOLIDATION_LOCK, {"key": lock_key(tx.space_id)})
        return True
    row = tx.one(q.CONSOLIDATION_TRY_LOCK, {"key": lock_key(tx.space_id)})
    return bool(row is not None and row[0])


@dataclass
class EpisodeRow:
    id: str
    content: str
    vector: np.ndarray[Any, np.dtype[np.float32]]
    lsn: int


def episodes(tx: SpaceTx, now: float) -> list[EpisodeRow]:
    """The live episodes with a vector, in code point order of their ids (SQLite's order)."""
    rows = [EpisodeRow(str(mid), str(content), np.asarray(emb.to_numpy(), dtype=np.float32), int(lsn))
            for mid, content, emb, lsn in tx.execute(q.EPISODES_TO_CONSOLIDATE, {"now": now})]
    rows.sort(key=lambda r: r.id)
    return rows


def without_vector(tx: SpaceTx, now: float) -> int:
    row = tx.one(q.EPISODES_WITHOUT_VECTOR, {"now": now})
    return int(row[0]) if row is not None else 0


def fingerprint(tx: SpaceTx, now: float) -> Fingerprint:
    row = tx.one(q.EPISODE_FINGERPRINT, {"now": now})
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2])


def get_meta(tx: SpaceTx, key: str) -> str | None:
    row = tx.one(q.GET_META, {"key": key})
    return None if row is None else str(row[0])


def last_fingerprint(tx: SpaceTx) -> Fingerprint | None:
    text = get_meta(tx, META_LAST_FINGERPRINT)
    if text is None:
        return None
    count, newest, total = json.loads(text)
    return int(count), int(newest), float(total)


@dataclass
class BeliefRow:
    """One belief to store (the columns of ``engram.beliefs`` but space, times, run and LSN)."""

    id: str
    content: str
    centroid: Sequence[float] | None
    strength: float
    schema_confidence: float
    citations: list[dict[str, Any]]
    cited: list[str]  # the episode ids to mark consolidated


def live_among(tx: SpaceTx, ids: Sequence[str], now: float) -> set[str]:
    """Which of ``ids`` are still live episodes with a vector (call after taking the LSN)."""
    return {str(r[0]) for r in tx.execute(q.LIVE_EPISODES_AMONG, {"ids": list(ids), "now": now})}


def belief_created(tx: SpaceTx) -> dict[str, float]:
    """Creation times of the space's current beliefs (a belief that a run re-makes keeps its own)."""
    return {str(i): float(c) for i, c in tx.execute(q.BELIEF_CREATED)}


def write_run(tx: SpaceTx, lsn: int, beliefs: Sequence[BeliefRow], created: dict[str, float], now: float,
              run_id: str, fp: Fingerprint, event: dict[str, Any]) -> int:
    """Replace the belief set with ``beliefs`` and mark their episodes consolidated, under ``lsn``
    (taken by the caller with :meth:`PostgresStore.next_lsn`, before reading what it re-checks);
    log the ``consolidation`` event (``event`` plus the count) and NOTIFY. Returns how many
    episodes were newly consolidated."""
    tx.execute(q.DELETE_BELIEFS)
    # One executemany (psycopg pipelines it: one round trip, not one per belief): the space's
    # writers wait behind this transaction's LSN row until it commits.
    with tx.conn.cursor() as cur:
        cur.executemany(q.INSERT_BELIEF, [{
            "space": tx.space_id, "id": b.id, "content": b.content,
            "centroid": None if b.centroid is None else HalfVector(np.asarray(b.centroid, dtype=np.float32)),
            "strength": b.strength, "schema_confidence": b.schema_confidence, "citations": Jsonb(b.citations),
            "created_at": created.get(b.id, now), "updated_at": now, "run_id": run_id, "lsn": lsn}
            for b in beliefs])
    cited = sorted({mid for b in beliefs for mid in b.cited})
    done = tx.execute(q.MARK_CONSOLIDATED, {"ids": cited}).rowcount if cited else 0
    tx.execute(q.SET_META, {"key": META_LAST_AT, "value": repr(now)})
    tx.execute(q.SET_META, {"key": META_LAST_RUN, "value": run_id})
    tx.execute(q.SET_META, {"key": META_LAST_FINGERPRINT, "value": json.dumps(list(fp))})
    PostgresStore.record_event(tx, "consolidation", lsn, {**event, "episodes_consolidated": done,
                                                          "beliefs_lsn": lsn})
    PostgresStore.notify(tx, lsn)
    return int(done)


def list_beliefs(tx: SpaceTx, after: str, limit: int) -> list[tuple[Any, ...]]:
    """Rows of ``q.BELIEF_COLUMNS`` after ``after`` in id order (code points), at most ``limit``."""
    return [tuple(r) for r in tx.execute(q.LIST_BELIEFS, {"after": after, "limit": limit})]


def get_belief(tx: SpaceTx, belief_id: str) -> tuple[Any, ...] | None:
    row = tx.one(q.GET_BELIEF, {"id": belief_id})
    return None if row is None else tuple(row)
