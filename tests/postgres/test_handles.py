"""Space handles on PostgreSQL are dropped when idle and come back transparently (issue 17).

``PgRegistry`` keeps a ``PostgresSpace`` per space a server uses; one unused for
``space_idle_unload_seconds`` with no subscriber here is dropped (``unload_idle``), so a server
that touches many spaces does not keep them all. In-process registries on the session's
database, plus one real server whose /health reports the handles it holds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engram.core.postgres import PostgresStore
from engram.settings import Settings
from engram.spaces.pg_registry import PgRegistry
from engram.testing.clients import RestSpaceClient

from .conftest import PgCluster, fresh_database, new_space, start_pg_server
from .test_server import new_space as new_served_space
from .test_server import vec


@pytest.fixture
def registry(store: PostgresStore, tmp_path: Path) -> Any:
    reg = PgRegistry(Settings(data_dir=tmp_path), store)
    reg.unload_idle(0.0)  # the default space's handle, made at start
    yield reg
    reg.close()


def test_idle_handles_are_dropped_and_come_back(registry: PgRegistry, store: PostgresStore) -> None:
    sids = [new_space(store) for _ in range(12)]
    handles = {sid: registry.get(sid) for sid in sids}
    assert registry.held() >= 12
    dropped = registry.unload_idle(0.0)
    assert set(sids) <= set(dropped) and registry.held() == 0
    # the next request gets a new handle that works as the old one did
    again = registry.get(sids[0])
    assert again is not handles[sids[0]]
    assert (again.dim, again.created_at) == (handles[sids[0]].dim, handles[sids[0]].created_at)
    assert registry.held() == 1
    # a handle used within the idle period stays
    assert registry.unload_idle(3600.0) == [] and registry.held() == 1


def test_a_handle_with_a_subscriber_is_kept(registry: PgRegistry, store: PostgresStore) -> None:
    quiet, watched = new_space(store), new_space(store)
    registry.get(quiet)
    handle, sub = registry.attach(registry.get(watched), lambda h: h.events.subscribe())
    assert registry.unload_idle(0.0) == [quiet]
    assert registry.get(watched) is handle
    sub.close()
    assert registry.unload_idle(0.0) == [watched]


def test_a_subscribe_racing_a_drop_puts_the_handle_back(registry: PgRegistry, store: PostgresStore) -> None:
    sid = new_space(store)
    got = registry.get(sid)  # a request has the handle ...
    assert registry.unload_idle(0.0) == [sid]  # ... the maintenance loop drops it ...
    held, sub = registry.attach(got, lambda h: h.events.subscribe())  # ... then the request subscribes
    assert held is got and registry.held() == 1
    # later requests (and the feed) see the handle that has the subscriber, not a fresh one
    assert registry.get(sid) is got and got.events.subscriber_count == 1
    sub.close()


def test_a_housekeeping_visit_keeps_no_handle(registry: PgRegistry, store: PostgresStore) -> None:
    sid = new_space(store)
    visit = registry.get(sid, keep=False)
    assert visit.id == sid and registry.held() == 0
    used = registry.get(sid)
    used.last_used -= 100
    registry.get(sid, keep=False)  # the visit does not make an idle handle look used
    assert registry.unload_idle(50.0) == [sid]


def test_a_server_touching_many_spaces_does_not_keep_them_all(pg: PgCluster, tmp_path: Path) -> None:
    srv = start_pg_server(tmp_path / "srv", fresh_database(pg, "handles"), space_idle_unload_seconds=1)
    try:
        sids = [new_served_space(srv) for _ in range(15)]
        for sid in sids:
            with RestSpaceClient(srv.http_url, sid) as c:
                c.remember(content=f"in {sid}", embedding=vec(1))
        # one space keeps a stream open: its handle must stay
        events: list[dict[str, Any]] = []
        opened = threading.Event()

        def collect() -> None:
            with RestSpaceClient(srv.http_url, sids[0]) as c:
                for frame in c.sse(on_open=opened.set):
                    if frame.get("event") == "stored":
                        events.append(frame)
                        return

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        assert opened.wait(30)
        with RestSpaceClient(srv.http_url, None) as c:
            deadline = time.monotonic() + 30
            held = c.system_health()["spaces_loaded"]
            while held > 1 and time.monotonic() < deadline:
                time.sleep(0.2)  # waits for the server's maintenance loop, not for an ordering
                held = c.system_health()["spaces_loaded"]
            assert held == 1, f"the server still holds {held} handles"
        # a dropped space answers as before, and the kept one still streams
        with RestSpaceClient(srv.http_url, sids[5]) as c:
            assert [m["content"] for m in c.list_all()] == [f"in {sids[5]}"]
            assert c.recall(embedding=vec(1))["results"][0]["memory"]["content"] == f"in {sids[5]}"
        with RestSpaceClient(srv.http_url, sids[0]) as c:
            c.remember(content="after the drop", embedding=vec(2))
        reader.join(30)
        assert [e["data"]["data"]["memory_id"] for e in events] and not reader.is_alive()
    finally:
        srv.stop()
