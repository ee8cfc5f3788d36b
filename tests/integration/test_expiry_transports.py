"""Expiry over REST and gRPC against a real server (SPEC §11): ttl_seconds / expires_at on remember and
experience, default_ttl_seconds on space creation (and in the descriptor), the background sweep with
its `expired` event on SSE and gRPC, and bad expiry input refused with the error envelope."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import timestamp_pb2

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess
from engram.testing.sse_raw import FrameParser

API = "/api/v1"


@pytest.fixture(scope="module")
def srv(module_server_factory: Callable[..., EngramProcess]) -> EngramProcess:
    return module_server_factory(spaces=["exp"], name="expiry",
                                 settings={"expiry_sweep_interval_seconds": 0.2,
                                           "stream_heartbeat_seconds": 0.3})


@pytest.fixture(scope="module")
def http(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": "exp"}) as client:
        yield client


@pytest.fixture(scope="module")
def stub(srv: EngramProcess) -> Iterator[spb_grpc.EngramServiceStub]:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        yield spb_grpc.EngramServiceStub(ch)


def _expired_ids(base_url: str, space: str, want: set[str], timeout: float = 20.0) -> list[dict[str, Any]]:
    """Read the space's `expired` events (SSE, replayed from the start) until ``want`` all came."""
    parser = FrameParser()
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=timeout)) as c, c.stream(
            "GET", f"{API}/stream/activities", headers={"X-Memory-Space": space},
            params={"types": "expired", "since_lsn": 0}) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            frame = parser.feed(line)
            if frame is not None and frame.get("event") == "expired":
                got.append(frame)
                if want <= {f["data"]["data"]["memory_id"] for f in got}:
                    return got
            assert time.monotonic() < deadline, f"no expired events for {want} in time; got {len(got)}"
    raise AssertionError("stream ended")


def test_rest_ttl_and_expires_at_then_swept_with_events(srv: EngramProcess, http: httpx.Client) -> None:
    soon = datetime.fromtimestamp(time.time() + 1.0, tz=UTC).isoformat()
    r1 = http.post(f"{API}/memories/remember", json={"id": "rt-ttl", "content": "brief", "ttl_seconds": 1})
    r2 = http.post(f"{API}/memories/remember",
                   json={"id": "rt-at", "content": "brief too", "expires_at": soon})
    r3 = http.post(f"{API}/episodes/remember", json={"id": "rt-ep", "when": "2026-01-01T00:00:00Z",
                                                     "what": "short lived", "ttl_seconds": 1})
    r4 = http.post(f"{API}/memories/remember", json={"id": "rt-keep", "content": "stays"})
    assert [r.status_code for r in (r1, r2, r3, r4)] == [201] * 4, [r.text for r in (r1, r2, r3, r4)]
    got = http.get(f"{API}/memories/rt-ttl").json()
    assert got["expires_at"] is not None
    assert http.get(f"{API}/memories/rt-keep").json()["expires_at"] is None
    frames = _expired_ids(srv.http_url, "exp", {"rt-ttl", "rt-at", "rt-ep"})
    assert all(f.get("id") for f in frames)  # logged: resumable
    for mid in ("rt-ttl", "rt-at", "rt-ep"):
        resp = http.get(f"{API}/memories/{mid}")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "MEMORY_NOT_FOUND"
    listed = {m["id"] for m in http.get(f"{API}/memories", params={"limit": 100}).json()["memories"]}
    assert "rt-keep" in listed and not listed & {"rt-ttl", "rt-at", "rt-ep"}


