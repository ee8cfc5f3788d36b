"""Resumable feeds against real servers (SPEC §11): SSE ``Last-Event-ID`` / ``?since_lsn=`` and gRPC
``Stream(since_lsn)`` replay the event log, then go live with no gap and no duplicate; events sharing
one LSN resume exactly; a point older than the log gets ``reset``; the log survives a restart; a
space's replay never holds another space's events; bad resume points are refused with the envelope."""

from __future__ import annotations

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
from engram.client import EngramClient
from engram.testing import EngramProcess
from engram.testing.sse_raw import FrameParser

API = "/api/v1"
Frame = dict[str, Any]


class Feed:
    """One SSE response read frame by frame (comments skipped)."""

    def __init__(self, base_url: str, space: str, last_event_id: str | None = None, **params: Any) -> None:
        headers = {"X-Memory-Space": space}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=30.0))
        self._cm = self.client.stream("GET", f"{API}/stream/activities", headers=headers, params=params)
        self.response = self._cm.__enter__()
        self._parser = FrameParser()
        if self.response.status_code == 200:
            self._lines = self.response.iter_lines()
            assert next(self._lines).startswith(": subscribed")

    def next(self, timeout: float = 20.0) -> Frame:
        deadline = time.monotonic() + timeout  # heartbeats keep an idle stream open: fail, never hang
        for line in self._lines:
            frame = self._parser.feed(line)
            if frame is not None and "data" in frame:
                return frame
            assert time.monotonic() < deadline, "no event came in time"
        raise EOFError("stream ended")

    def until(self, pred: Callable[[Frame], bool]) -> list[Frame]:
        out = []
        while True:
            out.append(self.next())
            if pred(out[-1]):
                return out

    def error(self) -> dict[str, Any]:
        self.response.read()
        return dict(self.response.json()["error"])

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


def mid(frame: Frame) -> str | None:
    return frame["data"].get("data", {}).get("memory_id")


def is_stored(memory_id: str) -> Callable[[Frame], bool]:
    return lambda f: f["event"] == "stored" and mid(f) == memory_id


def remember(http: httpx.Client, space: str, memory_id: str, **extra: Any) -> dict[str, Any]:
    resp = http.post(f"{API}/memories/remember", headers={"X-Memory-Space": space},
                     json={"id": memory_id, "content": f"note {memory_id}", **extra})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def logged_ids(frames: list[Frame]) -> list[str]:
    return [f["id"] for f in frames if f.get("id") is not None]


def position(event_id: str) -> tuple[int, int]:
    lsn, _, seq = event_id.partition(".")
    return int(lsn), int(seq or 0)


@pytest.fixture(scope="module")
def srv(module_server_factory: Callable[..., EngramProcess]) -> EngramProcess:
    return module_server_factory(spaces=["alpha", "beta"], name="feeds",
                                 settings={"stream_heartbeat_seconds": 0.3,
                                           "expiry_sweep_interval_seconds": 0.2})


@pytest.fixture(scope="module")
def http(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, timeout=30) as client:
        yield client


def test_last_event_id_resumes_without_gap_or_duplicate(srv: EngramProcess, http: httpx.Client) -> None:
    feed = Feed(srv.http_url, "alpha")
    for i in range(3):
        remember(http, "alpha", f"le-{i}")
    seen = feed.until(is_stored("le-2"))
    feed.close()
    last_id = logged_ids(seen)[-1]
    assert last_id == str(seen[-1]["data"]["lsn"])  # a single event of its LSN: the bare LSN
    for i in range(3, 6):  # while disconnected
        remember(http, "alpha", f"le-{i}")
    resumed = Feed(srv.http_url, "alpha", last_event_id=last_id)
    try:
        replayed = resumed.until(is_stored("le-5"))
        assert [mid(f) for f in replayed] == ["le-3", "le-4", "le-5"]
        # Writes racing the switch from replay to live: each arrives once, in order.
        racers = [threading.Thread(target=remember, args=(http, "alpha", f"le-{i}")) for i in range(6, 16)]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        remember(http, "alpha", "le-end")
        live = resumed.until(is_stored("le-end"))
        got = [mid(f) for f in replayed + live if f["event"] == "stored"]
        assert sorted(got) == sorted([f"le-{i}" for i in range(3, 16)] + ["le-end"])
        assert len(got) == len(set(got))
        ids = [position(i) for i in logged_ids(replayed + live)]
        assert ids == sorted(ids) and len(ids) == len(set(ids))
    finally:
        resumed.close()


