"""Live-only events (``recalled``, ``activation``) to the streams of every server (issue 17).

On SQLite these two events are published to the space's bus and nowhere else: they take no LSN
of their own (they carry the space's last LSN), are not in the event log and are not replayed to
a resumed stream. PostgreSQL keeps exactly that contract, but a space's streams are spread over
many servers, so the answering server sends each such event on a NOTIFY channel of its own
(``engram_live``). Every server's feed (feed.py), the answering one's included, LISTENs to it
beside ``engram_events`` and publishes the event to the space's local subscribers after the
logged events up to the event's LSN: a ``recalled`` never arrives ahead of a write the recall
saw, and every server's streams carry the same events in the same order.

Sending costs the recall one short transaction (``SELECT pg_notify``), committed before the recall
answers, so the event is ahead of any write its client makes next, on every stream (PostgreSQL
delivers notifications in commit order). Best-effort, like the events themselves on SQLite (a
slow consumer may drop them too): a payload over PostgreSQL's 8,000-byte limit, or a database
error, is logged and the event reaches no stream; the recall still answers.
A notification carries the event's data (memory ids and counts, never content) to every
listener of the database, as ``engram_events`` carries space ids and LSNs.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool

if TYPE_CHECKING:
    from .connection import PostgresDatabase

log = logging.getLogger("engram.postgres.live")

CHANNEL = "engram_live"
LISTEN = f"LISTEN {CHANNEL}"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', %s)"
#: PostgreSQL refuses a payload of 8,000 bytes or more.
MAX_PAYLOAD = 7999


def encode(space_id: str, type_: str, lsn: int, data: dict[str, Any]) -> str:
    return json.dumps({"s": space_id, "t": type_, "l": lsn, "d": data}, separators=(",", ":"))


#: ``(space, type, lsn, data)``: one relayed event.
LiveEvent = tuple[str, str, int, dict[str, Any]]


def decode(payload: str) -> LiveEvent:
    """``(space, type, lsn, data)`` of a payload; ValueError if it is not one of ours."""
    try:
        raw = json.loads(payload)
        out = (str(raw["s"]), str(raw["t"]), int(raw["l"]), raw["d"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not an Engram live event: {payload[:80]!r}") from exc
    if not isinstance(out[3], dict):
        raise ValueError(f"not an Engram live event: {payload[:80]!r}")
    return out


class LiveRelay:
    """This server's sender of live-only events."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self.sent = 0
        self.dropped = 0

    def send(self, space_id: str, type_: str, lsn: int, data: dict[str, Any]) -> None:
        """NOTIFY one event, committed before this returns (so before the client can make its
        next write: every stream then has the event ahead of that write's). Never raises."""
        payload = encode(space_id, type_, lsn, data)
        size = len(payload.encode())
        if size > MAX_PAYLOAD:
            self.dropped += 1
            log.warning("a %s event of space %s is too large to relay (%d bytes); no stream carries it",
                        type_, space_id, size)
            return
        try:
            with self.db.pool.connection() as conn, conn.transaction():
                conn.execute(_NOTIFY, (payload,))
            self.sent += 1
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self.dropped += 1
            log.warning("a %s event of space %s was not relayed: %s", type_, space_id, type(exc).__name__)
