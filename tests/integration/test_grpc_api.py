"""gRPC unary API against a real server process: spaces, isolation, fallback, errors, health, reflection."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.client.grpc import GrpcClient, error_from_rpc
from engram.errors import (
    InvalidInput,
    InvalidMemorySpace,
    MemoryNotFound,
    MemorySpaceConflict,
    MemorySpaceNotFound,
    MemorySpaceRequired,
)
from engram.testing import EngramProcess


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    with EngramProcess.start(tmp_path_factory.mktemp("grpc-api"), spaces=["alpha", "beta"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(srv: EngramProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> spb_grpc.EngramServiceStub:
    return spb_grpc.EngramServiceStub(channel)


def client(srv: EngramProcess, space: str, **kw: object) -> GrpcClient:
    return GrpcClient(srv.grpc_target, space=space, **kw)  # type: ignore[arg-type]


def test_remember_recall_get_forget_in_an_explicit_space(srv: EngramProcess) -> None:
    with client(srv, "alpha") as c:
        receipt = c.remember("the espresso machine is on the third floor", id="coffee", tags=["office"])
        assert receipt.memory_id == "coffee" and receipt.memory_space_id == "alpha" and receipt.lsn > 0
        assert receipt.durability == pb.DURABILITY_FSYNC
        result = c.recall("espresso")
        assert result.memory_space_id == "alpha"
        ids = [i.memory.id for i in list(result.memories.vivid) + list(result.memories.associated)]
        assert "coffee" in ids
        assert c.get_memory("coffee").content.startswith("the espresso")
        assert c.last_warning is None, "an explicit space never triggers the fallback warning"
        forgot = c.forget("coffee", mode="delete")
        assert (
            forgot.memory_id == "coffee"
            and forgot.mode == pb.FORGET_MODE_DELETE
            and forgot.memory_space_id == "alpha"
        )
        with pytest.raises(MemoryNotFound):
            c.get_memory("coffee")
        listed = c.list_memories()
        assert listed.memory_space_id == "alpha" and "coffee" not in [m.id for m in listed.memories]


def test_experience_and_embedding_recall(srv: EngramProcess) -> None:
    with client(srv, "beta") as c:
        r = c.experience("met dana at the standup", when=1_700_000_000.0, who=["dana"], id="ep-1",
                         embedding=[1.0, 0.0, 0.0])
        assert r.memory_space_id == "beta"
        got = c.get_memory("ep-1")
        assert got.episode.what == "met dana at the standup" and list(got.episode.who) == ["dana"]
        hits = c.recall(embedding=[1.0, 0.0, 0.0])
        assert "ep-1" in [i.memory.id for i in list(hits.memories.vivid) + list(hits.memories.associated)]
        with pytest.raises(InvalidInput) as err:  # wrong dimension names expected and received
            c.remember("x", embedding=[1.0, 0.0])
        assert "3" in str(err.value) and "2" in str(err.value)


def test_same_id_in_two_spaces_stays_apart(srv: EngramProcess) -> None:
    with client(srv, "alpha") as a, a.with_space("beta") as b:
        a.remember("alpha's version of the note", id="shared-id")
        b.remember("beta's version of the note", id="shared-id")
        assert a.get_memory("shared-id").content == "alpha's version of the note"
        assert b.get_memory("shared-id").content == "beta's version of the note"
        b.forget("shared-id", mode="delete")
        assert a.get_memory("shared-id").content == "alpha's version of the note"
        recalled = a.recall("version note")
        assert all(i.memory.content.startswith("alpha") for i in list(recalled.memories.vivid)
                   + list(recalled.memories.associated))


def test_no_space_falls_back_to_default_with_warning_trailer_log_and_counter(
        srv: EngramProcess, stub: spb_grpc.EngramServiceStub) -> None:
    resp, call = stub.Remember.with_call(
        spb.RememberRequest(memory=pb.MemoryInput(content="legacy", id="legacy-1"))
    )
    assert resp.receipt.memory_space_id == "default"
    trailers = dict(call.trailing_metadata())
    assert "deprecated" in trailers["engram-warning"] and "memory_space_id" in trailers["engram-warning"]
    records = [r for r in srv.log_records() if r.get("route") == "Remember" and r.get("transport") == "grpc"
               and "default space" in r.get("msg", "")]
    assert records, "the fallback is logged"
    assert records[-1]["memory_space"] == "default" and records[-1]["peer"].startswith("ipv")
    with client(srv, "default") as d:
        assert d.get_memory("legacy-1").content == "legacy"
    with urllib.request.urlopen(srv.http_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    line = [ln for ln in text.splitlines() if ln.startswith("engram_memory_space_default_fallback_total")
            and 'transport="grpc"' in ln and 'operation="Remember"' in ln]
    assert line and float(line[0].rsplit(" ", 1)[1]) >= 1
    assert (
        'engram_requests_total{memory_space="alpha",operation="Remember",status="OK",transport="grpc"}'
        in text
        or any('transport="grpc"' in ln and 'memory_space="alpha"' in ln for ln in text.splitlines())
    )


def test_metadata_fallback_routes_and_conflict_is_invalid_argument(srv: EngramProcess,
                                                                   stub: spb_grpc.EngramServiceStub) -> None:
    req = spb.RememberRequest(memory=pb.MemoryInput(content="via metadata", id="meta-1"))
    resp, call = stub.Remember.with_call(req, metadata=(("x-memory-space", "beta"),))
    assert resp.receipt.memory_space_id == "beta"
    assert "engram-warning" not in dict(call.trailing_metadata())
    with client(srv, "beta", space_via="metadata") as viameta:
        assert viameta.get_memory("meta-1").content == "via metadata"
    conflicting = spb.RememberRequest(memory=pb.MemoryInput(content="x"), memory_space_id="alpha")
    with pytest.raises(grpc.RpcError) as err:
        stub.Remember(conflicting, metadata=(("x-memory-space", "beta"),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "alpha" in err.value.details() and "beta" in err.value.details()
    with client(srv, "alpha", space_via="both") as both:  # agreeing sources are fine
        assert both.remember("both agree").memory_space_id == "alpha"
    with pytest.raises(grpc.RpcError) as err:
        stub.Remember(conflicting, metadata=(("x-memory-space", "beta"),))
    assert isinstance(error_from_rpc(err.value), MemorySpaceConflict), (
        "the client maps it to the engine's class"
    )


def test_unknown_and_invalid_spaces(srv: EngramProcess, stub: spb_grpc.EngramServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Recall(spb.RecallRequest(cue=pb.Cue(query="x"), memory_space_id="no-such-space"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "engram space create" in err.value.details() and "CreateSpace" in err.value.details()
    assert "alpha" not in err.value.details(), "the message never lists other spaces"
    with pytest.raises(grpc.RpcError) as err:
        stub.Recall(spb.RecallRequest(cue=pb.Cue(query="x"), memory_space_id="Bad Space!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "[a-z0-9_-]" in err.value.details()
    assert dict(err.value.trailing_metadata())["engram-error-code"] == "INVALID_MEMORY_SPACE"
    with pytest.raises(grpc.RpcError) as err:
        stub.Recall(spb.RecallRequest(cue=pb.Cue(query="x"), memory_space_id="ab"))
    assert "too short" in err.value.details()
    with client(srv, "no-such-space") as c, pytest.raises(MemorySpaceNotFound) as nf:
        c.remember("x")
    assert "CreateSpace" in nf.value.suggestion
    with client(srv, "UPPER") as c, pytest.raises(InvalidMemorySpace):
        c.recall("x")


def test_invalid_input_names_the_field_and_is_never_unknown(stub: spb_grpc.EngramServiceStub) -> None:
    cases = [
        (stub.Remember, spb.RememberRequest(memory=pb.MemoryInput(), memory_space_id="alpha"), "memory"),
        (
            stub.Remember,
            spb.RememberRequest(memory=pb.MemoryInput(content="x", confidence=2.0), memory_space_id="alpha"),
            "memory.confidence",
        ),
        (
            stub.Experience,
            spb.ExperienceRequest(episode=pb.EpisodeInput(what="no when"), memory_space_id="alpha"),
            "episode.when",
        ),
        (stub.Recall, spb.RecallRequest(cue=pb.Cue(), memory_space_id="alpha"), "cue"),
        (
            stub.Recall,
            spb.RecallRequest(cue=pb.Cue(query="x", max_results=0), memory_space_id="alpha"),
            "cue.max_results",
        ),
        (stub.Forget, spb.ForgetRequest(memory_space_id="alpha"), "memory_id"),
        (
            stub.Stream,
            spb.StreamRequest(event_types=[pb.EVENT_TYPE_UNSPECIFIED], memory_space_id="alpha"),
            "event_types",
        ),
    ]
    for method, req, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            out = method(req, timeout=10)
            if hasattr(out, "__next__"):
                next(out)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value)
        assert field in err.value.details(), (field, err.value.details())


def test_out_of_range_enums_are_invalid_argument_with_the_envelope(stub: spb_grpc.EngramServiceStub,
                                                                   srv: EngramProcess) -> None:
    """An enum number the server does not know (a newer or broken client) is the client's mistake."""
    cases = [
        (stub.Recall, spb.RecallRequest(cue=pb.Cue(query="x", mode=99), memory_space_id="alpha"), "cue.mode"),
        (stub.Recall, spb.RecallRequest(cue=pb.Cue(query="x", rank=99), memory_space_id="alpha"), "cue.rank"),
        (stub.Recall, spb.RecallRequest(cue=pb.Cue(query="x", memory_type=99), memory_space_id="alpha"),
         "cue.memory_type"),
        (stub.Remember, spb.RememberRequest(memory=pb.MemoryInput(content="x", memory_type=99),
                                            memory_space_id="alpha"), "memory.memory_type"),
        (stub.Forget, spb.ForgetRequest(memory_id="x", mode=99, memory_space_id="alpha"), "mode"),
        (stub.Stream, spb.StreamRequest(event_types=[99], memory_space_id="alpha"), "event_types"),
    ]
    for method, req, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            out = method(req, timeout=10)
            if hasattr(out, "__next__"):
                next(out)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value)
        assert field in err.value.details(), (field, err.value.details())
        trailers = dict(err.value.trailing_metadata() or ())
        assert trailers.get("engram-error-code") == "INVALID_INPUT", (field, trailers)
    # The same through a streaming RPC: the bad cue's answer is the envelope, the stream goes on.
    answers = list(stub.StreamingRecall(iter([spb.StreamingRecallRequest(
        sequence=1, cue=pb.Cue(query="x", mode=42), memory_space_id="alpha")]), timeout=10))
    assert [a.error.code for a in answers] == ["INVALID_INPUT"] and "cue.mode" in answers[0].error.message
    # The Python client refuses an unknown label itself, as an Engram error naming the choices.
    with client(srv, "alpha") as c:
        for field, bad, choices in (("mode", "sideways", "similarity, spreading, hybrid"),
                                    ("rank", "loud", "cognitive, similarity")):
            with pytest.raises(InvalidInput) as bad_label:
                c.recall("x", **{field: bad})
            assert repr(bad) in str(bad_label.value) and choices in str(bad_label.value)
        with pytest.raises(InvalidInput):
            c.forget("x", mode="shred")
        assert c.recall("x", mode="HYBRID", rank="similarity") is not None  # known labels still work


