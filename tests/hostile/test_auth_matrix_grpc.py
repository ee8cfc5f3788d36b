"""API keys on gRPC (SPEC §10) against one real server started with ``auth = "required"``.

The access matrix takes every RPC from the service descriptor (a new RPC cannot be forgotten: it
has no request below and fails, and ``auth.ACTIONS`` must classify it) x {no key, malformed,
unknown, expired, revoked, reader of the space, writer of the space, writer of another space,
admin}. Each cell is reduced to one outcome: the status of a refused call (UNAUTHENTICATED,
PERMISSION_DENIED, NOT_FOUND for the space) or ALLOWED; inside the bidirectional streams a
refused message is an ErrorDetail in its response, read the same way. A server with one RPC let
through unchecked (``engram.testing.holes``) must fail the matrix: the planted hole.

Also: the existence oracle (an out-of-scope space answers byte-for-byte as a missing one, apart
from the id), a revoked key's open Stream and an expiring key's MemoryFlow ending
UNAUTHENTICATED, a reader unable to write through StreamingRemember or MemoryFlow, the
default-space fallback only for keys covering it, RATE_LIMITED with a retry-after trailer, the
client and CLI sending their key, and a Hypothesis fuzz of the authorization metadata (never
INTERNAL/UNKNOWN, never access)."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.api.grpc.auth import ACTIONS
from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.auth.keys import Action, KeyStore
from engram.testing import EngramProcess

SERVICE = spb.DESCRIPTOR.services_by_name["EngramService"]
METHODS = [m.name for m in SERVICE.methods]
SPACE, OTHER = "alpha", "beta"

UNAUTH, DENIED, MISSING, ALLOWED = "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "ALLOWED"
KEYLESS = ("none", "malformed", "unknown", "expired", "revoked")
COLUMNS = (*KEYLESS, "reader", "writer", "other_writer", "admin")
#: RPCs that name no space (a key of another space may call them: they show only its spaces).
SPACELESS = {"ListSpaces", "Echo", "EchoStream", "CreateKey", "ListKeys", "RevokeKey"}


def _mem(content: str = "matrix memory") -> pb.MemoryInput:
    return pb.MemoryInput(content=content)


def _cue() -> pb.Cue:
    return pb.Cue(query="matrix")


#: One request per RPC (a message, or the list of messages of a client stream), naming SPACE.
def _filter() -> Any:
    from google.protobuf import struct_pb2

    f = struct_pb2.Struct()
    f.update({"matrix": "no-such-value"})
    return f


REQUESTS: dict[str, Callable[[], Any]] = {
    "Remember": lambda: spb.RememberRequest(memory=_mem(), memory_space_id=SPACE),
    "Recall": lambda: spb.RecallRequest(cue=_cue(), memory_space_id=SPACE),
    "Forget": lambda: spb.ForgetRequest(memory_id="00000000000000000000000000", memory_space_id=SPACE),
    "Recognize": lambda: spb.RecognizeRequest(memory_space_id=SPACE),
    "Experience": lambda: spb.ExperienceRequest(memory_space_id=SPACE),
    "Reminisce": lambda: spb.ReminisceRequest(memory_space_id=SPACE),
    "Consolidate": lambda: spb.ConsolidateRequest(memory_space_id=SPACE),
    "Dream": lambda: spb.DreamRequest(memory_space_id=SPACE),
    "Complete": lambda: spb.CompleteRequest(memory_space_id=SPACE),
    "Associate": lambda: spb.AssociateRequest(memory_space_id=SPACE),
    "GetMemory": lambda: spb.GetMemoryRequest(memory_id="00000000000000000000000000", memory_space_id=SPACE),
    "ListMemories": lambda: spb.ListMemoriesRequest(memory_space_id=SPACE),
    "Introspect": lambda: spb.IntrospectRequest(memory_space_id=SPACE),
    "Stream": lambda: spb.StreamRequest(memory_space_id=SPACE),
    "StreamingRemember": lambda: [spb.StreamingRememberRequest(sequence=1, memory=_mem(),
                                                               memory_space_id=SPACE)],
    "StreamingRecall": lambda: [spb.StreamingRecallRequest(sequence=1, cue=_cue(), memory_space_id=SPACE)],
    "MemoryFlow": lambda: [spb.MemoryFlowRequest(sequence=1, recall=_cue(), memory_space_id=SPACE)],
    "CreateSpace": lambda: spb.CreateSpaceRequest(memory_space_id=SPACE),
    "ListSpaces": lambda: spb.ListSpacesRequest(),
    "GetSpace": lambda: spb.GetSpaceRequest(memory_space_id=SPACE),
    "DeleteSpace": lambda: spb.DeleteSpaceRequest(memory_space_id="doomed"),
    "ReembedSpace": lambda: spb.ReembedSpaceRequest(memory_space_id=SPACE),
    "GetReembedStatus": lambda: spb.GetReembedStatusRequest(memory_space_id=SPACE),
    "Echo": lambda: spb.EchoRequest(payload=b"x"),
    "EchoStream": lambda: [spb.EchoStreamRequest(payload=b"x")],
    "CreateKey": lambda: spb.CreateKeyRequest(name="matrix", role="reader", spaces=[SPACE]),
    "ListKeys": lambda: spb.ListKeysRequest(),
    "RevokeKey": lambda: spb.RevokeKeyRequest(key_id="no-such-key"),
    "RememberBatch": lambda: spb.RememberBatchRequest(memories=[_mem()], memory_space_id=SPACE),
    "UpdateMemory": lambda: spb.UpdateMemoryRequest(memory_id="matrix-update", memory=_mem(),
                                                    memory_space_id=SPACE),
    "DeleteMemories": lambda: spb.DeleteMemoriesRequest(filter=_filter(), memory_space_id=SPACE),
}


def expected(rpc: str, column: str) -> str:
    if column in KEYLESS:
        return UNAUTH
    action = ACTIONS[f"/{SERVICE.full_name}/{rpc}"]
    if column == "admin":
        return ALLOWED
    if action is Action.admin or (column == "reader" and action is Action.write):
        return DENIED
    if column == "other_writer" and rpc not in SPACELESS:
        return MISSING
    return ALLOWED


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def code_of(err: grpc.RpcError) -> str:
    call: Any = err
    return str(dict(call.trailing_metadata() or ()).get("engram-error-code", ""))


def detail_of(err: grpc.RpcError) -> pb.ErrorDetail:
    call: Any = err
    raw = dict(call.trailing_metadata() or ()).get("engram-error-bin")
    assert raw, f"no error envelope in the trailers of {err}"
    return pb.ErrorDetail.FromString(raw)


def outcome_of_status(err: grpc.RpcError) -> str:
    status = err.code()
    assert status not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), err
    if status == grpc.StatusCode.UNAUTHENTICATED:
        return UNAUTH
    if status == grpc.StatusCode.PERMISSION_DENIED:
        return DENIED
    if status == grpc.StatusCode.NOT_FOUND and code_of(err) == "MEMORY_SPACE_NOT_FOUND":
        return MISSING
    return ALLOWED  # past the key checks: the RPC's own answer (OK, a missing memory, a deadline ...)


def outcome_of_message(error: pb.ErrorDetail) -> str:
    return {"MEMORY_SPACE_NOT_FOUND": MISSING, "PERMISSION_DENIED": DENIED,
            "UNAUTHENTICATED": UNAUTH}.get(error.code, ALLOWED)


def call(channel: grpc.Channel, rpc: str, metadata: tuple[tuple[str, str], ...]) -> str:
    """Call ``rpc`` once with its request and reduce the answer to an outcome."""
    method = SERVICE.methods_by_name[rpc]
    path = f"/{SERVICE.full_name}/{rpc}"
    out_cls: Any = getattr(spb, method.output_type.name)
    des = out_cls.FromString
    request = REQUESTS[rpc]()
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=des)(request, timeout=10, metadata=metadata)
            return ALLOWED
        if not method.client_streaming:
            timeout = 1.5 if rpc == "Stream" else 20  # Stream never ends by itself: a deadline is "in"
            stream: Any = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=des)
            for _ in stream(request, timeout=timeout, metadata=metadata):
                break
            return ALLOWED
        bidi: Any = channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=des)
        responses = bidi(iter(request), timeout=20, metadata=metadata)
        for resp in responses:
            error = getattr(resp, "error", None)
            if error is not None and resp.HasField("error"):
                return outcome_of_message(error)
        return ALLOWED
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and rpc == "Stream":
            return ALLOWED
        return outcome_of_status(err)


class Keys:
    def __init__(self, srv: EngramProcess, admin: str) -> None:
        self.admin = admin
        self.channel = grpc.insecure_channel(srv.grpc_target)
        self.stub = spb_grpc.EngramServiceStub(self.channel)
        self.md = bearer(self.admin)

    def create(self, role: str, spaces: list[str], expires: int = 0) -> tuple[str, str]:
        resp = self.stub.CreateKey(spb.CreateKeyRequest(name=f"{role}-test", role=role, spaces=spaces,
                                                        expires_in_seconds=expires),
                                   timeout=10, metadata=self.md)
        return resp.key.key_id, resp.token

    def revoke(self, key_id: str) -> None:
        self.stub.RevokeKey(spb.RevokeKeyRequest(key_id=key_id), timeout=10, metadata=self.md)


@pytest.fixture(scope="module")
def admin_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An admin key made offline on the data dir (as `engram key create` does) before the start."""
    root = tmp_path_factory.mktemp("auth-grpc")
    return root, KeyStore(root / "data").create("matrix-admin", "admin")[1]


