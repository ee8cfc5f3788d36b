"""Hostile gRPC clients against a real server: repeated or empty space metadata, garbage protobuf on
every RPC, deleting a space under its open streams, the concurrent-RPC and per-connection stream caps,
keepalive ping abuse and idle connections. Each test checks that the server keeps serving others."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess

SERVICE = spb.DESCRIPTOR.services_by_name["EngramService"]
GARBAGE = (b"\xff\xff\xff\xff", b"\x0a\x05ab")  # a corrupt tag; a field cut short


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    with EngramProcess.start(tmp_path_factory.mktemp("grpc-hostile"), spaces=["alpha", "beta"],
                             settings={"stream_heartbeat_seconds": 2}) as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(srv: EngramProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> spb_grpc.EngramServiceStub:
    return spb_grpc.EngramServiceStub(channel)


def trailer(err: grpc.RpcError, key: str) -> Any:
    call: Any = err  # an RpcError raised by a call is also a grpc.Call
    return dict(call.trailing_metadata() or ()).get(key)


def detail_of(err: grpc.RpcError) -> pb.ErrorDetail:
    raw = trailer(err, "engram-error-bin")
    assert raw, f"no error envelope in the trailers of {err}"
    return pb.ErrorDetail.FromString(raw)


def count(stub: spb_grpc.EngramServiceStub, space: str) -> int:
    return int(stub.ListMemories(spb.ListMemoriesRequest(memory_space_id=space), timeout=10).total)


def remember(space: str, content: str) -> spb.RememberRequest:
    return spb.RememberRequest(memory=pb.MemoryInput(content=content), memory_space_id=space)


# -- x-memory-space metadata ---------------------------------------------------------------


def test_repeated_metadata_with_different_values_is_a_conflict(stub: spb_grpc.EngramServiceStub) -> None:
    before = (count(stub, "alpha"), count(stub, "beta"))
    meta = (("x-memory-space", "alpha"), ("x-memory-space", "beta"))
    with pytest.raises(grpc.RpcError) as ei:
        stub.Remember(remember("", "two spaces at once"), metadata=meta, timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer(ei.value, "engram-error-code") == "MEMORY_SPACE_CONFLICT"
    assert "alpha" in str(ei.value.details()) and "beta" in str(ei.value.details())
    # a server stream too: refused before it subscribes
    with pytest.raises(grpc.RpcError) as es:
        next(iter(stub.Stream(spb.StreamRequest(), metadata=meta, timeout=10)))
    assert es.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer(es.value, "engram-error-code") == "MEMORY_SPACE_CONFLICT"
    assert (count(stub, "alpha"), count(stub, "beta")) == before


def test_repeated_equal_metadata_is_one_space(stub: spb_grpc.EngramServiceStub) -> None:
    before = count(stub, "beta")
    meta = (("x-memory-space", "beta"), ("x-memory-space", "beta"))
    resp, call = stub.Remember.with_call(remember("", "said twice, same space"), metadata=meta, timeout=10)
    assert resp.receipt.memory_space_id == "beta"
    assert not any(k == "engram-warning" for k, _ in call.trailing_metadata() or ())
    assert count(stub, "beta") == before + 1


def test_empty_metadata_is_an_invalid_space_not_a_fallback(stub: spb_grpc.EngramServiceStub) -> None:
    before = count(stub, "default")
    with pytest.raises(grpc.RpcError) as ei:
        stub.Remember(remember("", "where does this go"), metadata=(("x-memory-space", ""),), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer(ei.value, "engram-error-code") == "INVALID_MEMORY_SPACE"
    assert "empty" in detail_of(ei.value).message
    # with the field set, an empty metadata value is still refused (it is not "absent")
    with pytest.raises(grpc.RpcError) as ef:
        stub.Remember(remember("alpha", "field and empty metadata"), metadata=(("x-memory-space", ""),),
                      timeout=10)
    assert trailer(ef.value, "engram-error-code") == "INVALID_MEMORY_SPACE"
    assert count(stub, "default") == before


# -- garbage protobuf ---------------------------------------------------------------------


def _raw_call(ch: grpc.Channel, method: Any, payload: bytes) -> grpc.RpcError:
    """Send ``payload`` as the request bytes of ``method``; return the error it ends with."""
    channel: Any = ch  # no serializers: the bytes go out as they are
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        if method.client_streaming:
            call = channel.stream_stream(path)(iter([payload]), timeout=10)
            list(call)
        elif method.server_streaming:
            list(channel.unary_stream(path)(payload, timeout=10))
        else:
            channel.unary_unary(path)(payload, timeout=10)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{method.name} accepted garbage bytes")


@pytest.mark.parametrize("payload", GARBAGE)
def test_garbage_bytes_are_invalid_argument_on_every_rpc(
    channel: grpc.Channel, stub: spb_grpc.EngramServiceStub, payload: bytes
) -> None:
    before = count(stub, "alpha")
    for method in SERVICE.methods:
        err = _raw_call(channel, method, payload)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, err.code(), err.details())
        detail = detail_of(err)
        assert detail.code == "INVALID_INPUT", method.name
        assert method.name in detail.message and "protobuf" in detail.message
        assert detail.suggestion and detail.example
    # the standard health service is guarded too
    raw: Any = channel
    with pytest.raises(grpc.RpcError) as eh:
        raw.unary_unary("/grpc.health.v1.Health/Check")(payload, timeout=10)
    assert eh.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert count(stub, "alpha") == before


def test_garbage_mid_stream_answers_what_came_before_then_ends_invalid_argument(
    channel: Any, srv: EngramProcess
) -> None:
    good = spb.StreamingRememberRequest(sequence=1, memory=pb.MemoryInput(content="before the garbage"),
                                        memory_space_id="alpha").SerializeToString()
    after = spb.StreamingRememberRequest(sequence=2, memory=pb.MemoryInput(content="after the garbage"),
                                         memory_space_id="alpha").SerializeToString()
    call = channel.stream_stream(f"/{SERVICE.full_name}/StreamingRemember")(
        iter([good, GARBAGE[0], after]), timeout=20)
    answers: list[spb.StreamingRememberResponse] = []
    with pytest.raises(grpc.RpcError) as ei:
        for raw in call:
            answers.append(spb.StreamingRememberResponse.FromString(raw))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [a.sequence for a in answers] == [1] and answers[0].receipt.memory_id
    # MemoryFlow: the same rule
    flow_good = spb.MemoryFlowRequest(sequence=1, recall=pb.Cue(query="garbage"),
                                      memory_space_id="alpha").SerializeToString()
    flow = channel.stream_stream(f"/{SERVICE.full_name}/MemoryFlow")(iter([flow_good, GARBAGE[1]]),
                                                                     timeout=20)
    got: list[spb.MemoryFlowResponse] = []
    with pytest.raises(grpc.RpcError) as ef:
        for raw in flow:
            got.append(spb.MemoryFlowResponse.FromString(raw))
    assert ef.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [g.sequence for g in got] == [1] and got[0].HasField("recall_result")
    # other clients (a new connection) are served; the server logged the refusals and is alive
    with grpc.insecure_channel(srv.grpc_target) as fresh:
        stub = spb_grpc.EngramServiceStub(fresh)
        assert stub.Remember(remember("beta", "still serving"), timeout=10).receipt.memory_id
        memories = stub.ListMemories(spb.ListMemoriesRequest(memory_space_id="alpha"), timeout=10).memories
        assert "after the garbage" not in {m.content for m in memories}
    assert srv.running
    assert any(r.get("code") == "INVALID_INPUT" and r.get("rpc") == "StreamingRemember"
               for r in srv.log_records())


# -- deleting a space under its streams ----------------------------------------------------


def test_deleting_a_space_ends_its_streams_with_not_found(stub: spb_grpc.EngramServiceStub) -> None:
    stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="doomed"), timeout=10)
    stream = stub.Stream(spb.StreamRequest(memory_space_id="doomed"), timeout=30)
    stream.initial_metadata()
    requests: queue.Queue[Any] = queue.Queue()

    def feed() -> Iterator[spb.MemoryFlowRequest]:
        while (item := requests.get()) is not None:
            yield item

    flow = stub.MemoryFlow(feed(), timeout=30)
    answers: queue.Queue[Any] = queue.Queue()

    def read_flow() -> None:
        try:
            for resp in flow:
                answers.put(resp)
        except grpc.RpcError as exc:
            answers.put(exc)

    reader = threading.Thread(target=read_flow, daemon=True)
    reader.start()
    requests.put(spb.MemoryFlowRequest(sequence=1, subscribe=pb.FlowSubscribe(), memory_space_id="doomed"))
    assert answers.get(timeout=10).HasField("flow_ack")
    try:
        stub.DeleteSpace(spb.DeleteSpaceRequest(memory_space_id="doomed"), timeout=10)
        with pytest.raises(grpc.RpcError) as ei:
            for _ in stream:  # heartbeats until the end
                pass
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND, ei.value.details()
        assert "memory space deleted" in str(ei.value.details())
        assert trailer(ei.value, "engram-error-code") == "MEMORY_SPACE_NOT_FOUND"
        # the flow's subscription ends NOT_FOUND; the flow itself keeps serving other spaces
        ended = answers.get(timeout=10)
        assert ended.sequence == 1 and ended.HasField("error"), ended
        assert ended.error.code == "MEMORY_SPACE_NOT_FOUND" and "deleted" in ended.error.message
        requests.put(spb.MemoryFlowRequest(sequence=2, recall=pb.Cue(query="serving"),
                                           memory_space_id="alpha"))
        after = answers.get(timeout=10)
        assert after.sequence == 2 and after.HasField("recall_result"), after
    finally:
        requests.put(None)
        reader.join(10)


def test_the_default_space_cannot_be_deleted(stub: spb_grpc.EngramServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as ei:
        stub.DeleteSpace(spb.DeleteSpaceRequest(memory_space_id="default"), timeout=10)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    detail = detail_of(ei.value)
    assert detail.code == "DEFAULT_SPACE_PROTECTED" and "forget" in detail.suggestion.lower()
    assert stub.GetSpace(spb.GetSpaceRequest(memory_space_id="default"), timeout=10).space.id == "default"
    # unnamed requests still land in it
    assert stub.Remember(remember("", "still has a home"), timeout=10).receipt.memory_space_id == "default"


# -- keepalive abuse -----------------------------------------------------------------------


def _leaves_ready(ch: grpc.Channel, within: float) -> bool:
    """True when the channel's connection is closed (state leaves READY) within ``within`` s."""
    left = threading.Event()
    seen_ready = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            seen_ready.set()
        elif seen_ready.is_set():
            left.set()

    ch.subscribe(watch, try_to_connect=True)
    try:
        return left.wait(within)
    finally:
        ch.unsubscribe(watch)


