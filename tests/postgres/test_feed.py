"""The event feed of a server on PostgreSQL (core/postgres/feed.py): LISTEN wakes it, the poll
covers a notification that never came, and events reach the space's bus in LSN order."""

from __future__ import annotations

import time

from engram.core.events import Event
from engram.core.postgres import PostgresDatabase, PostgresStore
from engram.core.postgres.feed import EventFeed
from engram.core.postgres.space import PostgresSpace
from engram.settings import Settings
from engram.storage.eventlog import LAST_SEQ

from .conftest import PgCluster, new_space


def _next(sub: object, within: float) -> Event:
    item = sub.get_blocking(within)  # type: ignore[attr-defined]
    assert isinstance(item, Event), f"no event within {within} s (got {item!r})"
    return item


def _handle(store: PostgresStore, sid: str) -> PostgresSpace:
    info = store.space(sid)
    assert info is not None
    return PostgresSpace(sid, store, Settings(), time.time, dimension=4, incarnation=info.incarnation)


def test_a_notification_wakes_the_feed_long_before_its_poll(pg: PgCluster, db: PostgresDatabase,
                                                             store: PostgresStore) -> None:
    from engram.core.postgres import MemoryRow

    sid = new_space(store)
    space = _handle(store, sid)
    feed = EventFeed(pg.app, poll_seconds=30.0)  # the poll alone would take 30 s
    try:
        sub = space.events.subscribe()
        feed.watch(space, (space.last_lsn, LAST_SEQ))
        time.sleep(0.5)  # the first round (a poll) has run; from now on only a NOTIFY wakes it
        t0 = time.monotonic()
        store.remember(sid, MemoryRow(id="m1", content="woken"), None)
        store.remember(sid, MemoryRow(id="m2", content="in order"), None)
        got = [_next(sub, 10.0), _next(sub, 10.0)]
        assert time.monotonic() - t0 < 10.0
        assert [(e.lsn, e.data["memory_id"]) for e in got] == [(1, "m1"), (2, "m2")]
    finally:
        feed.close()


def test_the_poll_delivers_a_write_whose_notification_never_came(pg: PgCluster, db: PostgresDatabase,
                                                                 store: PostgresStore) -> None:
    sid = new_space(store)
    space = _handle(store, sid)
    feed = EventFeed(pg.app, poll_seconds=0.3)
    try:
        sub = space.events.subscribe()
        feed.watch(space, (space.last_lsn, LAST_SEQ))
        time.sleep(1.0)  # past the first round: what comes now comes from a later one
        # A write committed with no NOTIFY (as if the notification were lost): only the table has it.
        with db.space(sid) as tx:
            lsn = store.next_lsn(tx)
            store.record_event(tx, "stored", lsn, {"memory_id": "silent"})
        event = _next(sub, 10.0)
        assert (event.lsn, event.data["memory_id"], event.logged) == (1, "silent", True)
    finally:
        feed.close()