def test_since_lsn_header_wins_and_live_only_events_carry_no_id(srv: EngramProcess,
                                                                 http: httpx.Client) -> None:
    first = remember(http, "alpha", "sl-0")
    for i in range(1, 4):
        remember(http, "alpha", f"sl-{i}")
    feed = Feed(srv.http_url, "alpha", since_lsn=first["lsn"])
    try:
        assert [mid(f) for f in feed.until(is_stored("sl-3"))] == ["sl-1", "sl-2", "sl-3"]
        recalled = http.get(f"{API}/memories/recall", headers={"X-Memory-Space": "alpha"},
                            params={"query": "note"})
        assert recalled.status_code == 200
        frame = feed.until(lambda f: f["event"] == "recalled")[-1]
        assert frame.get("id") is None  # live only: the resume point stays the last logged event
    finally:
        feed.close()
    # Both given: Last-Event-ID (what an EventSource sends on reconnect) wins over the URL's since_lsn.
    both = Feed(srv.http_url, "alpha", last_event_id=str(first["lsn"] + 2), since_lsn=0)
    try:
        assert mid(both.next()) == "sl-3"
    finally:
        both.close()


def test_type_filter_applies_to_replay(srv: EngramProcess, http: httpx.Client) -> None:
    start = remember(http, "beta", "tf-0")["lsn"]
    remember(http, "beta", "tf-1")
    assert http.delete(f"{API}/memories/tf-0", headers={"X-Memory-Space": "beta"},
                       params={"mode": "delete"}).status_code == 200
    remember(http, "beta", "tf-2")
    assert http.delete(f"{API}/memories/tf-1", headers={"X-Memory-Space": "beta"}).status_code == 200
    feed = Feed(srv.http_url, "beta", since_lsn=start - 1, types="forgotten")
    try:
        frames = [feed.next(), feed.next()]
        assert [(f["event"], mid(f)) for f in frames] == [("forgotten", "tf-0"), ("forgotten", "tf-1")]
    finally:
        feed.close()


def test_update_and_delete_by_filter_are_replayed(srv: EngramProcess, http: httpx.Client) -> None:
    """PUT/PATCH and delete-by-filter write their events into the log like every other write."""
    hdr = {"X-Memory-Space": "beta"}
    start = remember(http, "beta", "ud-0", metadata={"batch": "ud"})["lsn"]
    remember(http, "beta", "ud-1", metadata={"batch": "ud"})
    assert http.patch(f"{API}/memories/ud-0", headers=hdr, json={"tags": ["changed"]}).status_code == 200
    assert http.put(f"{API}/memories/ud-1", headers=hdr,
                    json={"content": "replaced", "metadata": {"batch": "ud"}}).status_code == 200
    gone = http.post(f"{API}/memories/delete", headers=hdr,
                     json={"filter": {"batch": "ud"}, "mode": "delete"})
    assert gone.status_code == 200 and gone.json()["count"] == 2, gone.text
    feed = Feed(srv.http_url, "beta", since_lsn=start, types="updated,forgotten")
    try:
        frames = [feed.next() for _ in range(4)]
        assert [(f["event"], mid(f)) for f in frames] == [
            ("updated", "ud-0"), ("updated", "ud-1"), ("forgotten", "ud-0"), ("forgotten", "ud-1")]
        ids = [position(f["id"]) for f in frames]
        assert ids == sorted(ids) and len(set(ids)) == 4
        # an erased memory's text leaves the log: the replayed update of ud-1 no longer holds it
        assert "content" not in frames[1]["data"].get("data", {})
    finally:
        feed.close()