@pytest.fixture(scope="module")
def srv(admin_token: tuple[Path, str]) -> Iterator[EngramProcess]:
    with EngramProcess.start(admin_token[0], spaces=[SPACE, OTHER, "doomed"],
                             settings={"auth": "required", "stream_heartbeat_seconds": 1,
                                       "consolidation_interval_seconds": 0}) as proc:
        yield proc


@pytest.fixture(scope="module")
def keys(srv: EngramProcess, admin_token: tuple[Path, str]) -> Iterator[Keys]:
    k = Keys(srv, admin_token[1])
    yield k
    k.channel.close()


@pytest.fixture(scope="module")
def tokens(keys: Keys) -> dict[str, str | None]:
    expiring = keys.create("writer", [SPACE], expires=1)[1]
    revoked_id, revoked = keys.create("writer", [SPACE])
    keys.revoke(revoked_id)
    t = {
        "none": None,
        "malformed": "not a bearer value",  # sent raw below, without "Bearer "
        "unknown": "egk_" + "A" * 43,
        "expired": expiring,
        "revoked": revoked,
        "reader": keys.create("reader", [SPACE])[1],
        "writer": keys.create("writer", [SPACE])[1],
        "other_writer": keys.create("writer", [OTHER])[1],
        "admin": keys.admin,
    }
    # until the expiring key is past its expiry (1 s after it was made): polled, not slept
    deadline = time.monotonic() + 10
    while call(keys.channel, "Echo", bearer(expiring)) != UNAUTH:
        assert time.monotonic() < deadline, "the key made to expire in 1 s is still accepted after 10 s"
        time.sleep(0.05)
    return t


