"""Recall by meaning with the default ``local`` embedder (all-MiniLM-L6-v2), over REST and gRPC.

The one module that loads the real model (about 7 s per server process): the words of the
query appear in none of the memories it must find, so only the server-side embeddings of
SPEC §9 can find them. Everything else about embedders runs on the fast ``hash`` embedder in
test_semantic_transports.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from engram.api.grpc.gen import memory_pb2 as pb
from engram.client.grpc import GrpcClient
from engram.testing import EngramProcess

API = "/api/v1"
SPACE = "sem-local"
OTHER = "sem-other"

NOTES = [
    "the espresso machine is on the third floor",
    "Bob is allergic to peanuts",
    "the quarterly report is due on Friday",
    "the parking garage closes at midnight",
    "Alice prefers window seats on long flights",
    "the wifi password is written on the whiteboard",
    "our team retrospective happens every second Tuesday",
]

CASES = [("coffee", "the espresso machine is on the third floor"),
         ("food allergies", "Bob is allergic to peanuts")]


@pytest.fixture(scope="module")
def server(module_server_factory: Callable[..., EngramProcess]) -> Iterator[EngramProcess]:
    # "local" is the server default, but the harness picks "hash" unless told otherwise. The first
    # batch waits for the model to load, so allow waits longer than the default embedding_wait_seconds.
    srv = module_server_factory(spaces=[SPACE, OTHER], name="local",
                                settings={"embedder": "local", "embedding_wait_seconds": 120})
    with httpx.Client(base_url=srv.http_url, timeout=180) as http:
        desc = http.get(f"{API}/spaces/{SPACE}").json()
        assert desc["embedder"] == {"provider": "local", "model": "all-MiniLM-L6-v2-int8", "dimension": 384}
        for note in NOTES:
            resp = http.post(f"{API}/memories/remember", json={"content": note},
                             headers={"X-Memory-Space": SPACE})
            assert resp.status_code == 201, resp.text
    yield srv


def _items(result: dict[str, Any]) -> list[dict[str, Any]]:
    mem = result["memories"]
    return [*mem["vivid"], *mem["associated"], *mem["reconstructed"]]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_rest_finds_by_meaning(server: EngramProcess, query: str, expected: str) -> None:
    with httpx.Client(base_url=server.http_url, timeout=180, headers={"X-Memory-Space": SPACE}) as http:
        for resp in (
            http.post(f"{API}/memories/recall", json={"query": query, "wait_for_embeddings": True}),
            http.get(f"{API}/memories/recall", params={"query": query, "wait_for_embeddings": "true"}),
        ):
            assert resp.status_code == 200, resp.text
            body = resp.json()
            items = _items(body)
            found = [i["memory"]["content"] for i in items]
            assert found and found[0] == expected, found
            assert all(item["signals"] for item in items)
            assert items[0]["signals"]["vector"] > 0.2 and "text" not in items[0]["signals"]
            assert body["metadata"]["query_vector"] == "embedder"
            assert body["metadata"].get("embeddings_pending", 0) == 0


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_grpc_finds_by_meaning(server: EngramProcess, query: str, expected: str) -> None:
    with GrpcClient(server.grpc_target, space=SPACE, timeout=180) as client:
        result = client.recall(query, wait_for_embeddings=True)
    items: list[pb.RecallItem] = [*result.memories.vivid, *result.memories.associated]
    assert items and items[0].memory.content == expected, [i.memory.content for i in items]
    assert all(len(item.signals) > 0 for item in items)
    assert items[0].signals["vector"] > 0.2
    assert result.metadata.extra["query_vector"] == "embedder"


def test_rank_similarity_is_cosine_order_with_the_model(server: EngramProcess) -> None:
    with httpx.Client(base_url=server.http_url, timeout=180, headers={"X-Memory-Space": SPACE}) as http:
        cue = {"query": "where can I get a coffee", "rank": "similarity", "max_results": 10,
               "wait_for_embeddings": True}
        body = http.post(f"{API}/memories/recall", json=cue).json()
    items = _items(body)
    assert body["metadata"]["rank"] == "similarity" and len(items) == len(NOTES)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    for item in items:
        assert item["score"] == pytest.approx(max(0.0, item["signals"]["vector"]), abs=1e-6)
    assert items[0]["memory"]["content"] == NOTES[0]


def test_meaning_never_crosses_spaces(server: EngramProcess) -> None:
    """The other space holds one unrelated memory: asked for "coffee" by meaning, it answers
    with its own memory or nothing, never the espresso machine of the space beside it; and the
    links the server made from meaning stay inside each space."""
    with httpx.Client(base_url=server.http_url, timeout=180, headers={"X-Memory-Space": OTHER}) as http:
        own = http.post(f"{API}/memories/remember", json={"content": "the printer on floor two is jammed"})
        assert own.status_code == 201, own.text
        own_id = own.json()["memory_id"]
        for rank in ("cognitive", "similarity"):
            body = http.post(f"{API}/memories/recall", json={
                "query": "coffee", "rank": rank, "wait_for_embeddings": True, "max_results": 25}).json()
            assert {it["memory"]["id"] for it in _items(body)} <= {own_id}, rank
        stats = http.get(f"{API}/spaces/{OTHER}").json()
        assert stats["memory_count"] == 1
        listed = http.get(f"{API}/memories").json()["memories"]
        assert [m["id"] for m in listed] == [own_id]

