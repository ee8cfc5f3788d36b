"""SSE streams against a real server: per-space isolation with concurrent subscribers and writers,
event ids = the space's LSN, type / importance / confidence filters, heartbeats, lagged notices for a
slow consumer, disconnect handling, and the end of a stream when its space is deleted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from engram.testing.sse_raw import FrameParser

API = "/api/v1"


class SSEReader:
    """One open SSE response, read synchronously frame by frame."""

    def __init__(
        self,
        base_url: str,
        path: str = f"{API}/stream/activities",
        space: str | None = None,
        **params: Any,
    ) -> None:
        headers = {"X-Memory-Space": space} if space else {}
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=30.0))
        self._cm = self.client.stream("GET", path, headers=headers, params=params)
        self.response = self._cm.__enter__()
        self._parser = FrameParser()
        self.comments = self._parser.comments
        self.ended = False
        if self.response.status_code == 200:
            self._lines = self.response.iter_lines()
            first = next(self._lines)  # the server writes this after subscribing: we are live
            assert first.startswith(": subscribed"), first

    def next(self) -> dict[str, Any]:
        """The next event frame: {"event", "id", "data"}; comments are collected on the side."""
        for line in self._lines:
            frame = self._parser.feed(line)
            if frame is not None and "data" in frame:
                return frame
        self.ended = True
        raise EOFError("stream ended")

    def until(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Frames up to and including the first one matching ``pred``."""
        out = []
        while True:
            frame = self.next()
            out.append(frame)
            if pred(frame):
                return out

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


def stored(memory_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("event") == "stored" and f["data"]["data"]["memory_id"] == memory_id


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory(
        spaces=["alpha", "beta"], settings={"stream_heartbeat_seconds": 0.3}, name="sse"
    )


@pytest.fixture(scope="module")
def http(srv) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, timeout=30) as client:
        yield client


def remember(http: httpx.Client, space: str, **memory: Any) -> dict[str, Any]:
    resp = http.post(f"{API}/memories/remember", headers={"X-Memory-Space": space}, json=memory)
    assert resp.status_code == 201, resp.text
    return resp.json()


def subscribers(http: httpx.Client, space: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f'engram_stream_subscribers{{memory_space="{space}",transport="rest"}}'):
            return float(line.split()[-1])
    return 0.0


def test_two_subscribers_see_only_their_own_space(srv, http: httpx.Client) -> None:
    a = SSEReader(srv.http_url, space="alpha")
    b = SSEReader(srv.http_url, space="beta")
    try:
        receipts: dict[str, dict[str, Any]] = {}

        def write(space: str, i: int) -> None:
            with httpx.Client(base_url=srv.http_url, timeout=30) as c:
                r = remember(c, space, id=f"{space}-{i}", content=f"{space} item {i}")
                receipts[f"{space}-{i}"] = r

        with ThreadPoolExecutor(8) as pool:  # writes to both spaces interleave
            list(pool.map(lambda job: write(*job), [(s, i) for i in range(15) for s in ("alpha", "beta")]))
        for space in ("alpha", "beta"):
            receipts[f"{space}-end"] = remember(http, space, id=f"{space}-end", content="end marker")
        for reader, space in ((a, "alpha"), (b, "beta")):
            frames = reader.until(stored(f"{space}-end"))
            assert {f["data"]["memory_space_id"] for f in frames} == {space}
            ids = [f["data"]["data"]["memory_id"] for f in frames if f["event"] == "stored"]
            assert sorted(ids) == sorted([f"{space}-{i}" for i in range(15)] + [f"{space}-end"])
            lsns = [int(f["id"]) for f in frames]
            assert lsns == sorted(lsns)
            for f in frames:  # id: is the LSN the write was acknowledged with
                assert int(f["id"]) == f["data"]["lsn"] == receipts[f["data"]["data"]["memory_id"]]["lsn"]
    finally:
        a.close()
        b.close()


def test_type_filter(srv, http: httpx.Client) -> None:
    only_recalled = SSEReader(srv.http_url, f"{API}/stream/activities", space="alpha", types="recalled")
    memories = SSEReader(srv.http_url, f"{API}/stream/memories", space="alpha", types="stored,recalled")
    try:
        remember(http, "alpha", id="tf-1", content="the heron nests by the weir")
        assert (
            http.get(
                f"{API}/memories/recall", headers={"X-Memory-Space": "alpha"}, params={"query": "heron"}
            ).status_code
            == 200
        )
        frame = only_recalled.next()
        assert frame["event"] == "recalled", frame
        frames = memories.until(lambda f: f["event"] == "recalled")
        assert [f["event"] for f in frames][-2:] == ["stored", "recalled"]
        assert {f["event"] for f in frames} <= {"stored", "recalled"}
    finally:
        only_recalled.close()
        memories.close()


def test_consolidation_stream_rejects_memory_types(srv) -> None:
    r = SSEReader(srv.http_url, f"{API}/stream/consolidation", space="alpha", types="stored")
    try:
        assert r.response.status_code == 400
        r.response.read()
        assert r.response.json()["error"]["code"] == "INVALID_INPUT"
    finally:
        r.close()