def metadata_for(column: str, tokens: dict[str, str | None]) -> tuple[tuple[str, str], ...]:
    if column == "malformed":
        return (("authorization", "Basic dXNlcjpwYXNz"),)
    return bearer(tokens[column])


def test_every_rpc_of_the_descriptor_is_classified_and_has_a_request() -> None:
    assert sorted(ACTIONS) == sorted(f"/{SERVICE.full_name}/{m}" for m in METHODS)
    assert sorted(REQUESTS) == sorted(METHODS)


@pytest.mark.parametrize("rpc", METHODS)
def test_access_matrix(rpc: str, keys: Keys, tokens: dict[str, str | None]) -> None:
    got = {column: call(keys.channel, rpc, metadata_for(column, tokens)) for column in COLUMNS}
    want = {column: expected(rpc, column) for column in COLUMNS}
    if rpc == "DeleteSpace":  # the admin cell erased it; the next run needs it back
        keys.stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="doomed"), timeout=10, metadata=keys.md)
    assert got == want


@pytest.mark.parametrize("hole", ["GetMemory"])
def test_a_planted_hole_is_caught_by_the_matrix(hole: str, tmp_path: Path) -> None:
    """One RPC let through without its check (engram.testing.holes): the matrix must disagree."""
    admin = KeyStore(tmp_path / "data").create("holes-admin", "admin")[1]
    with EngramProcess.start(tmp_path, spaces=[SPACE, OTHER, "doomed"], settings={"auth": "required"},
                             module="engram.testing.holes", env={"AUTH_HOLE": hole}) as proc:
        k = Keys(proc, admin)
        try:
            cells = {"none": None, "other_writer": k.create("writer", [OTHER])[1],
                     "reader": k.create("reader", [SPACE])[1]}
            got = {col: call(k.channel, hole, bearer(token)) for col, token in cells.items()}
            holed = {col: call(k.channel, "Recall", bearer(token)) for col, token in cells.items()}
        finally:
            k.channel.close()
    want = {col: expected(hole, col) for col in cells}
    assert got != want, f"the matrix did not notice {hole} skipping its check: {got}"
    assert got["none"] == ALLOWED  # no key at all, and still served
    assert holed == {col: expected("Recall", col) for col in cells}  # the other RPCs stay checked


