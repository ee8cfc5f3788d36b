"""Unary Remember builds its receipt straight into protobuf from the core's ``ReceiptParts``
(Round 8 of bench/notes/write_profile.md). Its answers must be the very bytes the model path
gives (``convert.receipt`` of the ``StoreReceipt`` that ``EngramService.remember`` returns):
two services with the same fixed clock get the same memories (explicit ids, client vectors
that auto-link, every optional field), one through a real gRPC server, one in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from engram.api.grpc import convert as c
from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.api.grpc.server import create_grpc_server
from engram.testing import make_service

NOW = 1_900_000_000.25


def _inputs() -> list[pb.MemoryInput]:
    full = pb.MemoryInput(id="m-full", content="every field", tags=["a", "b"], metadata={"k": "v"},
                          confidence=0.42, decay_rate=0.3, memory_type=pb.MEMORY_TYPE_SEMANTIC,
                          ttl_seconds=3600.0)
    full.typed_metadata["n"].CopyFrom(struct_pb2.Value(number_value=2.5))
    out = [pb.MemoryInput(id="m-1", content="espresso on the third floor"), full,
           pb.MemoryInput(id="m-low", content="maybe", confidence=0.05)]
    for i, vec in enumerate(([1.0, 0.0, 0.0, 0.0], [0.99, 0.1, 0.0, 0.0], [0.98, 0.12, 0.05, 0.0])):
        out.append(pb.MemoryInput(id=f"v-{i}", content=f"vector {i}", embedding=vec, auto_link=True))
    return out


def test_remember_answers_are_the_model_paths_bytes(tmp_path: Path) -> None:
    over_grpc = make_service(tmp_path / "a", clock=lambda: NOW)
    in_process = make_service(tmp_path / "b", clock=lambda: NOW)

    async def run() -> tuple[list[bytes], list[bytes]]:
        for svc in (over_grpc, in_process):
            await svc.create_space("vec", dimension=4)
        server, port = await create_grpc_server(over_grpc, "127.0.0.1", 0)
        await server.start()
        got, want = [], []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = spb_grpc.EngramServiceStub(ch)
                for msg in _inputs():
                    resp = await stub.Remember(spb.RememberRequest(memory=msg, memory_space_id="vec"))
                    got.append(resp.SerializeToString(deterministic=True))
                    receipt = await in_process.remember("vec", c.memory_input(msg))
                    want.append(spb.RememberResponse(receipt=c.receipt(receipt)).SerializeToString(
                        deterministic=True))
        finally:
            await server.stop(None)
        return got, want

    try:
        got, want = asyncio.run(run())
    finally:
        over_grpc.close()
        in_process.close()
    assert got == want
    links = [len(spb.RememberResponse.FromString(b).receipt.auto_links) for b in got]
    assert links[-2:] == [1, 2]  # the vectors did link: the auto_links field is compared too


def test_remember_past_the_quota_is_refused(tmp_path: Path) -> None:
    """``remember_parts`` admits like ``remember``: past ``max_memories`` a Remember is refused
    (RESOURCE_EXHAUSTED, QUOTA_EXCEEDED) and nothing more is stored."""
    service = make_service(tmp_path, ["quota"], max_memories=2)

    async def run() -> list[tuple[str, str | None]]:
        server, port = await create_grpc_server(service, "127.0.0.1", 0)
        await server.start()
        out: list[tuple[str, str | None]] = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = spb_grpc.EngramServiceStub(ch)
                for i in range(3):
                    try:
                        await stub.Remember(spb.RememberRequest(memory=pb.MemoryInput(content=f"m {i}"),
                                                                memory_space_id="quota"))
                        out.append(("OK", None))
                    except grpc.aio.AioRpcError as exc:
                        code = dict(exc.trailing_metadata() or ()).get("engram-error-code")
                        out.append((exc.code().name, str(code)))
        finally:
            await server.stop(None)
        return out

    try:
        got = asyncio.run(run())
        assert service.space("quota").count(strict=True) == 2
    finally:
        service.close()
    assert got == [("OK", None), ("OK", None), ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")]
