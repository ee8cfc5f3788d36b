"""The event log on PostgreSQL: retention (trimming to a count) and the NOTIFY that wakes other
servers: a second "server" (its own pool and store) is woken by a write committed through the
first, and reads the events in LSN order."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from engram.core.filters import parse
from engram.core.postgres import MemoryRow, PostgresDatabase, PostgresStore
from engram.core.postgres.listener import WriteListener, parse_payload
from engram.storage.eventlog import LAST_SEQ

from .conftest import PgCluster, new_space


def test_trim_keeps_the_newest_events_and_remembers_the_trim_point(store: PostgresStore) -> None:
    sid = new_space(store)
    assert store.trim_events(sid, 10) is None and store.trimmed_upto(sid) == (0, -1)
    for i in range(6):
        store.remember(sid, MemoryRow(id=f"t{i}", content=f"n{i}"))
    assert store.trim_events(sid, 4) == (2, 0)
    assert [e.lsn for e in store.events_after(sid)] == [3, 4, 5, 6]
    assert store.trimmed_upto(sid) == (2, 0)
    assert store.space(sid).last_lsn == 6  # type: ignore[union-attr]  # trimming is not a write
    assert store.trim_events(sid, 0) == (6, 0) and store.events_after(sid) == []


def test_trim_point_is_inside_an_lsn(store: PostgresStore) -> None:
    sid = new_space(store)
    for i in range(3):
        store.remember(sid, MemoryRow(id=f"t{i}", content="x", metadata={"g": 1}))
    store.forget_matching(sid, parse({"g": 1}), "suppress")  # LSN 4, seq 0, 1, 2
    assert store.trim_events(sid, 2) == (4, 0)  # keeps (4, 1) and (4, 2): exactly the newest two
    assert [(e.lsn, e.seq) for e in store.events_after(sid)] == [(4, 1), (4, 2)]
    assert store.trimmed_upto(sid) == (4, 0)
    assert store.trim_events(sid, 2) is None and store.trimmed_upto(sid) == (4, 0)
    with pytest.raises(ValueError):
        store.trim_events(sid, -1)


def test_a_second_server_is_woken_by_a_write_of_the_first(pg: PgCluster, store: PostgresStore) -> None:
    sid, quiet = new_space(store), new_space(store)
    other_db = PostgresDatabase(pg.app, min_size=1, max_size=2)  # "server B": its own pool
    try:
        server_b = PostgresStore(other_db, vector_index=False)
        with WriteListener(pg.app) as listener:
            assert list(listener.wait(timeout=0.05)) == []
            store.remember_many(sid, [(MemoryRow(id="n1", content="one"), None),
                                      (MemoryRow(id="n2", content="two"), None)])  # one commit: LSN 1, 2
            store.remember(sid, MemoryRow(id="n3", content="three"))
            with pytest.raises(psycopg.errors.UniqueViolation):  # rolled back: no notification
                store.remember(sid, MemoryRow(id="n3", content="again"))
            store.associate(sid, "n1", "n3", 0.5)
            store.remember(quiet, MemoryRow(id="q", content="elsewhere"))
            woken = list(listener.wait(timeout=5, stop_after=4))
            assert woken == [(sid, 2), (sid, 3), (sid, 4), (quiet, 1)]  # commit order, last LSN of each
            events = server_b.events_after(sid)
            assert [(e.lsn, e.type) for e in events] == [(1, "stored"), (2, "stored"), (3, "stored"),
                                                         (4, "association")]
            # live: server B blocks on the listener; a write through A wakes it, and it reads just that
            got: list[list[tuple[int, str]]] = []

            def serve_b() -> None:
                for space, lsn in listener.wait(timeout=10, stop_after=1):
                    fresh = server_b.events_after(space, (4, LAST_SEQ))
                    got.append([(e.lsn, e.data["memory_id"]) for e in fresh if e.lsn <= lsn])

            waiter = threading.Thread(target=serve_b)
            waiter.start()
            time.sleep(0.2)  # B is (most likely) blocked by now; had it not started, the note would queue
            store.remember(sid, MemoryRow(id="n5", content="five"))
            waiter.join(timeout=15)
            assert got == [[(5, "n5")]]
    finally:
        other_db.close()


def test_payload_parsing() -> None:
    assert parse_payload("12:space:with:colons") == ("space:with:colons", 12)
    for bad in ("12", "12:", "x:sp"):
        with pytest.raises(ValueError):
            parse_payload(bad)
