"""Tracing against a real server: every REST request and gRPC call is one span carrying its space.

One server runs with ``trace_file`` set; the module fixture makes every call
below, each under its own W3C ``traceparent`` (so its server span is found by
trace id, and propagation is tested on the way), then stops the server - a
graceful stop flushes the exporter - and the tests read the JSON lines.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from engram.observability import Tracing
from engram.testing import EngramProcess
from engram.testing.clients import ApiError, GrpcSpaceClient, RestSpaceClient

SPACES = ["trace-a", "trace-b"]
_ids = itertools.count(1)


@dataclass
class Run:
    spans: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    calls: dict[str, str] = field(default_factory=dict)  # call name -> trace id

    def server_span(self, call: str) -> dict[str, Any]:
        tid = self.calls[call]
        found = [s for s in self.spans if s["trace_id"] == tid and s["kind"] == "SERVER"]
        assert len(found) == 1, f"{call}: {len(found)} server spans in trace {tid}: {found}"
        return found[0]

    def children(self, span: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["parent_span_id"] == span["span_id"]]


def _traceparent(run_calls: dict[str, str], call: str) -> str:
    trace_id = f"{0xE6A4 << 96 | next(_ids):032x}"
    run_calls[call] = trace_id
    return f"00-{trace_id}-{next(_ids):016x}-01"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("tracing")
    trace_file = root / "spans.jsonl"
    srv = EngramProcess.start(root, SPACES, {"trace_file": str(trace_file)})
    calls: dict[str, str] = {}
    try:
        _exercise(srv, calls)
    finally:
        srv.stop()
    spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
    yield Run(spans, srv.log_records(), calls)


def _exercise(srv: EngramProcess, calls: dict[str, str]) -> None:
    def tp(call: str) -> dict[str, str]:
        return {"traceparent": _traceparent(calls, call)}

    def md(call: str) -> tuple[tuple[str, str], ...]:
        return (("traceparent", _traceparent(calls, call)),)

    for space in SPACES:
        with RestSpaceClient(srv.http_url, space) as rest:
            rest.call("POST", "/api/v1/memories/remember", json={"id": "m1", "content": f"note of {space}"},
                      headers=tp(f"rest-remember-{space}"))
            rest.call("POST", "/api/v1/memories/recall", json={"query": "note"},
                      headers=tp(f"rest-recall-{space}"))
        with GrpcSpaceClient(srv.grpc_target, space) as g:
            memory = g.mpb.MemoryInput(id="g1", content=f"grpc {space}")
            g.stub.Remember(g.pb.RememberRequest(memory=memory, memory_space_id=space),
                            metadata=md(f"grpc-remember-{space}"))
            g.stub.Recall(g.pb.RecallRequest(cue=g.mpb.Cue(query="grpc"), memory_space_id=space),
                          metadata=md(f"grpc-recall-{space}"))
    # Fallback (no space named) and an invalid space, on both transports.
    with RestSpaceClient(srv.http_url, None) as rest:
        rest.call("POST", "/api/v1/memories/remember", json={"content": "where am I"},
                  headers=tp("rest-fallback"))
        with pytest.raises(ApiError) as err:
            rest.call("GET", "/api/v1/memories/m1",
                      headers={"X-Memory-Space": "Not A Space!", **tp("rest-invalid")})
        assert err.value.status == 400
    with GrpcSpaceClient(srv.grpc_target, None) as g:
        g.stub.Recall(g.pb.RecallRequest(cue=g.mpb.Cue(query="where")), metadata=md("grpc-fallback"))
        with pytest.raises(grpc.RpcError) as rpc_err:
            g.stub.Recall(g.pb.RecallRequest(cue=g.mpb.Cue(query="x"), memory_space_id="NOT!"),
                          metadata=md("grpc-invalid"))
        assert rpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    # SSE on trace-a: once the response headers are in, the subscription exists (no race).
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        headers = {"X-Memory-Space": "trace-a", **tp("sse")}
        with http.stream("GET", "/api/v1/stream/memories", headers=headers) as resp:
            assert resp.status_code == 200
            with RestSpaceClient(srv.http_url, "trace-a") as rest:
                rest.remember(id="sse-probe", content="probe")
            for line in resp.iter_lines():
                if "sse-probe" in line:
                    break
    # gRPC Stream on trace-b: the initial metadata is sent once subscribed.
    with GrpcSpaceClient(srv.grpc_target, "trace-b") as g:
        call = g.stub.Stream(g.pb.StreamRequest(memory_space_id="trace-b"), metadata=md("grpc-stream"))
        call.initial_metadata()
        g.remember(id="stream-probe", content="probe")
        for msg in call:
            if msg.HasField("event") and "stream-probe" in str(msg):
                break
        call.cancel()
        # StreamingRecall: messages for two spaces on one bidirectional stream.
        reqs = [g.pb.StreamingRecallRequest(sequence=i, cue=g.mpb.Cue(query="note"), memory_space_id=sp)
                for i, sp in enumerate(SPACES, 1)]
        answers = list(g.stub.StreamingRecall(iter(reqs), metadata=md("grpc-streaming-recall")))
        assert [a.memory_space_id for a in answers] == SPACES
        # MemoryFlow: subscribe, remember and recall on one flow of trace-b.
        flow_reqs = [
            g.pb.MemoryFlowRequest(sequence=1, subscribe=g.mpb.FlowSubscribe(), memory_space_id="trace-b"),
            g.pb.MemoryFlowRequest(sequence=2, remember=g.mpb.MemoryInput(content="flowed"),
                                   memory_space_id="trace-b"),
            g.pb.MemoryFlowRequest(sequence=3, recall=g.mpb.Cue(query="flowed"), memory_space_id="trace-b"),
            g.pb.MemoryFlowRequest(sequence=4, subscribe=g.mpb.FlowSubscribe(), memory_space_id="BAD!"),
        ]
        for resp in g.stub.MemoryFlow(iter(flow_reqs), metadata=md("grpc-flow")):
            assert not resp.HasField("error") or resp.sequence == 4, resp


# ----------------------------------------------------------------------------- unary calls


@pytest.mark.parametrize("space", SPACES)
def test_each_call_has_one_span_with_its_space(traced: Run, space: str) -> None:
    for call, name, route_key, route in (
        (f"rest-remember-{space}", "POST /api/v1/memories/remember", "route",
         "POST /api/v1/memories/remember"),
        (f"rest-recall-{space}", "POST /api/v1/memories/recall", "route", "POST /api/v1/memories/recall"),
        (f"grpc-remember-{space}", "engram.v1.EngramService/Remember", "rpc", "Remember"),
        (f"grpc-recall-{space}", "engram.v1.EngramService/Recall", "rpc", "Recall"),
    ):
        span = traced.server_span(call)
        attrs = span["attributes"]
        assert span["name"] == name
        assert attrs["memory_space"] == space, (call, attrs)
        assert attrs[route_key] == route
        assert attrs["transport"] == call.split("-")[0]
        assert attrs["fallback"] is False
        assert span["status"] != "ERROR"
        assert attrs["status"] in ("OK", "200", "201")
        assert span["parent_span_id"] is not None  # joined the caller's traceparent


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_recall_has_an_engine_child_span_in_the_same_space(traced: Run, transport: str) -> None:
    span = traced.server_span(f"{transport}-recall-trace-b")
    engine = [c for c in traced.children(span) if c["name"] == "engram.recall"]
    assert len(engine) == 1 and engine[0]["attributes"]["memory_space"] == "trace-b"


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_fallback_is_on_the_span_and_the_log_line_carries_the_trace(traced: Run, transport: str) -> None:
    span = traced.server_span(f"{transport}-fallback")
    assert span["attributes"]["fallback"] is True
    assert span["attributes"]["memory_space"] == "default"
    warnings = [r for r in traced.logs if r.get("trace_id") == span["trace_id"] and r["level"] == "warning"]
    assert warnings and warnings[0]["memory_space"] == "default", warnings


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_invalid_space_span_has_requested_space_and_error(traced: Run, transport: str) -> None:
    span = traced.server_span(f"{transport}-invalid")
    attrs = span["attributes"]
    assert "memory_space" not in attrs
    assert attrs["requested_space"] == ("Not A Space!" if transport == "rest" else "NOT!")
    assert span["status"] == "ERROR"
    assert attrs["error.type"] == "INVALID_MEMORY_SPACE"
    assert attrs["status"] == ("400" if transport == "rest" else "INVALID_ARGUMENT")


# ----------------------------------------------------------------------------- streams


def test_sse_stream_span_has_its_space(traced: Run) -> None:
    span = traced.server_span("sse")
    assert span["name"] == "GET /api/v1/stream/memories"
    assert span["attributes"]["memory_space"] == "trace-a"
    assert span["attributes"]["stream"] is True


def test_grpc_stream_span_has_its_space(traced: Run) -> None:
    span = traced.server_span("grpc-stream")
    assert span["name"] == "engram.v1.EngramService/Stream"
    assert span["attributes"]["memory_space"] == "trace-b"
    assert span["attributes"]["status"] == "CANCELLED"  # the client cancelled it
    assert span["status"] != "ERROR"


def test_bidi_stream_span_lists_its_spaces_and_each_message_has_a_child(traced: Run) -> None:
    span = traced.server_span("grpc-streaming-recall")
    assert span["attributes"]["memory_spaces"] == SPACES
    assert "memory_space" not in span["attributes"]  # two spaces: each message says which
    assert span["attributes"]["status"] == "OK"
    messages = [c for c in traced.children(span) if c["name"].endswith("StreamingRecall message")]
    assert sorted(m["attributes"]["memory_space"] for m in messages) == SPACES
    for m in messages:  # the engine span of each recall nests under its message
        inner = [c["attributes"]["memory_space"] for c in traced.children(m)]
        assert inner == [m["attributes"]["memory_space"]]


def test_memory_flow_span_and_its_messages_carry_the_space(traced: Run) -> None:
    span = traced.server_span("grpc-flow")
    assert span["name"] == "engram.v1.EngramService/MemoryFlow"
    assert span["attributes"]["memory_space"] == "trace-b"
    messages = {c["name"].rsplit(" ", 1)[-1]: c for c in traced.children(span)}
    assert set(messages) == {"remember", "recall"}
    assert all(m["attributes"]["memory_space"] == "trace-b" for m in messages.values())
    # the failed subscribe (invalid space) is an event; the flow itself stayed open and ended OK
    failed = [e for e in span["events"] if e["name"] == "message failed"]
    assert [e["attributes"]["requested_space"] for e in failed] == ["BAD!"]
    assert failed[0]["attributes"]["error.type"] == "INVALID_MEMORY_SPACE"
    assert span["attributes"]["status"] == "OK"


# ----------------------------------------------------------------------------- disabled


def test_disabled_tracing_builds_nothing(tmp_path: Path) -> None:
    tracing = Tracing.from_settings("", 1.0)
    assert not tracing.enabled and tracing.provider is None
    span = tracing.start("x", {"memory_space": "a"})
    assert not span.is_recording() and tracing.attach(span) is None
    with tracing.engine_span("engram.recall", "a") as inner:
        assert not inner.get_span_context().is_valid
    tracing.shutdown()