def test_confidence_and_importance_filters(srv, http: httpx.Client) -> None:
    conf = SSEReader(srv.http_url, space="beta", types="stored", min_confidence=0.8)
    imp = SSEReader(srv.http_url, space="beta", types="stored", min_importance=0.6)
    try:
        remember(http, "beta", id="low-conf", content="x", confidence=0.3)
        remember(http, "beta", id="high-conf", content="x", confidence=0.9)
        for i, importance in enumerate((0.2, 0.9)):
            r = http.post(
                f"{API}/episodes/remember",
                headers={"X-Memory-Space": "beta"},
                json={
                    "id": f"ep-imp-{i}",
                    "when": "2026-01-01T00:00:00Z",
                    "what": "x",
                    "importance": importance,
                    "confidence": 0.95,
                },
            )
            assert r.status_code == 201
        first = conf.next()
        assert first["data"]["data"]["memory_id"] == "high-conf"
        assert conf.next()["data"]["data"]["memory_id"] == "ep-imp-0"
        assert imp.next()["data"]["data"]["memory_id"] == "ep-imp-1"  # plain memories carry no importance
    finally:
        conf.close()
        imp.close()


def test_heartbeats_while_idle(srv) -> None:
    r = SSEReader(srv.http_url, space="alpha")
    try:
        seen = []
        for line in r._lines:
            if line.startswith(":"):
                seen.append(line)
            if len(seen) >= 2:
                break
        assert seen == [": heartbeat", ": heartbeat"]
    finally:
        r.close()


def test_fallback_stream_is_flagged(srv) -> None:
    r = SSEReader(srv.http_url)  # no space: the default space, deprecated
    try:
        assert r.response.status_code == 200
        assert r.response.headers["deprecation"] == "true"
        assert r.response.headers["content-type"].startswith("text/event-stream")
        assert r.response.headers["x-memory-space"] == "default"
    finally:
        r.close()


def test_disconnect_unsubscribes(srv, http: httpx.Client) -> None:
    assert http.post(f"{API}/spaces", json={"id": "disc"}).status_code == 201
    readers = [SSEReader(srv.http_url, space="disc") for _ in range(3)]
    assert subscribers(http, "disc") == 3
    for r in readers:
        r.close()
    deadline = time.monotonic() + 10
    while subscribers(http, "disc") != 0:  # the server notices the disconnects on its own
        assert time.monotonic() < deadline, "subscriptions were not released after the clients left"
        time.sleep(0.02)
    remember(http, "disc", content="nobody listens")  # publishing to nobody is fine


def test_stream_ends_when_space_is_deleted(srv, http: httpx.Client) -> None:
    assert http.post(f"{API}/spaces", json={"id": "ephemeral"}).status_code == 201
    r = SSEReader(srv.http_url, space="ephemeral")
    try:
        assert http.delete(f"{API}/spaces/ephemeral").status_code == 200
        frame = r.next()
        assert frame["event"] == "end" and "deleted" in frame["data"]["reason"]
        with pytest.raises(EOFError):
            r.next()
    finally:
        r.close()


def test_unknown_space_stream_is_404(srv) -> None:
    r = SSEReader(srv.http_url, space="no-such-space")
    try:
        assert r.response.status_code == 404
        r.response.read()
        assert r.response.json()["error"]["code"] == "MEMORY_SPACE_NOT_FOUND"
    finally:
        r.close()


def test_slow_consumer_gets_lagged(module_server_factory) -> None:
    srv = module_server_factory(spaces=["alpha"], settings={"subscriber_queue_depth": 2}, name="sse-lag")
    reader = SSEReader(srv.http_url, space="alpha", types="stored")
    clients = [
        httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "alpha"}, timeout=30)
        for _ in range(16)
    ]
    try:
        lagged: list[dict[str, Any]] = []
        with ThreadPoolExecutor(16) as pool:
            for rnd in range(10):  # bursts of concurrent writes are group-committed and published together
                burst = [(clients[i % 16], {"content": f"r{rnd} {i}"}) for i in range(48)]
                list(pool.map(lambda job: job[0].post(f"{API}/memories/remember", json=job[1]), burst))
                marker = remember(clients[0], "alpha", id=f"marker-{rnd}", content="marker")
                is_marker = stored(f"marker-{rnd}")
                frames = reader.until(lambda f, done=is_marker: f["event"] == "lagged" or done(f))
                lagged = [f for f in frames if f["event"] == "lagged"]
                if lagged:
                    break
        assert lagged, "a consumer with a queue of 2 never lagged behind bursts of 48 writes"
        notice = lagged[0]["data"]
        assert notice["memory_space_id"] == "alpha" and notice["missed"] >= 1
        assert 0 < notice["last_lsn"] <= marker["lsn"]
        # the stream goes on after the notice, and the writers were never blocked
        last = remember(clients[0], "alpha", id="after-lag", content="after")
        assert reader.until(stored("after-lag"))[-1]["data"]["lsn"] == last["lsn"]
        assert "engram_stream_lagged_total" in clients[0].get("/metrics").text
    finally:
        reader.close()
        for c in clients:
            c.close()
