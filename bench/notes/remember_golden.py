#!/usr/bin/env python3
"""Unary gRPC Remember's answers, byte for byte, for comparing two source trees (Round 8).

    python bench/notes/remember_golden.py --golden FILE [--write-golden]

A real gRPC server (``create_grpc_server``, the process's) on a real port over an in-process
service with a fixed clock, so receipts carry the same timestamps every run: a set of
requests (plain, every optional field, client vectors that auto-link, an id sent twice, the
default-space fallback with its warning trailer, the metadata source and its conflict, and
invalid input of several kinds) is sent in order; each answer's status code, details,
trailing metadata (``engram-error-bin`` re-serialised deterministically: its details map's
wire order varies between processes) and serialised response (deterministic) are written, or
compared with the golden file. Run it with ``PYTHONPATH=<other tree>/src`` for the other tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc

NOW = 1_900_000_000.25


def requests(pb: Any, spb: Any) -> list[tuple[str, Any, tuple[tuple[str, str], ...]]]:
    from google.protobuf import struct_pb2, timestamp_pb2

    def rr(space: str | None = "gold", **fields: Any) -> Any:
        req = spb.RememberRequest(memory=pb.MemoryInput(**fields))
        if space is not None:
            req.memory_space_id = space
        return req

    full = pb.MemoryInput(id="g-full", content="every field", tags=["a", "b"], metadata={"k": "v"},
                          confidence=0.42, decay_rate=0.3, memory_type=pb.MEMORY_TYPE_SEMANTIC,
                          ttl_seconds=3600.0, auto_link=True)
    full.typed_metadata["n"].CopyFrom(struct_pb2.Value(number_value=2.5))
    expiring = pb.MemoryInput(id="g-exp", content="expires")
    expiring.expires_at.CopyFrom(timestamp_pb2.Timestamp(seconds=1_999_999_999, nanos=5))
    out: list[tuple[str, Any, tuple[tuple[str, str], ...]]] = [
        ("plain", rr(id="g-1", content="espresso on the third floor"), ()),
        ("full", spb.RememberRequest(memory=full, memory_space_id="gold"), ()),
        ("expires_at", spb.RememberRequest(memory=expiring, memory_space_id="gold"), ()),
        ("low confidence", rr(id="g-low", content="maybe", confidence=0.05), ()),
        ("vector 1", rr("vec", id="v-1", content="one", embedding=[1.0, 0.0, 0.0, 0.0],
                        auto_link=True), ()),
        ("vector 2 links", rr("vec", id="v-2", content="two", embedding=[0.99, 0.1, 0.0, 0.0],
                              auto_link=True), ()),
        ("vector 3 links", rr("vec", id="v-3", content="three", embedding=[0.98, 0.12, 0.05, 0.0],
                              auto_link=True), ()),
        ("vector no link", rr("vec", id="v-4", content="four", embedding=[0.98, 0.12, 0.05, 0.0],
                              auto_link=False), ()),
        ("metadata source", rr(None, id="g-meta", content="via metadata"), (("x-memory-space", "gold"),)),
        ("fallback", rr(None, id="g-default", content="no space named"), ()),
        # errors
        ("duplicate id", rr(id="g-1", content="again"), ()),
        ("empty content", rr(id="g-e", content=""), ()),
        ("confidence > 1", rr(content="x", confidence=1.5), ()),
        ("bad space id", rr("Bad Space!", content="x"), ()),
        ("space conflict", rr("gold", content="x"), (("x-memory-space", "other"),)),
        ("empty metadata space", rr(None, content="x"), (("x-memory-space", ""),)),
        ("wrong dimension", rr("vec", content="x", embedding=[1.0, 0.0]), ()),
        ("nan in vector", rr("vec", content="x", embedding=[float("nan"), 0.0, 0.0, 0.0]), ()),
        ("too many tags", rr(content="x", tags=[f"t{i}" for i in range(80)]), ()),
        ("bad ttl", rr(content="x", ttl_seconds=-1.0), ()),
        ("bad memory type", rr(content="x", memory_type=99), ()),
        ("too long", rr(content="x" * 200_000), ()),
        ("unknown space", rr("nowhere", id="g-nowhere", content="x"), ()),
    ]
    return out


def canonical(key: str, value: bytes) -> str:
    """A binary trailer as hex; ``engram-error-bin`` re-serialised deterministically (its
    ``details`` Struct is a map, whose wire order varies from process to process)."""
    if key == "engram-error-bin":
        from engram.api.grpc.gen import memory_pb2 as pb

        return pb.ErrorDetail.FromString(value).SerializeToString(deterministic=True).hex()
    return value.hex()


async def run(root: Path) -> list[dict[str, Any]]:
    from engram.api.grpc.gen import memory_pb2 as pb
    from engram.api.grpc.gen import service_pb2 as spb
    from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
    from engram.api.grpc.server import create_grpc_server
    from engram.testing import make_service

    service = make_service(root, ["gold"], clock=lambda: NOW, log_level="critical")
    await service.create_space("vec", dimension=4)
    server, port = await create_grpc_server(service, "127.0.0.1", 0)
    await server.start()
    answers = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = spb_grpc.EngramServiceStub(ch)
            for name, req, md in requests(pb, spb):
                call = stub.Remember(req, metadata=md or None)
                entry: dict[str, Any] = {"name": name}
                try:
                    resp = await call
                    entry["response"] = resp.SerializeToString(deterministic=True).hex()
                except grpc.aio.AioRpcError:
                    pass
                entry["code"] = (await call.code()).name
                entry["details"] = await call.details()
                entry["trailing"] = [[k, v if isinstance(v, str) else canonical(k, v)]
                                     for k, v in (await call.trailing_metadata() or ())]
                answers.append(entry)
    finally:
        await server.stop(None)
        service.close()
    return answers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", type=Path, required=True)
    ap.add_argument("--write-golden", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        answers = asyncio.run(run(Path(tmp)))
    ok = sum(1 for a in answers if a["code"] == "OK")
    print(f"{len(answers)} requests, {ok} OK, {len(answers) - ok} errors")
    if args.write_golden:
        args.golden.write_text(json.dumps(answers, indent=1) + "\n")
        print(f"wrote {args.golden}")
        return
    golden = json.loads(args.golden.read_text())
    diffs = [(g["name"], g, a) for g, a in zip(golden, answers, strict=True) if g != a]
    for name, g, a in diffs:
        print(f"DIFFERS: {name}\n  golden {g}\n  now    {a}")
    print("identical" if not diffs else f"{len(diffs)} answers differ")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
