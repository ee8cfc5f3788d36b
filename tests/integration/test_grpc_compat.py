"""An OLD client (generated at test time from the frozen revision-1 proto) against the new server.

Revision 1 (tests/fixtures/proto_v0) has no ``memory_space_id``. Its messages
must still decode on the new server and go to the default space, with the
deprecation warning (log line, ``engram-warning`` trailer, counter). The old
client runs in its own interpreter: its modules claim the same proto file
names (``engram/v1/*.proto``) as the current ones, which one descriptor pool
cannot hold twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engram.client.grpc import GrpcClient
from engram.errors import MemoryNotFound
from engram.testing import EngramProcess

ROOT = Path(__file__).resolve().parents[2]
V0 = ROOT / "tests" / "fixtures" / "proto_v0"

OLD_CLIENT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import grpc
    from engram.v1 import memory_pb2 as m, service_pb2 as s, service_pb2_grpc as g
    assert "memory_space_id" not in s.RememberRequest.DESCRIPTOR.fields_by_name, "this must be the v0 proto"
    out = {}
    with grpc.insecure_channel(sys.argv[2]) as ch:
        stub = g.EngramServiceStub(ch)
        note = m.MemoryInput(id="old-1", content="old client note")
        resp, call = stub.Remember.with_call(s.RememberRequest(memory=note))
        out["memory_id"] = resp.receipt.memory_id
        out["warning"] = dict(call.trailing_metadata()).get("engram-warning")
        rec = stub.Recall(s.RecallRequest(cue=m.Cue(query="old client note")))
        mems = rec.result.memories
        out["recalled"] = [i.memory.id for i in list(mems.vivid) + list(mems.associated)]
        reqs = iter([s.StreamingRememberRequest(
            sequence=i, memory=m.MemoryInput(id=f"old-s{i}", content="streamed")) for i in (1, 2)])
        out["streamed"] = [(r.sequence, r.receipt.memory_id) for r in stub.StreamingRemember(reqs)]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def old_client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("proto_v0_gen")
    protos = [str(p.relative_to(V0)) for p in sorted((V0 / "engram" / "v1").glob("*.proto"))]
    proc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{V0}", f"--python_out={out}",
                           f"--grpc_python_out={out}", *protos], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # A regular package, so it shadows the installed `engram` inside the old client's interpreter.
    (out / "engram" / "__init__.py").write_text("")
    (out / "engram" / "v1" / "__init__.py").write_text("")
    return out


def test_old_client_lands_in_default_space_with_warning(tmp_path: Path, old_client_dir: Path) -> None:
    with EngramProcess.start(tmp_path / "srv", spaces=["alpha"]) as srv:
        proc = subprocess.run([sys.executable, "-c", OLD_CLIENT, str(old_client_dir), srv.grpc_target],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["memory_id"] == "old-1"
        assert out["warning"] and "default" in out["warning"] and "deprecated" in out["warning"]
        assert "old-1" in out["recalled"]
        assert out["streamed"] == [[1, "old-s1"], [2, "old-s2"]]

        with GrpcClient(srv.grpc_target, space="default") as default, default.with_space("alpha") as alpha:
            assert default.get_memory("old-1").content == "old client note"
            assert default.get_memory("old-s2").content == "streamed"
            with pytest.raises(MemoryNotFound):
                alpha.get_memory("old-1")

        warned = {r["route"] for r in srv.log_records()
                  if r.get("transport") == "grpc" and "default space" in r.get("msg", "")
                  and r.get("memory_space") == "default" and r.get("peer", "").startswith("ipv")}
        assert {"Remember", "Recall", "StreamingRemember"} <= warned

        # ... and counted: one fallback per call that named no space (the client calls above named one)
        metrics = httpx.get(f"{srv.http_url}/metrics", timeout=30).text
        counted = {
            s.labels["operation"]: s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
            if s.name == "engram_memory_space_default_fallback_total" and s.labels.get("transport") == "grpc"
        }
        assert counted.get("Remember") == 1 and counted.get("Recall") == 1, counted
        assert counted.get("StreamingRemember", 0) >= 1, counted
        assert not set(counted) - {"Remember", "Recall", "StreamingRemember"}, counted
