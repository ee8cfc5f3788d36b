"""The durable event log of one space: what resumable feeds replay (SPEC §11).

Every event that describes a *stored write* (``stored``, ``forgotten``, ``association``,
``consolidation``, ``updated``, ``expired``) is recorded in the ``events`` table by the op
that makes the write, inside the same transaction: the log holds an event if and only if its
write committed, so a replay after a crash shows every acknowledged write exactly once.
Events that describe reads (``recalled``, ``activation``) are live only and never recorded.

Position: an event is identified by ``(lsn, seq)``: the LSN of the write and its index among
the events of that LSN (0 for the first; an op that records several events, such as one
expiry sweep batch, gives them seq 0, 1, 2...). Positions grow in commit order, because
LSNs do and all events of an LSN commit together.

Use from a write op (one line, inside the op; publish the returned value after the commit)::

    def op(conn, lsn):
        ...
        return {..., "event": record_event(conn, "updated", lsn, {"memory_id": mid, ...})}

    def after(res, lsn):
        space.events.publish_many([res["event"]])

Retention: the writer keeps the newest ``event_log_max_events`` (see ``trim``); the newest
position removed is kept in meta ``event_log_trimmed``, so a reader can tell exactly whether a
resume point still has every later event (``replayable``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, NamedTuple

#: Event types recorded in the log; every other type is live only.
LOGGED_TYPES = frozenset(
    {"stored", "forgotten", "association", "consolidation", "decay", "updated", "expired"})
#: The seq of "every event of this LSN" (``since_lsn=N`` resumes after all events of N).
LAST_SEQ = (1 << 62) - 1
TRIMMED_KEY = "event_log_trimmed"

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    lsn INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    memory_id TEXT,
    data TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (lsn, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_memory ON events(memory_id) WHERE memory_id IS NOT NULL;
"""


class Logged(NamedTuple):
    """One recorded event, to publish after its commit (``EventBus.publish_many`` takes it)."""

    type: str
    lsn: int
    seq: int
    data: dict[str, Any]
    ts: float


Position = tuple[int, int]


# One shared encoder (json.dumps builds a new one per call that passes options): an event's data
# as compact JSON, anything not JSON-native as its str().
_EVENT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def record_event(conn: sqlite3.Connection, type_: str, lsn: int, data: dict[str, Any], *,
                 first: bool = False) -> Logged:
    """Record one event of the write at ``lsn``; call it inside the write's op (same transaction).
    ``first=True``: the op's only event at a fresh LSN (a remember), so its ``seq`` is 0 without
    asking the log."""
    if type_ not in LOGGED_TYPES:
        raise ValueError(f"{type_!r} is a live-only event type; the log records {sorted(LOGGED_TYPES)}")
    seq = 0 if first else int(conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM events WHERE lsn = ?",
                                           (lsn,)).fetchone()[0])
    ts = time.time()
    mid = data.get("memory_id")
    conn.execute(
        "INSERT INTO events(lsn, seq, type, memory_id, data, ts) VALUES (?,?,?,?,?,?)",
        (lsn, seq, type_, None if mid is None else str(mid),
         _EVENT_JSON(data), ts),
    )
    return Logged(type_, lsn, seq, data, ts)


def scrub(conn: sqlite3.Connection, memory_ids: list[str]) -> None:
    """Drop the content snippet from logged events of memories that were deleted or expired:
    a deleted memory's text must not live on in the log."""
    for i in range(0, len(memory_ids), 500):
        chunk = memory_ids[i : i + 500]
        q = ",".join("?" * len(chunk))
        conn.execute(
            f"UPDATE events SET data = json_remove(data, '$.content') WHERE memory_id IN ({q}) "
            "AND json_type(data, '$.content') IS NOT NULL",
            chunk,
        )


def trim(conn: sqlite3.Connection, keep: int) -> Position | None:
    """Delete all but the newest ``keep`` events (inside the writer's transaction); returns the
    newest position removed, or None if nothing was."""
    row = conn.execute(
        "SELECT lsn, seq FROM events ORDER BY lsn DESC, seq DESC LIMIT 1 OFFSET ?", (keep,)
    ).fetchone()
    if row is None:
        return None
    lsn, seq = int(row[0]), int(row[1])
    conn.execute("DELETE FROM events WHERE lsn < ? OR (lsn = ? AND seq <= ?)", (lsn, lsn, seq))
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (TRIMMED_KEY, f"{lsn}:{seq}"),
    )
    return lsn, seq


def trimmed_upto(conn: sqlite3.Connection) -> Position:
    """The newest position no longer in the log ((0, -1): nothing was ever lost)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (TRIMMED_KEY,)).fetchone()
    if row is None:
        return 0, -1
    lsn, _, seq = str(row[0]).partition(":")
    return int(lsn), int(seq)


def oldest_lsn(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT lsn FROM events ORDER BY lsn, seq LIMIT 1").fetchone()
    return int(row[0]) if row is not None else 0


def read_after(conn: sqlite3.Connection, after: Position, limit: int,
               types: frozenset[str] | None) -> tuple[list[Logged], Position, Position]:
    """Up to ``limit`` events after ``after`` (of ``types``), in one read snapshot.

    Returns ``(events, next_after, trimmed)``: ``next_after`` is where the next read starts (the
    last position examined), ``trimmed`` the log's trim point in the same snapshot, so the
    caller can tell if events it has not read yet were trimmed meanwhile.
    """
    conn.execute("BEGIN")
    try:
        trimmed = trimmed_upto(conn)
        rows = conn.execute(
            "SELECT lsn, seq, type, data, ts FROM events WHERE (lsn, seq) > (?, ?) "
            "ORDER BY lsn, seq LIMIT ?",
            (after[0], after[1], limit),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    out: list[Logged] = []
    last = after
    for lsn, seq, type_, data, ts in rows:
        last = (int(lsn), int(seq))
        if types is None or type_ in types:
            out.append(Logged(str(type_), int(lsn), int(seq), json.loads(data), float(ts)))
    return out, last, trimmed


def parse_position(value: str) -> Position:
    """An SSE event id (``"42"`` or ``"42.3"``) as a position; raises ValueError if it is not one."""
    text = value.strip()
    lsn_s, dot, seq_s = text.partition(".")
    if not lsn_s.isdigit() or (dot and not seq_s.isdigit()) or len(text) > 40:
        raise ValueError(value)
    return int(lsn_s), int(seq_s) if dot else 0


def event_id(lsn: int, seq: int) -> str:
    """The SSE ``id:`` of a logged event: its LSN, with ``.seq`` when it is not the first of it."""
    return str(lsn) if seq == 0 else f"{lsn}.{seq}"
