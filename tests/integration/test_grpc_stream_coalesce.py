"""StreamingRemember coalescing against a real server: a burst of messages on one stream is
stored in batches (one commit each), and every message is still answered on its own, in
order, with its own receipt or its own error; a bad message fails alone.

The grouping itself is pinned in tests/unit/test_stream_coalesce.py; the kill -9 after acks
in tests/crash/test_stream_coalesce_crash.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    root: Path = tmp_path_factory.mktemp("grpc-coalesce")
    with EngramProcess.start(root, spaces=["coal", "coal-b"], settings={"embedder": "none"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def stub(srv: EngramProcess) -> Iterator[spb_grpc.EngramServiceStub]:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        yield spb_grpc.EngramServiceStub(ch)


def stream_counts(srv: EngramProcess) -> dict[tuple[str, str], float]:
    """(space, status) -> engram_requests_total of StreamingRemember messages; and ("", "hist") ->
    their latency histogram's count over all spaces."""
    text = httpx.get(f"{srv.http_url}/metrics", timeout=30).text
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if 'operation="StreamingRemember"' not in line or 'transport="grpc"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', name))
        if name.startswith("engram_requests_total{"):
            out[(labels["memory_space"], labels["status"])] = float(value)
        elif name.startswith("engram_request_duration_seconds_count{"):
            out[("", "hist")] = out.get(("", "hist"), 0.0) + float(value)
    return out


def memory(seq: int, mid: str, content: str, space: str = "coal") -> spb.StreamingRememberRequest:
    return spb.StreamingRememberRequest(sequence=seq, memory=pb.MemoryInput(id=mid, content=content),
                                        memory_space_id=space)


def stored_ids(stub: spb_grpc.EngramServiceStub, space: str) -> dict[str, str]:
    """id -> content of every memory in ``space``."""
    out: dict[str, str] = {}
    token = ""
    while True:
        page = stub.ListMemories(spb.ListMemoriesRequest(page_size=500, page_token=token,
                                                         memory_space_id=space))
        out.update((m.id, m.content) for m in page.memories)
        token = page.next_page_token
        if not token:
            return out