def test_default_ttl_seconds_over_rest_and_grpc(srv: EngramProcess, stub: spb_grpc.EngramServiceStub) -> None:
    with httpx.Client(base_url=srv.http_url, timeout=30) as c:
        made = c.post(f"{API}/spaces", json={"id": "ttl-rest", "default_ttl_seconds": 1})
        assert made.status_code == 201, made.text
        assert made.json()["default_ttl_seconds"] == 1
        assert c.get(f"{API}/spaces/ttl-rest").json()["default_ttl_seconds"] == 1
        stored = c.post(f"{API}/memories/remember", headers={"X-Memory-Space": "ttl-rest"},
                        json={"id": "dflt", "content": "inherits the default"})
        assert stored.status_code == 201
        own = c.post(f"{API}/memories/remember", headers={"X-Memory-Space": "ttl-rest"},
                     json={"id": "own", "content": "its own expiry", "ttl_seconds": 3600})
        assert own.status_code == 201
        bad = c.post(f"{API}/spaces", json={"id": "ttl-bad", "default_ttl_seconds": -1})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_INPUT"
    grpc_made = stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="ttl-grpc", default_ttl_seconds=7200))
    assert grpc_made.space.HasField("default_ttl_seconds") and grpc_made.space.default_ttl_seconds == 7200
    plain = stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="ttl-none"))
    assert not plain.space.HasField("default_ttl_seconds")
    _expired_ids(srv.http_url, "ttl-rest", {"dflt"})
    with httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": "ttl-rest"}) as c:
        assert c.get(f"{API}/memories/dflt").status_code == 404
        assert c.get(f"{API}/memories/own").status_code == 200


def test_grpc_ttl_expires_at_and_expired_event(srv: EngramProcess, stub: spb_grpc.EngramServiceStub) -> None:
    call = stub.Stream(spb.StreamRequest(memory_space_id="exp", event_types=[pb.EVENT_TYPE_EXPIRED]),
                       timeout=30)
    try:
        at = timestamp_pb2.Timestamp()
        at.FromNanoseconds(int((time.time() + 1.0) * 1e9))
        a = stub.Remember(spb.RememberRequest(memory_space_id="exp",
                                              memory=pb.MemoryInput(id="g-ttl", content="x", ttl_seconds=1)))
        b = stub.Experience(spb.ExperienceRequest(memory_space_id="exp", episode=pb.EpisodeInput(
            id="g-at", what="brief episode", when=at, expires_at=at)))
        assert a.receipt.memory_id == "g-ttl" and b.receipt.memory_id == "g-at"
        mem = stub.GetMemory(spb.GetMemoryRequest(memory_space_id="exp", memory_id="g-ttl")).memory
        assert mem.HasField("expires_at")
        seen = set()
        for msg in call:
            if msg.WhichOneof("kind") == "event":
                assert msg.event.type == pb.EVENT_TYPE_EXPIRED
                seen.add(msg.event.memory_id)
                if seen >= {"g-ttl", "g-at"}:
                    break
    finally:
        call.cancel()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetMemory(spb.GetMemoryRequest(memory_space_id="exp", memory_id="g-ttl"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("extra, words", [
    ({"ttl_seconds": -5}, "ttl_seconds"),
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"ttl_seconds": "soon"}, "ttl_seconds"),
    ({"ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"}, "not both"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "not in the future"),
    ({"expires_at": 5}, "expires_at"),
])
def test_rest_bad_expiry_is_an_envelope(http: httpx.Client, extra: dict[str, Any], words: str) -> None:
    before = http.get(f"{API}/spaces/exp").json()["last_lsn"]
    resp = http.post(f"{API}/memories/remember", json={"content": "x", **extra})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "INVALID_INPUT" and words in err["message"], err
    assert http.get(f"{API}/spaces/exp").json()["last_lsn"] == before  # nothing written


def test_grpc_bad_expiry_is_invalid_argument(stub: spb_grpc.EngramServiceStub) -> None:
    past = timestamp_pb2.Timestamp(seconds=1_000_000_000)
    future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
    for item in (pb.MemoryInput(content="x", ttl_seconds=-1), pb.MemoryInput(content="x", expires_at=past),
                 pb.MemoryInput(content="x", ttl_seconds=5, expires_at=future)):
        with pytest.raises(grpc.RpcError) as err:
            stub.Remember(spb.RememberRequest(memory_space_id="exp", memory=item))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(err.value.trailing_metadata() or ()).get("engram-error-code") == "INVALID_INPUT"
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="ttl-neg", default_ttl_seconds=-3))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_python_client_expiry_arguments(srv: EngramProcess) -> None:
    from engram.client import EngramClient

    with EngramClient(srv.http_url, space="exp") as client:
        made = client.create_space("ttl-client", default_ttl_seconds=600)
        assert made.created and made.default_ttl_seconds == 600
        client.remember("client ttl", id="c-ttl", ttl_seconds=3600)
        client.experience("2026-01-01T00:00:00Z", "client episode", id="c-at", expires_at=time.time() + 3600)
        assert client.get("c-ttl").expires_at is not None
        assert client.get("c-at").expires_at is not None
