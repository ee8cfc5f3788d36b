"""Stream limits under hostile clients (issue 11, item 4), against real server processes.

* subscriber caps per client (peer IP) and per space, on SSE and on gRPC (``Stream`` and a
  ``MemoryFlow`` subscribe): beyond them 429 ``TOO_MANY_SUBSCRIBERS`` with ``Retry-After`` /
  ``RESOURCE_EXHAUSTED``, while the subscribers already open keep receiving;
* a reader that subscribes and then never reads is dropped after ``subscriber_max_lag_seconds``
  (SSE: its connection is cut; gRPC: ``RESOURCE_EXHAUSTED`` "slow consumer") while a healthy
  subscriber of the same space and the writers go on;
* 500 SSE subscribers on one space: writes there and recalls in another space still succeed, and
  every subscriber gets the events.

Clients are raw sockets (``engram.testing.sse_raw``) so a test can hold hundreds of them, be
several clients by binding to 127.0.0.2 / 127.0.0.3, or stop reading for good.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess, scratch_dir
from engram.testing.sse_raw import RawSubscriber

API = "/api/v1"
HOST = "127.0.0.1"
TCP_CLOSE = 7  # Linux tcpi_state after a reset


def _port(srv: EngramProcess) -> int:
    return int(srv.http_url.rsplit(":", 1)[1])


def _subscribers(srv: EngramProcess, space: str, transport: str) -> float:
    text = httpx.get(srv.http_url + "/metrics", timeout=10).text
    prefix = f'engram_stream_subscribers{{memory_space="{space}",transport="{transport}"}}'
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def _wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _remember(http: httpx.Client, space: str, memory_id: str, content: str = "x") -> dict[str, Any]:
    resp = http.post(f"{API}/memories/remember", headers={"X-Memory-Space": space},
                     json={"id": memory_id, "content": content})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _refusal(sub: RawSubscriber, limit: str) -> None:
    assert sub.status == 429, (sub.status, sub.body)
    err = sub.error()
    assert err["code"] == "TOO_MANY_SUBSCRIBERS"
    assert limit in err["message"] and err["suggestion"] and err["details"]["limit"] == limit
    assert int(sub.headers["retry-after"]) > 0


# -- caps ---------------------------------------------------------------------------------------


def test_sse_caps_per_client_and_per_space(engram_server_factory: Callable[..., EngramProcess]) -> None:
    srv = engram_server_factory(spaces=["alpha", "beta"],
                                settings={"max_subscribers_per_client": 2, "max_subscribers_per_space": 3})
    port = _port(srv)

    async def scenario() -> None:
        a1 = await RawSubscriber.open(HOST, port, "alpha")
        a2 = await RawSubscriber.open(HOST, port, "alpha")
        assert (a1.status, a2.status) == (200, 200)
        over_client = await RawSubscriber.open(HOST, port, "beta")  # 127.0.0.1 holds 2 already
        _refusal(over_client, "max_subscribers_per_client")
        b1 = await RawSubscriber.open(HOST, port, "alpha", source="127.0.0.2")  # another client
        assert b1.status == 200
        over_space = await RawSubscriber.open(HOST, port, "alpha", source="127.0.0.3")  # alpha holds 3
        _refusal(over_space, "max_subscribers_per_space")
        b2 = await RawSubscriber.open(HOST, port, "beta", source="127.0.0.2")  # beta is not full
        assert b2.status == 200

        open_subs = [a1, a2, b1, b2]
        readers = [asyncio.ensure_future(s.consume()) for s in open_subs]
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:  # the open ones keep receiving
            await asyncio.to_thread(_remember, http, "alpha", "cap-alpha")
            await asyncio.to_thread(_remember, http, "beta", "cap-beta")
        for sub, memory_id in ((a1, "cap-alpha"), (a2, "cap-alpha"), (b1, "cap-alpha"), (b2, "cap-beta")):
            assert await sub.wait_for(lambda s, m=memory_id: m in s.stored_ids, 20), memory_id

        a1.close()  # a slot given back is usable again, by the same client
        await asyncio.to_thread(_wait_until, lambda: _subscribers(srv, "alpha", "rest") == 2, 10,
                                "the closed subscriber was not released")
        again = await RawSubscriber.open(HOST, port, "beta")
        assert again.status == 200
        for sub in (*open_subs, again, over_client, over_space):
            sub.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    asyncio.run(scenario())


def _open_stream(stub: spb_grpc.EngramServiceStub, space: str) -> Any:
    call = stub.Stream(spb.StreamRequest(memory_space_id=space, event_types=[pb.EVENT_TYPE_STORED]))
    call.initial_metadata()  # sent once subscribed (or the error status, for a refused call)
    return call


def _refused_stream(call: Any, limit: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limit in info.value.details()
    assert dict(info.value.trailing_metadata())["engram-error-code"] == "TOO_MANY_SUBSCRIBERS"


def _next_event(call: Any) -> Any:
    for resp in call:
        if resp.HasField("event"):
            return resp.event
    raise AssertionError("stream ended without an event")


def test_grpc_caps_per_space_and_per_client(engram_server_factory: Callable[..., EngramProcess]) -> None:
    srv = engram_server_factory(spaces=["alpha", "beta"],
                                settings={"max_subscribers_per_client": 3, "max_subscribers_per_space": 2})
    with grpc.insecure_channel(srv.grpc_target) as channel, httpx.Client(base_url=srv.http_url) as http:
        stub = spb_grpc.EngramServiceStub(channel)
        a1, a2 = _open_stream(stub, "alpha"), _open_stream(stub, "alpha")
        _refused_stream(_open_stream(stub, "alpha"), "max_subscribers_per_space")
        b1 = _open_stream(stub, "beta")
        _refused_stream(_open_stream(stub, "beta"), "max_subscribers_per_client")

        # a MemoryFlow subscribe beyond the cap is answered in the flow, which stays usable
        flow = stub.MemoryFlow(iter([
            spb.MemoryFlowRequest(sequence=1, memory_space_id="beta", subscribe=pb.FlowSubscribe()),
            spb.MemoryFlowRequest(sequence=2, memory_space_id="beta",
                                  remember=pb.MemoryInput(id="flow-after", content="still served")),
        ]), timeout=30)
        answers = {r.sequence: r for r in flow}
        assert answers[1].error.code == "TOO_MANY_SUBSCRIBERS"
        assert answers[1].error.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert answers[2].HasField("store_receipt")

        # the open streams keep receiving
        _remember(http, "alpha", "g-alpha")
        _remember(http, "beta", "g-beta")
        assert _next_event(a1).memory_id == "g-alpha"
        assert _next_event(a2).memory_id == "g-alpha"
        assert _next_event(b1).memory_id in ("g-beta", "flow-after")
        for call in (a1, a2, b1):
            call.cancel()


# -- slow consumers -----------------------------------------------------------------------------

# Small enough that a stalled reader is dropped within seconds, large enough that a healthy reader in
# this (busy) test process is not.
SLOW = {"subscriber_queue_depth": 64, "subscriber_max_lag_seconds": 2.0}


@pytest.fixture(scope="module")
def slow_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    """One server for both stalled-reader tests, each on its own space (subscriber counts are per
    space and transport, so neither sees the other's subscribers; the tests run one after the other).
    Its data is on tmpfs (``scratch_dir``): the writers only have to outrun a stalled reader, and
    no fsync is tested here."""
    data = scratch_dir("engram-slow-")
    try:
        with EngramProcess.start(tmp_path_factory.mktemp("slow"), ["slow-sse", "slow-grpc"], SLOW,
                                 data_dir=data) as srv:
            yield srv
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _write_until(srv: EngramProcess, space: str, done: Callable[[], bool], limit: float) -> int:
    """Write ~400-byte events into ``space`` from 4 threads until ``done()``; every write must succeed."""
    stop = threading.Event()
    count = [0]
    failures: list[str] = []

    def writer(w: int) -> None:
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:
            n = 0
            while not stop.is_set():
                resp = http.post(f"{API}/memories/remember", headers={"X-Memory-Space": space},
                                 json={"content": f"w{w} n{n} " + "payload " * 40})
                if resp.status_code != 201:
                    failures.append(resp.text)
                count[0] += 1
                n += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    try:
        _wait_until(done, limit, f"not done after {limit} s of writes")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:3]
    return count[0]


def test_sse_stalled_reader_is_dropped(slow_srv: EngramProcess) -> None:
    srv, space = slow_srv, "slow-sse"
    port = _port(srv)
    loop = asyncio.new_event_loop()
    # the stalled one: a 4 KiB receive window, and never a read (until the end of the test)
    stalled = loop.run_until_complete(RawSubscriber.open(HOST, port, space, rcvbuf=4096))
    stalled.stall()
    healthy = loop.run_until_complete(RawSubscriber.open(HOST, port, space))
    assert stalled.status == healthy.status == 200
    healthy.light = True
    healthy.watch_ids.add("after-drop")
    reading = threading.Thread(target=loop.run_until_complete, args=(healthy.consume(),), daemon=True)
    reading.start()
    try:
        assert _subscribers(srv, space, "rest") == 2
        _write_until(srv, space, lambda: _subscribers(srv, space, "rest") == 1, 60)
        # The server cut the dropped reader's connection itself (a reset reached it while it was
        # still not reading), so neither the socket nor its backlog waits on that client.
        _wait_until(lambda: stalled.tcp_state() == TCP_CLOSE, 10, "the stalled connection was not reset")
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:
            _remember(http, space, "after-drop")  # writers were never blocked, and still are not
        _wait_until(lambda: "after-drop" in healthy.stored_ids, 30, "the healthy subscriber fell behind")
        assert not healthy.eof and "end" not in healthy.counts  # the healthy one was not dropped
        assert healthy.counts["stored"] > 100
    finally:
        loop.call_soon_threadsafe(healthy.close)
        reading.join(10)
    # The dropped reader, reading at last: its connection was cut (reset), or it ends with `end`.
    stalled.writer.transport.resume_reading()  # type: ignore[attr-defined]
    try:
        loop.run_until_complete(asyncio.wait_for(stalled.consume(), 20))
    except TimeoutError:
        pytest.fail("the stalled subscriber's connection is still open")
    finally:
        stalled.close()
        loop.close()
    ends = [f for f in stalled.frames if f.get("event") == "end"]
    assert stalled.reset or (ends and "slow consumer" in ends[-1]["data"]["reason"]), stalled.frames[-3:]


def test_grpc_stalled_stream_is_dropped(slow_srv: EngramProcess) -> None:
    srv, space = slow_srv, "slow-grpc"
    # No BDP probing: the HTTP/2 window stays 64 KiB, so the stalled stream's server side fills up.
    stalled_channel = grpc.insecure_channel(srv.grpc_target, options=[("grpc.http2.bdp_probe", 0)])
    channel = grpc.insecure_channel(srv.grpc_target)
    try:
        stalled = _open_stream(spb_grpc.EngramServiceStub(stalled_channel), space)
        healthy = _open_stream(spb_grpc.EngramServiceStub(channel), space)
        got: list[str] = []
        ended: list[Any] = []

        def read() -> None:
            try:
                for resp in healthy:
                    if resp.HasField("event"):
                        got.append(resp.event.memory_id)
            except grpc.RpcError as exc:
                ended.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        _write_until(srv, space, lambda: _subscribers(srv, space, "grpc") == 1, 60)
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:
            _remember(http, space, "after-drop")
        _wait_until(lambda: "after-drop" in got, 30, "the healthy stream fell behind")
        assert len(got) > 100 and not ended  # the healthy stream was not dropped

        # the stalled stream, read at last: what was in flight, then the slow-consumer status
        with pytest.raises(grpc.RpcError) as info:
            for _ in stalled:
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "slow consumer" in info.value.details()
        healthy.cancel()
        reader.join(10)
    finally:
        stalled_channel.close()
        channel.close()


# -- many subscribers ---------------------------------------------------------------------------


def test_500_sse_subscribers_on_one_space(engram_server_factory: Callable[..., EngramProcess]) -> None:
    n = 500
    srv = engram_server_factory(spaces=["crowd", "quiet"], settings={
        "max_subscribers_per_space": n + 10, "max_subscribers_per_client": n + 10, "max_subscribers": n + 10,
    })
    port = _port(srv)

    async def scenario() -> None:
        subs: list[RawSubscriber] = []
        for _wave in range(n // 50):  # in waves: the listen backlog is not the subject here
            subs += await asyncio.gather(*(RawSubscriber.open(HOST, port, "crowd") for _ in range(50)))
        assert [s.status for s in subs] == [200] * n
        for sub in subs:
            sub.light = True
            sub.watch_ids.add("crowd-last")
        readers = [asyncio.ensure_future(s.consume()) for s in subs]

        def traffic() -> None:
            with httpx.Client(base_url=srv.http_url, timeout=60) as http:
                _remember(http, "quiet", "q-1", "the heron by the weir")
                for i in range(20):
                    _remember(http, "crowd", f"crowd-{i}")
                    resp = http.get(f"{API}/memories/recall", headers={"X-Memory-Space": "quiet"},
                                    params={"query": "heron"})
                    assert resp.status_code == 200, resp.text
                _remember(http, "crowd", "crowd-last")

        await asyncio.to_thread(traffic)
        last = [s.wait_for(lambda x: "crowd-last" in x.stored_ids, 60) for s in subs]
        reached = await asyncio.gather(*last)
        assert all(reached), f"{reached.count(False)} subscribers missed the last event"
        assert all(s.counts.get("stored", 0) + s.counts.get("lagged", 0) >= 1 for s in subs)
        for sub in subs:
            sub.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    asyncio.run(scenario())
