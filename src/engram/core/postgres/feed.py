"""The event feed of one server on PostgreSQL: the events table, in LSN order, to local streams.

Every write on every server logs its events in ``engram.events`` and sends a NOTIFY on commit
(store.py). This server publishes to a space's bus (its SSE and gRPC subscribers) only what it
reads from that table, its own writes included, so all servers deliver the same events in the
same order: ``(lsn, seq)``, which is commit order (the LSN counter row serialises the writers
of a space). One thread per server:

* it LISTENs (listener.py) and, when a notification arrives, reads the log of every watched
  space after the last position it published (one indexed range read per space);
* it also reads them every ``poll_seconds`` (0.5 s) whatever arrives: a notification can be
  missed (the LISTEN connection broke and was reopened, or PostgreSQL restarted), and the poll
  bounds the delay such a loss can cause. The table is the source of truth, so nothing is lost;
* a space is watched from its first subscriber on this server (``watch``, from the position the
  subscriber starts at) and unwatched once it has none; a space deleted on another server is
  noticed at the next poll and its subscribers are closed ("memory space deleted"); one replaced
  (restored with replace, or deleted and created again: ``spaces.incarnation`` differs from the
  handle's) too, as SQLite closes a replaced space's streams ("memory space replaced by a
  restore"): their positions are in the old space's log, which the new one does not continue.
  Before events are published the incarnation is read again (after the events), so no event of
  the new space ever reaches a stream of the old one, even when a write wakes the feed before
  the poll notices the replacement.

Subscribers resumed from a cursor first replay the table (``space.PgLogReader``) and drop the
live events they replayed already (``core.events.Subscription.resume_from``).
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from ...storage.eventlog import Logged, Position
from .listener import WriteListener
from .live import LiveEvent
from .space import PostgresSpace

log = logging.getLogger("engram.postgres.feed")

#: Why the streams of a replaced space end (SQLite's words, spaces/registry.py).
REPLACED = "memory space replaced by a restore"
#: Upper bound on the delay between a commit on another server and its delivery here, should its
#: notification be lost.
POLL_SECONDS = 0.5
#: Events read per query while catching up.
CHUNK = 1000


class EventFeed:
    """Publishes the logged events of watched spaces to their buses, in order, from one thread."""

    def __init__(self, dsn: str, poll_seconds: float = POLL_SECONDS, *, live: bool = False) -> None:
        """``live``: also publish the live-only events every server relays (live.py), its own too."""
        self.dsn = dsn
        self.live = live
        self.poll_seconds = poll_seconds
        self._watched: dict[str, tuple[PostgresSpace, Position]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engram-pg-feed", daemon=True)
        self._thread.start()

    def watch(self, space: PostgresSpace, start: Position) -> None:
        """Publish ``space``'s events after ``start`` (unless it is watched already: its position
        is then where this server's subscribers are, and a new subscriber joins from there)."""
        with self._lock:
            current = self._watched.get(space.id)
            if current is None or current[0] is not space:
                self._watched[space.id] = (space, start)

    def _run(self) -> None:
        listener: WriteListener | None = None
        next_poll = 0.0
        while not self._stop.is_set():
            woke = False
            live: list[LiveEvent] = []
            try:
                if listener is None:
                    listener = WriteListener(self.dsn, live=self.live)
                # At most 0.5 s per wait, whatever the poll interval, so close() is prompt.
                for _ in listener.wait(min(self.poll_seconds, POLL_SECONDS), stop_after=1):
                    woke = True
                live = listener.take_live()
            except psycopg.Error as exc:  # the LISTEN connection broke: poll until it is back
                log.warning("LISTEN connection lost (%s); polling every %.1f s until it reconnects",
                            exc, self.poll_seconds)
                if listener is not None:
                    listener.close_quietly()
                listener = None
                self._stop.wait(self.poll_seconds)
            poll = time.monotonic() >= next_poll
            if poll:
                next_poll = time.monotonic() + self.poll_seconds
            if live:
                self._publish_live(live)
            if woke or poll or live:
                self._pump(check_gone=poll)
        if listener is not None:
            listener.close_quietly()

    def _publish_live(self, events: list[LiveEvent]) -> None:
        """Each relayed event in its place: the recall saw its space at ``lsn``, so the logged
        events up to ``lsn`` were committed before its NOTIFY; they are published first (only
        they: a write committed after the recall answered comes after the event, as on SQLite)."""
        for space_id, type_, lsn, data in events:
            with self._lock:
                watched = self._watched.get(space_id)
            if watched is None:
                continue  # nobody here streams this space
            space, pos = watched
            if space.closed or not space.events.subscriber_count:
                continue
            try:
                if pos[0] < lsn:
                    self._pump_one(space, pos, False, upto=lsn)
            except psycopg.Error as exc:  # the database is unreachable: the event goes out anyway
                log.warning("reading the events of memory space %s failed: %s", space.id, exc)
            space.events.publish(type_, lsn, data)  # live-only: no log position

    def _pump(self, *, check_gone: bool) -> None:
        with self._lock:
            watched = list(self._watched.values())
        for space, pos in watched:
            try:
                self._pump_one(space, pos, check_gone)
            except psycopg.Error as exc:  # the database is unreachable: the next round retries
                log.warning("reading the events of memory space %s failed: %s", space.id, exc)
            except Exception:  # the feed must survive any one space's failure; it is logged
                log.exception("event feed failed for memory space %s", space.id)

    def _pump_one(self, space: PostgresSpace, pos: Position, check_gone: bool,
                  upto: int | None = None) -> None:
        """Publish ``space``'s logged events after ``pos`` (only those of LSN <= ``upto``, if given)."""
        if space.events.subscriber_count == 0 or space.closed:
            with self._lock:
                if self._watched.get(space.id, (None,))[0] is space:
                    del self._watched[space.id]
            return
        if check_gone and self._gone(space):
            return
        while True:
            events = space.store.events_after(space.id, pos, CHUNK)
            more = len(events) == CHUNK
            if upto is not None and events and events[-1].lsn > upto:
                events, more = [e for e in events if e.lsn <= upto], False
            if not events:
                return
            # Read after the events: if the space is still the handle's incarnation now, it was
            # when they were read (an incarnation never comes back), so they are the old space's.
            if self._gone(space):
                return
            space.events.publish_many([Logged(e.type, e.lsn, e.seq, e.data, e.ts) for e in events])
            pos = (events[-1].lsn, events[-1].seq)
            with self._lock:
                if self._watched.get(space.id, (None,))[0] is space:
                    self._watched[space.id] = (space, pos)
            if not more:
                return

    def _gone(self, space: PostgresSpace) -> bool:
        """True (and the space's streams closed) if ``space`` was deleted or replaced."""
        info = space.store.space(space.id)
        if info is not None and info.incarnation == space.incarnation:
            return False
        with self._lock:
            if self._watched.get(space.id, (None,))[0] is space:
                del self._watched[space.id]
        space.close("memory space deleted" if info is None else REPLACED)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.poll_seconds + 5)
