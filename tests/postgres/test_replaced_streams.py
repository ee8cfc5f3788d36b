"""A space replaced by a restore through one server ends the streams other servers hold open on it,
as SQLite ends a replaced space's streams (``event: end``, "memory space replaced by a restore"),
and none of them ever gets an event of the new space; a stream opened afterwards streams the new
space (core/postgres/feed.py, ``spaces.incarnation``, migration 5)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engram.testing.clients import RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers
from .test_server import vec


@pytest.fixture(scope="module")
def servers(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    dsn = fresh_database(pg, "replaced")
    with pg_servers(dsn, tmp_path_factory, ("pa", "pb")) as pair:
        yield pair


class Reader:
    """An SSE stream of one space on one server, read in a thread until the server ends it."""

    def __init__(self, srv: EngramProcess, sid: str, stop_on: str | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(srv, sid, stop_on), daemon=True)
        self._thread.start()
        assert self.opened.wait(30)

    def _read(self, srv: EngramProcess, sid: str, stop_on: str | None) -> None:
        with RestSpaceClient(srv.http_url, sid) as c:
            for frame in c.sse(on_open=self.opened.set):
                self.frames.append(frame)
                data = frame.get("data")
                mid = data.get("data", {}).get("memory_id") if isinstance(data, dict) else None
                if frame.get("event") == "end" or (stop_on and mid == stop_on):
                    return

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stored(self) -> list[str]:
        return [f["data"]["data"]["memory_id"] for f in self.frames if f.get("event") == "stored"]


def test_a_restore_with_replace_ends_the_other_servers_streams(servers: tuple[EngramProcess,
                                                                             EngramProcess]) -> None:
    a, b = servers
    sid = f"rp-{uuid.uuid4().hex[:8]}"
    assert httpx.post(a.http_url + "/api/v1/spaces", json={"id": sid, "dimension": 4},
                      timeout=30).status_code == 201
    with RestSpaceClient(a.http_url, sid) as on_a:
        on_a.remember(id="old-1", content="before the backup", embedding=vec(0))
        taken = httpx.get(f"{a.http_url}/api/v1/spaces/{sid}/backup", timeout=30)
        assert taken.status_code == 200
        for i in range(2, 5):  # the live space moves on to LSN 4
            on_a.remember(id=f"old-{i}", content="after the backup", embedding=vec(i))
        seen_b = Reader(b, sid, stop_on="old-4-mark")
        on_a.remember(id="old-4-mark", content="the stream on B is live", embedding=vec(1))
        assert seen_b.join(30) and seen_b.stored() == ["old-4-mark"]  # B streams the old space
        on_b = Reader(b, sid)  # the stream that must end
        put = httpx.post(f"{a.http_url}/api/v1/spaces/{sid}/restore", params={"replace": "true"},
                         content=taken.content, timeout=30)
        assert put.status_code in (200, 201), put.text
        # the restored space starts again at LSN 1: these take LSNs 2..7, past the old stream's 5
        for i in range(6):
            on_a.remember(id=f"new-{i}", content="in the restored space", embedding=vec(i))
    assert on_b.join(15), "B's stream of the replaced space did not end"
    end = on_b.frames[-1]
    assert end["event"] == "end" and end["data"]["reason"] == "memory space replaced by a restore"
    assert not [m for m in on_b.stored() if m.startswith("new-")], on_b.stored()
    # a stream opened on B now is the restored space's
    fresh = Reader(b, sid, stop_on="after")
    with RestSpaceClient(a.http_url, sid) as on_a:
        on_a.remember(id="after", content="streamed", embedding=vec(3))
    assert fresh.join(30) and fresh.stored() == ["after"]
