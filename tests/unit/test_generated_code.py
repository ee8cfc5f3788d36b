"""The committed generated gRPC code matches the protos (``scripts/gen_proto.py --check``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check", "--diff"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        "src/engram/api/grpc/gen is stale: run `python scripts/gen_proto.py` and commit the result\n"
        + proc.stderr[-6000:]
    )


def test_generated_code_imports_package_relative() -> None:
    from engram.api.grpc.gen import memory_pb2, service_pb2, service_pb2_grpc

    assert memory_pb2.DESCRIPTOR.name == "engram/v1/memory.proto"
    assert service_pb2.DESCRIPTOR.package == "engram.v1"
    assert hasattr(service_pb2_grpc, "EngramServiceServicer")
    for path in (ROOT / "src" / "engram" / "api" / "grpc" / "gen").glob("*.py*"):
        assert "from engram.v1 import" not in path.read_text(), (
            f"{path.name} has an absolute engram.v1 import"
        )


def test_every_space_scoped_request_has_memory_space_id_15() -> None:
    from engram.api.grpc.gen import service_pb2

    service = service_pb2.DESCRIPTOR.services_by_name["EngramService"]
    unscoped = {"ListSpacesRequest", "EchoRequest", "EchoStreamRequest",
                "CreateKeyRequest", "ListKeysRequest", "RevokeKeyRequest"}  # keys belong to no one space
    for method in service.methods:
        msg = method.input_type
        if msg.name in unscoped:
            continue
        field = msg.fields_by_name.get("memory_space_id")
        assert field is not None, f"{msg.name} lacks memory_space_id"
        assert field.number == 15 and field.type == field.TYPE_STRING, msg.name
