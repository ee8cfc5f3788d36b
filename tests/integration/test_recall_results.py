"""Recall answers also come as one flat ranked list, ``results``: every item of the buckets, best
first, in the order the recall ranked them, over REST (GET and POST), gRPC and both Python clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engram.client import EngramClient, GrpcClient
from engram.testing import EngramProcess

API = "/api/v1"
SPACE = {"X-Memory-Space": "flat"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    with EngramProcess.start(tmp_path_factory.mktemp("flat"), spaces=["flat"]) as proc:
        with httpx.Client(base_url=proc.http_url, headers=SPACE, timeout=30) as http:
            # Vectors at falling similarity to [1, 0, 0, 0]: some vivid, some associated.
            for i in range(8):
                resp = http.post(f"{API}/memories/remember", json={
                    "id": f"f{i}", "content": f"flat list item {i}", "auto_link": False,
                    "embedding": [1.0, 0.35 * i, 0.0, 0.0], "confidence": 0.05 if i % 2 == 0 else 1.0})
                assert resp.status_code == 201, resp.text
        yield proc


def _buckets(body: dict[str, Any]) -> list[str]:
    return [i["memory"]["id"] for b in ("vivid", "associated", "reconstructed") for i in body["memories"][b]]


@pytest.mark.parametrize("rank", ["cognitive", "similarity"])
def test_rest_results_are_every_bucket_item_in_rank_order(srv: EngramProcess, rank: str) -> None:
    with httpx.Client(base_url=srv.http_url, headers=SPACE, timeout=30) as http:
        body = http.post(f"{API}/memories/recall", json={
            "embedding": [1.0, 0.0, 0.0, 0.0], "max_results": 8, "threshold": 0.0, "rank": rank}).json()
        flat = body["results"]
        assert len(flat) == 8 and sorted(i["memory"]["id"] for i in flat) == sorted(_buckets(body))
        assert body["memories"]["vivid"] and body["memories"]["associated"], "both buckets are exercised"
        key = "score" if rank == "cognitive" else "similarity"
        values = [i[key] for i in flat]
        assert values == sorted(values, reverse=True), (rank, values)
        # The same items as in the buckets, not a summary of them.
        by_id = {i["memory"]["id"]: i for b in body["memories"].values() for i in b}
        assert all(by_id[i["memory"]["id"]] == i for i in flat)
        # GET (query string) says the same.
        got = http.get(f"{API}/memories/recall", params={"query": "flat list item", "threshold": 0}).json()
        assert [i["memory"]["id"] for i in got["results"]] and sorted(
            i["memory"]["id"] for i in got["results"]) == sorted(_buckets(got))


def test_grpc_and_python_clients_expose_results(srv: EngramProcess) -> None:
    with httpx.Client(base_url=srv.http_url, headers=SPACE, timeout=30) as http:
        rest = http.post(f"{API}/memories/recall", json={
            "embedding": [1.0, 0.0, 0.0, 0.0], "max_results": 8, "threshold": 0.0}).json()
    order = [i["memory"]["id"] for i in rest["results"]]
    with GrpcClient(srv.grpc_target, space="flat") as g:
        result = g.recall(embedding=[1.0, 0.0, 0.0, 0.0], max_results=8, threshold=0.0)
    assert [i.memory.id for i in result.results] == order
    buckets = [i.memory.id for b in (result.memories.vivid, result.memories.associated) for i in b]
    assert sorted(buckets) == sorted(order)
    with EngramClient(srv.http_url, space="flat") as mem:
        typed = mem.recall(embedding=[1.0, 0.0, 0.0, 0.0], max_results=8, threshold=0.0)
    assert [i.memory.id for i in typed.results] == order
