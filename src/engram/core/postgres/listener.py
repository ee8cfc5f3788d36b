"""Wake-up across servers: LISTEN for the NOTIFY every committed write sends (SPEC §13).

A write's transaction runs ``pg_notify('engram_events', '<lsn>:<space>')`` (``queries.NOTIFY_WRITE``);
PostgreSQL delivers it to every connection listening on the channel when, and only if, that
transaction commits, in commit order. A server that serves a space's feed from a write made by
another server listens here, and on ``(space, lsn)`` reads the log after the last position it
delivered (``PostgresStore.events_after``): the notification says only *that* something
committed; the events table is what is read, so a missed or coalesced notification loses
nothing as long as the reader resumes from its own position.

The listener holds one dedicated connection (LISTEN needs a session that stays open; it cannot
be a pooled transaction). Notifications reveal space ids and LSNs to every listener of the
database, never content.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg

from . import queries as q
from .live import CHANNEL as LIVE_CHANNEL
from .live import LISTEN as LIVE_LISTEN
from .live import LiveEvent
from .live import decode as decode_live


def parse_payload(payload: str) -> tuple[str, int]:
    """``'<lsn>:<space>'`` -> ``(space, lsn)`` (the LSN first: a space id may hold ``:``)."""
    lsn, sep, space = payload.partition(":")
    if not sep or not space:
        raise ValueError(f"not an Engram write notification: {payload!r}")
    return space, int(lsn)


class WriteListener:
    """A LISTENing connection that yields ``(space, lsn)`` for each committed write.

    With ``live=True`` it also LISTENs to the live-only events other servers relay (live.py):
    those are not yielded but kept, decoded, for :meth:`take_live`."""

    def __init__(self, dsn: str, *, live: bool = False) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(q.LISTEN)
        if live:
            self.conn.execute(LIVE_LISTEN)
        self._live: list[LiveEvent] = []

    def wait(self, timeout: float, stop_after: int | None = None) -> Iterator[tuple[str, int]]:
        """Notifications as they arrive, for at most ``timeout`` seconds (or ``stop_after`` of them)."""
        for note in self.conn.notifies(timeout=timeout, stop_after=stop_after):
            if note.channel == q.NOTIFY_CHANNEL:
                yield parse_payload(note.payload)
            elif note.channel == LIVE_CHANNEL:
                try:
                    self._live.append(decode_live(note.payload))
                except ValueError:
                    continue  # not one of ours (someone else NOTIFYing on the channel): ignored

    def take_live(self) -> list[LiveEvent]:
        """The live events received since the last call, in arrival order."""
        out, self._live = self._live, []
        return out

    def close(self) -> None:
        self.conn.close()

    def close_quietly(self) -> None:
        """Close a connection that may be broken already (closing it must not raise again)."""
        with contextlib.suppress(psycopg.Error):
            self.conn.close()

    def __enter__(self) -> WriteListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