def test_associate_says_whether_the_edge_was_created(srv: EngramProcess) -> None:
    # Vectors from the client, far apart, no auto-linking: no edge exists before the first call.
    with client(srv, "assoc") as c:
        c.create_space("assoc", embedder="none")
        for i, mid in enumerate(("as-1", "as-2", "as-3")):
            c.remember(f"association endpoint {mid}", id=mid, auto_link=False,
                       embedding=[1.0 if j == i else 0.0 for j in range(4)])
        first = c.associate("as-1", "as-2", strength=0.4)
        assert first.created and first.association.strength == pytest.approx(0.4)
        second = c.associate("as-1", "as-2", strength=0.4)
        assert not second.created and second.association.strength > 0.4 and second.lsn > first.lsn
        # The reverse direction exists too (associations are bidirectional by default).
        assert not c.associate("as-2", "as-1").created
        assert c.associate("as-1", "as-3").created


def test_space_administration(srv: EngramProcess) -> None:
    with client(srv, "gamma-1") as c:
        made = c.create_space(dimension=4)
        assert made.created and made.space.id == "gamma-1" and made.space.dimension == 4
        assert not c.create_space().created, "create is idempotent"
        c.remember("hello gamma", embedding=[0.1, 0.2, 0.3, 0.4])
        assert c.get_space().memory_count == 1
        ids = [s.id for s in c.list_spaces().spaces]
        assert ids == sorted(ids) and {"alpha", "beta", "gamma-1"} <= set(ids)
        gone = c.delete_space()
        assert gone.deleted and gone.memories_removed == 1
        with pytest.raises(MemorySpaceNotFound):
            c.get_space()
    with GrpcClient(srv.grpc_target) as nospace, pytest.raises(InvalidInput):
        nospace.get_space()
    with grpc.insecure_channel(srv.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            spb_grpc.EngramServiceStub(ch).CreateSpace(spb.CreateSpaceRequest())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(err.value.trailing_metadata())["engram-error-code"] == "MEMORY_SPACE_REQUIRED"


def test_every_call_logs_its_space(srv: EngramProcess, stub: spb_grpc.EngramServiceStub) -> None:
    with pytest.raises(grpc.RpcError):
        stub.GetMemory(spb.GetMemoryRequest(memory_id="nope", memory_space_id="beta"))
    failures = [
        r for r in srv.log_records() if r.get("logger") == "engram.grpc" and r.get("rpc") == "GetMemory"
    ]
    assert failures and failures[-1]["memory_space"] == "beta" and failures[-1]["status"] == "NOT_FOUND"
    with pytest.raises(grpc.RpcError):
        stub.GetMemory(spb.GetMemoryRequest(memory_id="nope", memory_space_id="No Such!"))
    bad = [r for r in srv.log_records() if r.get("logger") == "engram.grpc" and r.get("rpc") == "GetMemory"]
    assert bad[-1]["memory_space"] is None and bad[-1]["requested_space"] == "No Such!"


def test_health_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "engram.v1.EngramService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_call_without_generated_stubs(channel: grpc.Channel) -> None:
    """A generic tool's path: discover the service by reflection, build messages dynamically, call."""
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = iter([reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="engram.v1.EngramService")])
    answers = list(refl.ServerReflectionInfo(req, timeout=10))
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"engram.v1.EngramService", "grpc.health.v1.Health"} <= services
    pool = descriptor_pool.DescriptorPool()
    protos = [descriptor_pb2.FileDescriptorProto.FromString(raw)
              for raw in answers[1].file_descriptor_response.file_descriptor_proto]
    pending = {p.name: p for p in protos}
    while pending:  # add files after their dependencies
        for name, proto in list(pending.items()):
            if all(dep not in pending for dep in proto.dependency):
                pool.Add(proto)
                del pending[name]
    method = pool.FindServiceByName("engram.v1.EngramService").FindMethodByName("Remember")
    Req = message_factory.GetMessageClass(method.input_type)
    Resp = message_factory.GetMessageClass(method.output_type)
    request = Req(memory_space_id="alpha")
    request.memory.content = "stored through reflection"
    call = channel.unary_unary("/engram.v1.EngramService/Remember", request_serializer=Req.SerializeToString,
                               response_deserializer=Resp.FromString)
    resp = call(request, timeout=10)
    assert resp.receipt.memory_space_id == "alpha" and resp.receipt.memory_id


def test_echo(stub: spb_grpc.EngramServiceStub) -> None:
    assert stub.Echo(spb.EchoRequest(payload=b"ping"), timeout=10).payload == b"ping"


def test_require_explicit_space(tmp_path: Path) -> None:
    with EngramProcess.start(
        tmp_path / "strict", spaces=["alpha"], settings={"require_explicit_space": True}
    ) as s:
        with grpc.insecure_channel(s.grpc_target) as ch:
            stub = spb_grpc.EngramServiceStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.Remember(spb.RememberRequest(memory=pb.MemoryInput(content="x")), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "memory_space_id" in err.value.details()
            ok = stub.Remember(
                spb.RememberRequest(memory=pb.MemoryInput(content="x"), memory_space_id="alpha")
            )
            assert ok.receipt.memory_space_id == "alpha"
        with GrpcClient(s.grpc_target) as c, pytest.raises(MemorySpaceRequired):
            c.remember("no space")