def test_a_burst_is_answered_per_message_in_order_and_bad_messages_fail_alone(
    srv: EngramProcess, stub: spb_grpc.EngramServiceStub,
) -> None:
    before = stream_counts(srv)
    n = 400
    reqs: list[Any] = [memory(i, f"burst-{i}", f"burst memory {i}") for i in range(1, n + 1)]
    bad: dict[int, str] = {}
    # no item at all: refused while parsing
    reqs[49] = spb.StreamingRememberRequest(sequence=50, memory_space_id="coal")
    bad[50] = "INVALID_INPUT"
    # the id of an earlier message of the same burst: refused by the write itself, inside the batch
    reqs[99] = memory(100, "burst-10", "a second memory with burst-10's id")
    bad[100] = "MEMORY_EXISTS"
    # an episode without `when`: refused while parsing, between valid episodes
    reqs[149] = spb.StreamingRememberRequest(sequence=150, episode=pb.EpisodeInput(what="no when"),
                                             memory_space_id="coal")
    bad[150] = "INVALID_INPUT"
    reqs[150] = spb.StreamingRememberRequest(
        sequence=151,
        episode=pb.EpisodeInput(id="burst-151", what="an episode", when={"seconds": 1_700_000_000}),
        memory_space_id="coal")
    # another space mid-burst (a group of its own), and one that does not exist
    reqs[199] = memory(200, "burst-200", "in the other space", space="coal-b")
    reqs[249] = memory(250, "burst-250", "nowhere", space="no-such-space")
    bad[250] = "MEMORY_SPACE_NOT_FOUND"

    out = list(stub.StreamingRemember(iter(reqs), timeout=120))

    assert [r.sequence for r in out] == list(range(1, n + 1)), "one answer per message, in request order"
    for r in out:
        if r.sequence in bad:
            assert r.WhichOneof("result") == "error", r
            assert r.error.code == bad[r.sequence], r.error
        else:
            assert r.WhichOneof("result") == "receipt", r
            assert r.receipt.memory_id == f"burst-{r.sequence}"
            assert r.receipt.durability == pb.DURABILITY_FSYNC
            assert r.receipt.observed_at.seconds > 0 and r.receipt.stored_at.seconds > 0
    assert "item" in out[49].error.message
    assert out[99].error.code == "MEMORY_EXISTS"
    assert out[99].error.grpc_code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert "episode.when" in out[149].error.message
    assert out[249].error.code == "MEMORY_SPACE_NOT_FOUND"
    assert out[199].receipt.memory_space_id == "coal-b"

    lsns = [r.receipt.lsn for r in out if r.HasField("receipt") and r.memory_space_id == "coal"]
    assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns), "distinct LSNs, ascending in request order"
    assert len(lsns) == n - len(bad) - 1

    stored = stored_ids(stub, "coal")
    expected = {f"burst-{r.sequence}" for r in out if r.HasField("receipt") and r.memory_space_id == "coal"}
    assert set(stored) == expected, "every acknowledged message is stored, nothing else"
    assert stored["burst-10"] == "burst memory 10", "the refused duplicate changed nothing"
    assert set(stored_ids(stub, "coal-b")) == {"burst-200"}

    # metrics: one count per message, whatever batch it was stored in
    after = stream_counts(srv)

    def grew(key: tuple[str, str]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew(("coal", "OK")) == len(lsns) and grew(("coal-b", "OK")) == 1
    assert grew(("coal", "INVALID_ARGUMENT")) == 2 and grew(("coal", "ALREADY_EXISTS")) == 1
    assert grew(("", "hist")) == n


def test_receipts_match_a_lone_remember(stub: spb_grpc.EngramServiceStub) -> None:
    """A coalesced message's receipt has the fields a unary Remember's has."""
    one = stub.Remember(spb.RememberRequest(memory=pb.MemoryInput(id="lone-1", content="lone"),
                                            memory_space_id="coal-b")).receipt
    out = list(stub.StreamingRemember(iter([memory(i, f"pair-{i}", "pair", "coal-b") for i in (1, 2, 3)]),
                                      timeout=60))
    for r in out:
        rc = r.receipt
        assert rc.memory_space_id == one.memory_space_id == r.memory_space_id == "coal-b"
        assert rc.durability == one.durability and rc.consolidation_state == one.consolidation_state
        assert rc.storage_confidence.reasoning == one.storage_confidence.reasoning
        assert rc.storage_confidence.category == one.storage_confidence.category
        assert rc.storage_confidence.value == pytest.approx(one.storage_confidence.value)
        assert rc.lsn > one.lsn


def test_with_quotas_messages_are_admitted_one_by_one(tmp_path: Path) -> None:
    """A quota admits a batch whole or not at all; a stream's messages are admitted one by one,
    so a burst past ``max_memories`` stores up to the limit and refuses only the rest."""
    with (EngramProcess.start(tmp_path, spaces=["quota"], settings={"embedder": "none", "max_memories": 10})
          as srv, grpc.insecure_channel(srv.grpc_target) as ch):
        stub = spb_grpc.EngramServiceStub(ch)
        burst = [memory(i, f"q-{i}", f"quota {i}", "quota") for i in range(1, 16)]
        out = list(stub.StreamingRemember(iter(burst), timeout=60))
        assert [r.sequence for r in out] == list(range(1, 16))
        stored = [r for r in out if r.HasField("receipt")]
        refused = [r for r in out if r.HasField("error")]
        assert len(stored) == 10 and len(refused) == 5
        assert all(r.error.code == "QUOTA_EXCEEDED" for r in refused)
        assert set(stored_ids(stub, "quota")) == {r.receipt.memory_id for r in stored}
