"""gRPC unary Remember on the PostgreSQL backend: its service gives full receipts (no
``ReceiptParts``), which the handler converts as before Round 8 (bench/notes/write_profile.md);
the answer matches what REST reads back for the memory."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc

from .conftest import PgCluster, fresh_database, start_pg_server


def test_unary_remember_answers_with_the_full_receipt(pg: PgCluster, tmp_path: Path) -> None:
    srv = start_pg_server(tmp_path, fresh_database(pg, "grem"), embedder="none")
    try:
        r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": "grem", "dimension": 4}, timeout=30)
        assert r.status_code == 201, r.text
        with grpc.insecure_channel(srv.grpc_target) as ch:
            stub = spb_grpc.EngramServiceStub(ch)
            got = []
            for i, vec in enumerate(([1.0, 0.0, 0.0, 0.0], [0.99, 0.1, 0.0, 0.0])):
                got.append(stub.Remember(spb.RememberRequest(
                    memory=pb.MemoryInput(id=f"r-{i}", content=f"memory {i}", confidence=0.7, embedding=vec,
                                          auto_link=True),
                    memory_space_id="grem"), timeout=30).receipt)
        stored = httpx.get(srv.http_url + "/api/v1/memories/r-1", headers={"X-Memory-Space": "grem"},
                           timeout=30)
        assert stored.status_code == 200, stored.text
    finally:
        srv.stop()
    first, second = got
    assert [x.memory_id for x in got] == ["r-0", "r-1"]
    assert 0 < first.lsn < second.lsn
    assert all(x.durability == pb.DURABILITY_FSYNC and x.memory_space_id == "grem" for x in got)
    assert all(x.consolidation_state == pb.CONSOLIDATION_STATE_RECENT for x in got)
    assert abs(second.storage_confidence.value - 0.7) < 1e-9 and second.storage_confidence.reasoning
    assert second.stored_at.seconds > 0 and second.observed_at.seconds > 0
    assert [a.target_id for a in second.auto_links] == ["r-0"]
    assert stored.json()["id"] == "r-1"