def test_events_sharing_an_lsn_resume_exactly(srv: EngramProcess, http: httpx.Client) -> None:
    """One expiry sweep batch logs one `expired` event per memory under one LSN: ids N, N.1, N.2."""
    feed = Feed(srv.http_url, "beta", types="expired")
    try:
        at = time.time() + 3.0  # one expiry instant for all three: the first sweep after it takes all
        for i in range(3):
            remember(http, "beta", f"shared-{i}", expires_at=at)
        frames = [feed.next() for _ in range(3)]
    finally:
        feed.close()
    lsn = frames[0]["data"]["lsn"]
    assert {f["data"]["lsn"] for f in frames} == {lsn}  # all three share it
    assert [f["id"] for f in frames] == [str(lsn), f"{lsn}.1", f"{lsn}.2"]
    assert sorted(mid(f) or "" for f in frames) == ["shared-0", "shared-1", "shared-2"]
    resumed = Feed(srv.http_url, "beta", last_event_id=str(lsn), types="expired")
    try:
        again = [resumed.next(), resumed.next()]
        assert [f["id"] for f in again] == [f"{lsn}.1", f"{lsn}.2"]  # neither skipped nor repeated
        remember(http, "beta", "shared-late", ttl_seconds=0.5)
        late = resumed.next()
        assert mid(late) == "shared-late" and position(late["id"]) > (lsn, 2)
    finally:
        resumed.close()
    # since_lsn = N: after every event of N
    after_all = Feed(srv.http_url, "beta", since_lsn=lsn, types="expired")
    try:
        assert mid(after_all.next()) == "shared-late"
    finally:
        after_all.close()


def test_replay_is_isolated_per_space(srv: EngramProcess, http: httpx.Client) -> None:
    for i in range(5):
        remember(http, "alpha", f"iso-a-{i}")
        remember(http, "beta", f"iso-b-{i}")
    feed = Feed(srv.http_url, "alpha", since_lsn=0)
    try:
        frames = feed.until(is_stored("iso-a-4"))
    finally:
        feed.close()
    assert {f["data"]["memory_space_id"] for f in frames} == {"alpha"}
    assert not any((mid(f) or "").startswith(("iso-b", "tf-", "shared")) for f in frames)


def test_bad_resume_points_are_refused(srv: EngramProcess, http: httpx.Client) -> None:
    last = http.get(f"{API}/spaces/alpha").json()["last_lsn"]
    for params, header in (({"since_lsn": "abc"}, None), ({"since_lsn": "-3"}, None), ({}, "12x"),
                           ({}, "7.-1"), ({"since_lsn": str(last + 1000)}, None), ({}, str(last + 1000))):
        feed = Feed(srv.http_url, "alpha", last_event_id=header, **params)
        try:
            assert feed.response.status_code == 400, (params, header)
            err = feed.error()
            assert err["code"] == "INVALID_INPUT" and err["suggestion"] and err["example"], err
        finally:
            feed.close()


def test_python_client_resumes_across_a_reconnect(srv: EngramProcess, http: httpx.Client) -> None:
    with EngramClient(srv.http_url, space="alpha") as client:
        start = client.remember("py-0", id="py-0").lsn
        last_id: str | None = None
        for event in client.stream(since_lsn=start - 1):
            if event.id is not None:
                last_id = event.id
            if event.event == "stored" and event.data["data"]["memory_id"] == "py-0":
                break
        assert last_id == str(start)
        client.remember("py-1", id="py-1")
        got = []
        for event in client.stream(last_event_id=last_id):
            got.append((event.event, event.data["data"].get("memory_id")))
            break
        assert got == [("stored", "py-1")]