def test_a_client_pinging_an_idle_connection_is_sent_away(srv: EngramProcess) -> None:
    opts = [("grpc.keepalive_time_ms", 200), ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0)]
    with grpc.insecure_channel(srv.grpc_target, options=opts) as abusive:
        spb_grpc.EngramServiceStub(abusive).ListSpaces(spb.ListSpacesRequest(), timeout=10)
        assert _leaves_ready(abusive, 8.0), "the server kept a ping-flooding idle connection open"
    with grpc.insecure_channel(srv.grpc_target) as polite:
        assert spb_grpc.EngramServiceStub(polite).ListSpaces(spb.ListSpacesRequest(), timeout=10).spaces


# -- concurrent RPC and stream caps (their own server: small limits) ------------------------


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    settings = {"grpc_max_concurrent_rpcs": 4, "grpc_max_concurrent_streams": 2,
                "grpc_max_connection_idle_seconds": 1.5, "stream_heartbeat_seconds": 1}
    root = tmp_path_factory.mktemp("grpc-capped")
    with EngramProcess.start(root, spaces=["alpha"], settings=settings) as p:
        yield p


def _connection(target: str) -> grpc.Channel:
    """A channel with a connection of its own (channels otherwise share one per target)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def _open_stream(stub: spb_grpc.EngramServiceStub) -> Any:
    call = stub.Stream(spb.StreamRequest(memory_space_id="alpha"), timeout=60)
    call.initial_metadata()
    return call


def test_limits_are_logged_at_start(capped: EngramProcess) -> None:
    rec = next(r for r in capped.log_records() if r.get("msg") == "grpc limits")
    assert rec["grpc_max_concurrent_rpcs"] == 4 and rec["grpc_max_concurrent_streams"] == 2
    assert rec["grpc_keepalive_permit_without_calls"] == 0
    assert rec["grpc_max_connection_idle_ms"] == 1500


def test_streams_beyond_one_connections_cap_wait_while_other_connections_are_served(
    capped: EngramProcess,
) -> None:
    with _connection(capped.grpc_target) as a, _connection(capped.grpc_target) as b:
        sa = spb_grpc.EngramServiceStub(a)
        streams = [_open_stream(sa) for _ in range(2)]
        try:
            with pytest.raises(grpc.RpcError) as ei:  # a third call on the same connection waits
                sa.GetSpace(spb.GetSpaceRequest(memory_space_id="alpha"), timeout=1.5)
            assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            other = spb_grpc.EngramServiceStub(b).GetSpace(spb.GetSpaceRequest(memory_space_id="alpha"),
                                                           timeout=10)
            assert other.space.id == "alpha"
            streams.pop().cancel()
            assert sa.GetSpace(spb.GetSpaceRequest(memory_space_id="alpha"), timeout=10).space.id == "alpha"
        finally:
            for s in streams:
                s.cancel()


def test_calls_beyond_the_server_cap_are_resource_exhausted_until_one_ends(capped: EngramProcess) -> None:
    channels = [_connection(capped.grpc_target) for _ in range(3)]
    streams: list[Any] = []
    try:
        stubs = [spb_grpc.EngramServiceStub(ch) for ch in channels]
        streams = [_open_stream(stubs[i]) for i in (0, 0, 1, 1)]  # two connections, two streams each
        with pytest.raises(grpc.RpcError) as ei:
            stubs[2].GetSpace(spb.GetSpaceRequest(memory_space_id="alpha"), timeout=10)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as eh:
            health_pb2_grpc.HealthStub(channels[2]).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert eh.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        streams.pop().cancel()
        deadline = time.monotonic() + 10
        while True:  # the cancellation reaches the server asynchronously
            try:
                got = stubs[2].GetSpace(spb.GetSpaceRequest(memory_space_id="alpha"), timeout=10)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert got.space.id == "alpha"
    finally:
        for s in streams:
            s.cancel()
        for ch in channels:
            ch.close()


def test_an_idle_connection_is_closed_after_the_idle_limit(capped: EngramProcess) -> None:
    with grpc.insecure_channel(capped.grpc_target) as ch:
        stub = spb_grpc.EngramServiceStub(ch)
        deadline = time.monotonic() + 10
        while True:  # streams a test before this one cancelled may still hold the server's slots
            try:
                stub.ListSpaces(spb.ListSpacesRequest(), timeout=10)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert _leaves_ready(ch, 8.0), "an idle connection outlived grpc_max_connection_idle_seconds"