def test_an_out_of_scope_space_answers_exactly_as_a_missing_one(keys: Keys,
                                                                tokens: dict[str, str | None]) -> None:
    # a key of beta: alpha exists, omega does not (same length, so even the serialized
    # ErrorDetail bytes must be identical once the id is replaced)
    md = bearer(tokens["other_writer"])
    answers = []
    for space in (SPACE, "omega"):
        for rpc, req in (("Recall", spb.RecallRequest(cue=_cue(), memory_space_id=space)),
                         ("GetSpace", spb.GetSpaceRequest(memory_space_id=space))):
            with pytest.raises(grpc.RpcError) as info:
                getattr(keys.stub, rpc)(req, timeout=10, metadata=md)
            err = info.value
            call_: Any = err
            trailers = {k: v for k, v in call_.trailing_metadata() or () if k.startswith("engram-")}
            answers.append((rpc, err.code(), (err.details() or "").replace(space, "<id>"),
                            {k: v.replace(space.encode(), b"<id>") if isinstance(v, bytes) else v
                             for k, v in trailers.items()}))
    assert answers[0][1] == grpc.StatusCode.NOT_FOUND
    assert answers[:2] == answers[2:]


def test_a_revoked_keys_open_stream_ends_unauthenticated(keys: Keys) -> None:
    key_id, token = keys.create("reader", [SPACE])
    got: queue.Queue[Any] = queue.Queue()
    stream = keys.stub.Stream(spb.StreamRequest(memory_space_id=SPACE), timeout=30, metadata=bearer(token))

    def read() -> None:
        try:
            for _ in stream:
                pass
            got.put("ended OK")
        except grpc.RpcError as err:
            got.put(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    assert got.empty(), "the stream ended before the key was revoked"
    keys.revoke(key_id)
    ended = got.get(timeout=10)
    assert isinstance(ended, grpc.RpcError) and ended.code() == grpc.StatusCode.UNAUTHENTICATED, ended
    assert code_of(ended) == "UNAUTHENTICATED"


def test_an_expiring_keys_open_memory_flow_ends_unauthenticated_at_expiry(keys: Keys) -> None:
    _, token = keys.create("writer", [SPACE], expires=2)
    opened = time.monotonic()
    stop = threading.Event()

    def requests() -> Iterator[spb.MemoryFlowRequest]:
        yield spb.MemoryFlowRequest(sequence=1, subscribe=pb.FlowSubscribe(), memory_space_id=SPACE)
        stop.wait(30)  # keep the request side open: only the server can end this flow

    with pytest.raises(grpc.RpcError) as info:
        for _ in keys.stub.MemoryFlow(requests(), timeout=30, metadata=bearer(token)):
            pass
    stop.set()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
    assert "expired" in (info.value.details() or "")
    assert 1.5 < time.monotonic() - opened < 15


def test_the_default_space_fallback_only_for_keys_that_cover_default(
        keys: Keys, tokens: dict[str, str | None]) -> None:
    unnamed = spb.RecallRequest(cue=_cue())  # no memory_space_id, no x-memory-space
    with pytest.raises(grpc.RpcError) as info:
        keys.stub.Recall(unnamed, timeout=10, metadata=bearer(tokens["other_writer"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(info.value) == "MEMORY_SPACE_REQUIRED"
    _, call_ = keys.stub.Recall.with_call(unnamed, timeout=10, metadata=keys.md)  # admin: all spaces
    assert "default" in str(dict(call_.trailing_metadata() or ()).get("engram-warning", ""))


def _count(keys: Keys) -> int:
    return int(keys.stub.ListMemories(spb.ListMemoriesRequest(memory_space_id=SPACE), timeout=10,
                                      metadata=keys.md).total)


def test_a_reader_cannot_write_through_the_bidirectional_streams(keys: Keys,
                                                                 tokens: dict[str, str | None]) -> None:
    md = bearer(tokens["reader"])
    before = _count(keys)
    with pytest.raises(grpc.RpcError) as info:
        list(keys.stub.StreamingRemember(iter([spb.StreamingRememberRequest(
            sequence=1, memory=_mem("reader sneaks in"), memory_space_id=SPACE)]), timeout=10, metadata=md))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    flow = list(keys.stub.MemoryFlow(iter([
        spb.MemoryFlowRequest(sequence=1, remember=_mem("reader sneaks in"), memory_space_id=SPACE),
        spb.MemoryFlowRequest(sequence=2, experience=pb.EpisodeInput(), memory_space_id=SPACE),
        spb.MemoryFlowRequest(sequence=3, recall=_cue(), memory_space_id=SPACE),
    ]), timeout=10, metadata=md))
    by_seq = {r.sequence: r for r in flow}
    assert by_seq[1].error.code == "PERMISSION_DENIED" and by_seq[2].error.code == "PERMISSION_DENIED"
    assert by_seq[3].HasField("recall_result"), by_seq[3]  # the reader's flow still reads
    assert _count(keys) == before


def test_a_reader_subscribing_in_memory_flow_to_another_space_is_told_it_does_not_exist(
        keys: Keys, tokens: dict[str, str | None]) -> None:
    flow = list(keys.stub.MemoryFlow(iter([
        spb.MemoryFlowRequest(sequence=1, subscribe=pb.FlowSubscribe(), memory_space_id=OTHER),
    ]), timeout=10, metadata=bearer(tokens["reader"])))
    assert [r.error.code for r in flow if r.sequence == 1] == ["MEMORY_SPACE_NOT_FOUND"]


METADATA_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(
    METADATA_TEXT,
    METADATA_TEXT.map(lambda s: "Bearer " + s),
    METADATA_TEXT.map(lambda s: "bearer egk_" + s),
    st.text(alphabet=st.sampled_from("abcXYZ019_- "), max_size=60).map(lambda s: "Bearer egk_" + s),
))
def test_fuzzed_authorization_metadata_never_errors_internally_nor_grants_access(
        value: str, keys: Keys, tokens: dict[str, str | None]) -> None:
    if value.strip() in {f"Bearer {t}" for t in tokens.values() if t}:
        return  # a real key by chance
    with pytest.raises(grpc.RpcError) as info:
        keys.stub.Recall(spb.RecallRequest(cue=_cue(), memory_space_id=SPACE), timeout=10,
                         metadata=(("authorization", value),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (value, info.value)
    assert code_of(info.value) == "UNAUTHENTICATED"
    assert detail_of(info.value).code == "UNAUTHENTICATED"


def test_health_reveals_no_space_names_and_reflection_only_the_schema(srv: EngramProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(srv.grpc_target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        for name in (SPACE, OTHER, "zz-missing"):  # a space name is no health service: all alike
            with pytest.raises(grpc.RpcError) as info:
                health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND



def test_a_rate_limited_key_gets_resource_exhausted_with_a_retry_hint(tmp_path: Path) -> None:
    admin = KeyStore(tmp_path / "data").create("limited", "admin")[1]
    with EngramProcess.start(tmp_path, spaces=[SPACE], settings={
            "auth": "required", "rate_limit_per_second": 1, "rate_limit_burst": 2}) as proc, \
            grpc.insecure_channel(proc.grpc_target) as ch:
        stub = spb_grpc.EngramServiceStub(ch)
        codes = []
        for _ in range(6):
            try:
                stub.Recall(spb.RecallRequest(cue=_cue(), memory_space_id=SPACE), timeout=10,
                            metadata=bearer(admin))
                codes.append("OK")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
                call_: Any = err
                trailers = dict(call_.trailing_metadata() or ())
                assert trailers["engram-error-code"] == "RATE_LIMITED"
                assert int(trailers["retry-after"]) >= 1
                codes.append("LIMITED")
        assert codes[0] == "OK" and "LIMITED" in codes


def test_the_grpc_client_and_the_cli_send_their_api_key(srv: EngramProcess, keys: Keys,
                                                        tokens: dict[str, str | None]) -> None:
    from click.testing import CliRunner

    from engram.cli.main import cli
    from engram.client.grpc import GrpcClient
    from engram.errors import PermissionDenied, Unauthenticated

    writer = tokens["other_writer"]
    assert writer is not None
    with GrpcClient(srv.grpc_target, space=OTHER, api_key=writer) as client:
        client.remember("the beta writer writes")
        assert [s.id for s in client.list_spaces().spaces] == [OTHER]  # only the key's spaces
        with pytest.raises(PermissionDenied):
            client.create_key("reader", [OTHER])
    with GrpcClient(srv.grpc_target, space=OTHER) as keyless, pytest.raises(Unauthenticated):
        keyless.recall(query="beta")
    admin = GrpcClient(srv.grpc_target, api_key=keys.admin)
    made = admin.create_key("reader", [OTHER], name="via-client")
    assert made.token.startswith("egk_") and made.key.spaces == [OTHER] and not made.key.all_spaces
    listed = {k.key_id: k for k in admin.list_keys().keys}
    assert made.key.key_id in listed and all("egk_" not in str(k) for k in listed.values())
    assert admin.revoke_key(made.key.key_id).key.HasField("revoked_at")
    admin.close()

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    args = ["memory", "recall", "beta", "--space", OTHER, "--transport", "grpc",
            "--grpc-target", srv.grpc_target,
            "--data-dir", str(srv.root / "elsewhere")]  # no admin.key to fall back on
    refused = CliRunner().invoke(cli, args, env=env)
    assert refused.exit_code != 0 and "UNAUTHENTICATED" in refused.output + (refused.stderr or "")
    allowed = CliRunner().invoke(cli, [*args, "--api-key", writer], env=env)
    assert allowed.exit_code == 0, allowed.output