def test_replay_survives_a_restart_and_trimming_gives_a_reset(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("feeds-restart")
    with EngramProcess.start(root, ["gamma"], {"event_log_max_events": 4}) as first:
        with httpx.Client(base_url=first.http_url, timeout=30) as http:
            lsns = [remember(http, "gamma", f"r-{i}")["lsn"] for i in range(10)]
        first.kill()  # the log is durable: what was acknowledged is replayed after a crash too
        proc = first.restart()
    with proc, httpx.Client(base_url=proc.http_url, timeout=30) as http:
        kept = Feed(proc.http_url, "gamma", since_lsn=lsns[5])  # the log holds the newest 4: 6..9
        try:
            assert [mid(kept.next()) for _ in range(4)] == ["r-6", "r-7", "r-8", "r-9"]
        finally:
            kept.close()
        old = Feed(proc.http_url, "gamma", since_lsn=lsns[1])
        try:
            reset = old.next()
            assert reset["event"] == "reset" and reset.get("id") is None
            assert reset["data"]["since_lsn"] == lsns[1]
            assert reset["data"]["oldest_lsn"] == lsns[6] and reset["data"]["last_lsn"] == lsns[9]
            assert "no longer stored" in reset["data"]["reason"]
            remember(http, "gamma", "r-live")
            assert mid(old.next()) == "r-live"  # then live, nothing replayed
        finally:
            old.close()


# ---------------------------------------------------------------------------------------- gRPC


@pytest.fixture(scope="module")
def stub(srv: EngramProcess) -> Iterator[spb_grpc.EngramServiceStub]:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        yield spb_grpc.EngramServiceStub(ch)


def _grpc_events(call: Any, n: int) -> list[spb.StreamResponse]:
    out = []
    for msg in call:
        if msg.WhichOneof("kind") == "heartbeat":
            continue
        out.append(msg)
        if len(out) == n:
            break
    return out


def test_grpc_stream_since_lsn_replays_then_goes_live(srv: EngramProcess, http: httpx.Client,
                                                     stub: spb_grpc.EngramServiceStub) -> None:
    first = remember(http, "alpha", "g-0")["lsn"]
    remember(http, "alpha", "g-1")
    remember(http, "alpha", "g-2")
    call = stub.Stream(spb.StreamRequest(memory_space_id="alpha", since_lsn=first,
                                         event_types=[pb.EVENT_TYPE_STORED]), timeout=30)
    try:
        replayed = _grpc_events(call, 2)
        assert [m.event.memory_id for m in replayed] == ["g-1", "g-2"]
        remember(http, "alpha", "g-3")
        live = _grpc_events(call, 1)
        assert [m.event.memory_id for m in live] == ["g-3"]
        assert replayed[0].event.lsn == first + 1
    finally:
        call.cancel()


def test_grpc_stream_reset_and_bad_since_lsn(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("feeds-grpc-reset")
    with EngramProcess.start(root, ["delta"], {"event_log_max_events": 2}) as proc, \
            httpx.Client(base_url=proc.http_url, timeout=30) as http:
        lsns = [remember(http, "delta", f"d-{i}")["lsn"] for i in range(6)]
        with grpc.insecure_channel(proc.grpc_target) as ch:
            stub = spb_grpc.EngramServiceStub(ch)
            call = stub.Stream(spb.StreamRequest(memory_space_id="delta", since_lsn=0), timeout=30)
            try:
                first = _grpc_events(call, 1)[0]
                assert first.WhichOneof("kind") == "reset"
                assert (first.reset.since_lsn, first.reset.oldest_lsn, first.reset.last_lsn) == (
                    0, lsns[4], lsns[5])
                assert first.reset.memory_space_id == "delta"
                remember(http, "delta", "d-live")
                assert _grpc_events(call, 1)[0].event.memory_id == "d-live"
            finally:
                call.cancel()
            beyond = stub.Stream(spb.StreamRequest(memory_space_id="delta", since_lsn=10_000), timeout=30)
            with pytest.raises(grpc.RpcError) as err:
                _grpc_events(beyond, 1)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            trailers = dict(err.value.trailing_metadata() or ())
            assert trailers.get("engram-error-code") == "INVALID_INPUT"
