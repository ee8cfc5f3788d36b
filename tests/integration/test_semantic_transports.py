"""SPEC §9 on the wire: embedders, ``rank``, ``wait_for_embeddings``, ``signals`` and the
embedding backlog over REST, gRPC and the Python clients, against one real server process.

The server runs the ``hash`` embedder (deterministic, no model: fast), chosen by the
``engram start --embedder hash`` flag over ``ENGRAM_EMBEDDER=none``. Its ``openai`` provider
points at a closed port, so a space created with ``{"embedder": {"provider": "openai"}}`` stores
text that can never be embedded: a backlog that stays put, without sleeping or racing a
background thread. The semantic cases with the real model are in test_semantic_local.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.client import AsyncEngramClient, EngramClient
from engram.client.grpc import GrpcClient, cue
from engram.errors import DimensionMismatch, InvalidInput
from engram.testing import EngramProcess

API = "/api/v1"

NOTES = [
    "the espresso machine is on the third floor",
    "the espresso beans are kept in the kitchen cupboard",
    "the third floor kitchen has a new espresso grinder",
    "the parking garage closes at midnight",
    "machine learning reading group meets on the third floor",
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(module_server_factory: Callable[..., EngramProcess],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    settings = {
        "openai_base_url": f"http://127.0.0.1:{_closed_port()}/v1",  # nothing listens: never embeds
        "openai_dimension": 8,  # known without asking the server
        "openai_max_retries": 0,
        "openai_timeout_seconds": 1,
        "embedding_wait_seconds": 0.3,
        "embedder": "none",  # ENGRAM_EMBEDDER=none, overridden by the --embedder flag below
    }
    srv = EngramProcess.start(tmp_path_factory.mktemp("semantic"), ["alpha"], settings,
                              extra_args=["--embedder", "hash"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(server: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server: EngramProcess) -> Iterator[spb_grpc.EngramServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield spb_grpc.EngramServiceStub(channel)


def _space(http: httpx.Client, space_id: str, notes: list[str] = NOTES, **create: Any) -> str:
    resp = http.post(f"{API}/spaces", json={"id": space_id, **create})
    assert resp.status_code in (200, 201), resp.text
    for note in notes:
        stored = http.post(f"{API}/memories/remember", json={"content": note},
                           headers={"X-Memory-Space": space_id})
        assert stored.status_code == 201, stored.text
    return space_id


def _items(result: dict[str, Any]) -> list[dict[str, Any]]:
    mem = result["memories"]
    return [*mem["vivid"], *mem["associated"], *mem["reconstructed"]]


def _envelope(resp: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "suggestion", "example"} <= set(body["error"])
    return dict(body["error"])


def _grpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# ----------------------------------------------------------------------------- REST: spaces


def test_rest_create_space_with_embedder_shows_it_everywhere(http: httpx.Client) -> None:
    made = http.post(f"{API}/spaces", json={"id": "sem-hash", "embedder": {"provider": "hash"}})
    assert made.status_code == 201, made.text
    desc = made.json()
    assert desc["embedder"] == {"provider": "hash", "model": "hash-384", "dimension": 384}
    assert desc["dimension"] == 384 and desc["embedding_backlog"] == 0

    small = http.post(f"{API}/spaces", json={"id": "sem-hash-64",
                                            "embedder": {"provider": "HASH", "model": "hash-64"}})
    assert small.status_code == 201, small.text
    assert small.json()["embedder"] == {"provider": "hash", "model": "hash-64", "dimension": 64}

    got = http.get(f"{API}/spaces/sem-hash").json()
    assert got["embedder"]["provider"] == "hash" and got["embedder"]["dimension"] == 384
    assert isinstance(got["embedding_backlog"], int)
    listed = {s["id"]: s for s in http.get(f"{API}/spaces", params={"limit": 1000}).json()["spaces"]}
    assert listed["sem-hash-64"]["embedder"]["model"] == "hash-64"
    assert "embedding_backlog" in listed["sem-hash"]
    # The server default (--embedder hash) is what a space created without one gets.
    plain = http.post(f"{API}/spaces", json={"id": "sem-default"}).json()
    assert plain["embedder"]["provider"] == "hash"
    none = http.post(f"{API}/spaces", json={"id": "sem-none", "embedder": {"provider": "none"}}).json()
    assert none["embedder"] == {"provider": "none", "model": "none", "dimension": None}


def test_rest_create_space_rejects_bad_embedders_with_the_envelope(http: httpx.Client) -> None:
    bad = _envelope(http.post(f"{API}/spaces", json={"id": "sem-bad", "embedder": {"provider": "word2vec"}}))
    assert bad["code"] == "INVALID_INPUT"
    assert "word2vec" in bad["message"]
    assert all(p in bad["message"] for p in ("local", "openai", "hash", "none"))
    extra = _envelope(http.post(f"{API}/spaces",
                                json={"id": "sem-bad", "embedder": {"provider": "hash", "size": 3}}))
    assert extra["code"] == "INVALID_INPUT" and "embedder.size" in extra["message"]
    missing = _envelope(http.post(f"{API}/spaces", json={"id": "sem-bad", "embedder": {}}))
    assert "embedder.provider" in missing["message"]
    typed = _envelope(http.post(f"{API}/spaces", json={"id": "sem-bad", "embedder": "hash"}))
    assert typed["code"] == "INVALID_INPUT"
    model = _envelope(http.post(f"{API}/spaces",
                                json={"id": "sem-bad", "embedder": {"provider": "local", "model": "gpt-9"}}))
    assert "gpt-9" in model["message"]
    assert http.get(f"{API}/spaces/sem-bad").status_code == 404  # nothing half-created


def test_rest_wrong_embedding_length_names_both_sizes(http: httpx.Client) -> None:
    http.post(f"{API}/spaces", json={"id": "sem-dim", "embedder": {"provider": "hash", "model": "hash-16"}})
    err = _envelope(http.post(f"{API}/memories/remember", json={"content": "x", "embedding": [0.1, 0.2, 0.3]},
                              headers={"X-Memory-Space": "sem-dim"}))
    assert err["code"] == "EMBEDDING_DIMENSION_MISMATCH"
    assert "16" in err["message"] and "3" in err["message"]
    ok = http.post(f"{API}/memories/remember", json={"content": "y", "embedding": [0.25] * 16},
                   headers={"X-Memory-Space": "sem-dim"})
    assert ok.status_code == 201, ok.text


def test_rest_backlog_counts_text_not_yet_embedded(http: httpx.Client) -> None:
    _space(http, "sem-stuck", ["order more coffee", "water the plants", "book the train"],
           embedder={"provider": "openai"})
    desc = http.get(f"{API}/spaces/sem-stuck").json()
    assert desc["embedder"] == {"provider": "openai", "model": "text-embedding-3-small", "dimension": 8}
    assert desc["embedding_backlog"] == 3
    listed = {s["id"]: s for s in http.get(f"{API}/spaces", params={"limit": 1000}).json()["spaces"]}
    assert listed["sem-stuck"]["embedding_backlog"] == 3
    # Findable by text at once; waiting gives up after embedding_wait_seconds and says so.
    got = http.get(f"{API}/memories/recall", params={"query": "coffee", "wait_for_embeddings": "true"},
                   headers={"X-Memory-Space": "sem-stuck"}).json()
    assert [i["memory"]["content"] for i in _items(got)] == ["order more coffee"]
    meta = got["metadata"]
    assert meta["embeddings_pending"] == 3 and meta["embedding_wait_ms"] >= 250
    assert meta["query_vector"] == "none" and "not embedded" in meta["note"]


# ----------------------------------------------------------------------------- REST: recall


def test_rest_recall_results_carry_signals(http: httpx.Client) -> None:
    sid = _space(http, "sem-signals")
    for resp in (
        http.get(f"{API}/memories/recall", params={"query": "espresso", "wait_for_embeddings": "true"},
                 headers={"X-Memory-Space": sid}),
        http.post(f"{API}/memories/recall", json={"query": "espresso", "wait_for_embeddings": True},
                  headers={"X-Memory-Space": sid}),
    ):
        assert resp.status_code == 200, resp.text
        items = _items(resp.json())
        assert len(items) >= 3
        for item in items:
            assert item["signals"], item
            assert {"relevance", "activation", "recency", "confidence"} <= set(item["signals"])
        assert "text" in items[0]["signals"] and "vector" in items[0]["signals"]
        assert resp.json()["metadata"]["rank"] == "cognitive"
        assert resp.json()["metadata"]["query_vector"] == "embedder"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_rest_rank_similarity_is_pure_cosine_order(http: httpx.Client, method: str) -> None:
    sid = _space(http, f"sem-rank-{method.lower()}")
    cue_: dict[str, Any] = {"query": "espresso on the third floor", "max_results": 10,
                            "wait_for_embeddings": True}
    for rank in ("similarity", "cognitive"):
        if method == "GET":
            resp = http.get(f"{API}/memories/recall", headers={"X-Memory-Space": sid},
                            params={**cue_, "rank": rank, "wait_for_embeddings": "true"})
        else:
            resp = http.post(f"{API}/memories/recall", headers={"X-Memory-Space": sid},
                             json={**cue_, "rank": rank})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["metadata"]["rank"] == rank
        items = _items(body)
        scores = [i["score"] for i in items]
        assert len(items) >= 4
        if rank == "similarity":
            assert scores == sorted(scores, reverse=True)
            for item in items:
                assert item["score"] == pytest.approx(max(0.0, item["signals"]["vector"]), abs=1e-6)
        else:  # the fused order weighs more than the cosine
            assert any(abs(i["score"] - i["signals"].get("vector", 0.0)) > 1e-3 for i in items)


def test_rest_rank_rejects_unknown_values_naming_the_allowed_ones(http: httpx.Client) -> None:
    headers = {"X-Memory-Space": "alpha"}
    for resp in (
        http.get(f"{API}/memories/recall", params={"query": "x", "rank": "loudest"}, headers=headers),
        http.post(f"{API}/memories/recall", json={"query": "x", "rank": "loudest"}, headers=headers),
    ):
        err = _envelope(resp)
        assert err["code"] == "INVALID_INPUT" and "rank" in err["message"]
        assert "'cognitive'" in err["message"] and "'similarity'" in err["message"]
    waited = _envelope(http.get(f"{API}/memories/recall", headers=headers,
                                params={"query": "x", "wait_for_embeddings": "soon"}))
    assert "wait_for_embeddings" in waited["message"]


def test_rest_wait_for_embeddings_reaches_the_engine(http: httpx.Client) -> None:
    sid = _space(http, "sem-wait", NOTES[:2])
    headers = {"X-Memory-Space": sid}
    get_wait = http.get(f"{API}/memories/recall", params={"query": "espresso", "wait_for_embeddings": "true"},
                        headers=headers).json()
    post_wait = http.post(f"{API}/memories/recall", json={"query": "espresso", "wait_for_embeddings": True},
                          headers=headers).json()
    assert "embedding_wait_ms" in get_wait["metadata"] and "embedding_wait_ms" in post_wait["metadata"]
    no_wait = http.get(f"{API}/memories/recall", params={"query": "espresso"}, headers=headers).json()
    assert "embedding_wait_ms" not in no_wait["metadata"]


def test_openapi_documents_the_new_fields(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    params = {p["name"] for p in doc["paths"][f"{API}/memories/recall"]["get"]["parameters"]}
    assert {"rank", "wait_for_embeddings"} <= params
    schemas = doc["components"]["schemas"]
    assert "embedder" in schemas["SpaceCreate"]["properties"]
    assert {"embedder", "embedding_backlog"} <= set(schemas["SpaceDescriptor"]["properties"])
    assert "signals" in schemas["RecallItem"]["properties"]
    assert {"rank", "wait_for_embeddings"} <= set(schemas["Cue"]["properties"])


# ----------------------------------------------------------------------------- gRPC


def test_grpc_create_space_with_embedder_and_descriptor(stub: spb_grpc.EngramServiceStub) -> None:
    made = stub.CreateSpace(spb.CreateSpaceRequest(
        memory_space_id="sem-g-hash", embedder=spb.EmbedderChoice(provider="hash", model="hash-32")))
    assert made.created
    emb = made.space.embedder
    assert (emb.provider, emb.model, emb.dimension) == ("hash", "hash-32", 32)
    assert made.space.dimension == 32
    got = stub.GetSpace(spb.GetSpaceRequest(memory_space_id="sem-g-hash")).space
    assert got.HasField("embedder") and got.embedder.dimension == 32
    listed = {s.id: s for s in stub.ListSpaces(spb.ListSpacesRequest(page_size=1000)).spaces}
    assert listed["sem-g-hash"].embedder.model == "hash-32"
    default = stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="sem-g-default")).space
    assert default.embedder.provider == "hash"  # no embedder field: the server's default
    none = stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="sem-g-none",
                                                   embedder=spb.EmbedderChoice(provider="none"))).space
    assert none.embedder.provider == "none" and not none.embedder.HasField("dimension")


def test_grpc_backlog_in_descriptor(stub: spb_grpc.EngramServiceStub) -> None:
    stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="sem-g-stuck",
                                            embedder=spb.EmbedderChoice(provider="openai")))
    for text in ("alpha note", "beta note"):
        stub.Remember(spb.RememberRequest(memory=pb.MemoryInput(content=text), memory_space_id="sem-g-stuck"))
    desc = stub.GetSpace(spb.GetSpaceRequest(memory_space_id="sem-g-stuck")).space
    assert desc.embedding_backlog == 2 and desc.embedder.provider == "openai"
    listed = {s.id: s for s in stub.ListSpaces(spb.ListSpacesRequest(page_size=1000)).spaces}
    assert listed["sem-g-stuck"].embedding_backlog == 2


def test_grpc_invalid_embedder_and_wrong_length_are_invalid_argument(
        stub: spb_grpc.EngramServiceStub) -> None:
    err = _grpc_error(lambda: stub.CreateSpace(spb.CreateSpaceRequest(
        memory_space_id="sem-g-bad", embedder=spb.EmbedderChoice(provider="word2vec"))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "word2vec" in (err.details() or "") and "hash" in (err.details() or "")
    empty = _grpc_error(lambda: stub.CreateSpace(spb.CreateSpaceRequest(
        memory_space_id="sem-g-bad", embedder=spb.EmbedderChoice())))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT

    stub.CreateSpace(spb.CreateSpaceRequest(memory_space_id="sem-g-dim",
                                            embedder=spb.EmbedderChoice(provider="hash", model="hash-16")))
    wrong = _grpc_error(lambda: stub.Remember(spb.RememberRequest(
        memory=pb.MemoryInput(content="x", embedding=[0.5] * 5), memory_space_id="sem-g-dim")))
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "16" in (wrong.details() or "") and "5" in (wrong.details() or "")


def test_grpc_recall_signals_rank_and_wait(http: httpx.Client, stub: spb_grpc.EngramServiceStub) -> None:
    sid = _space(http, "sem-g-recall")

    def recall(**fields: Any) -> pb.RecallResult:
        query = pb.Cue(query="espresso on the third floor", max_results=10, wait_for_embeddings=True,
                       **fields)
        return stub.Recall(spb.RecallRequest(cue=query, memory_space_id=sid)).result

    sim = recall(rank=pb.RANK_MODE_SIMILARITY)
    items = [*sim.memories.vivid, *sim.memories.associated]
    assert len(items) >= 4
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
    for item in items:
        assert "vector" in item.signals
        assert item.score == pytest.approx(max(0.0, item.signals["vector"]), abs=1e-6)
    assert sim.metadata.extra["rank"] == "similarity"
    assert "embedding_wait_ms" in sim.metadata.extra

    fused = recall()  # RANK_MODE_UNSPECIFIED: cognitive, as for every client before revision 3
    assert fused.metadata.extra["rank"] == "cognitive"
    fused_items = [*fused.memories.vivid, *fused.memories.associated]
    assert all({"relevance", "activation", "recency"} <= set(i.signals) for i in fused_items)
    assert any(abs(i.score - i.signals["vector"]) > 1e-3 for i in fused_items if "vector" in i.signals)
    explicit = recall(rank=pb.RANK_MODE_COGNITIVE)
    assert explicit.metadata.extra["rank"] == "cognitive"

    no_wait = stub.Recall(spb.RecallRequest(cue=pb.Cue(query="espresso"), memory_space_id=sid)).result
    assert "embedding_wait_ms" not in no_wait.metadata.extra


def test_grpc_unknown_rank_number_is_invalid_argument(stub: spb_grpc.EngramServiceStub) -> None:
    err = _grpc_error(lambda: stub.Recall(spb.RecallRequest(cue=pb.Cue(query="x", rank=7),  # type: ignore[arg-type]
                                                            memory_space_id="alpha")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cue.rank" in (err.details() or "")


def test_grpc_streaming_recall_honours_rank(http: httpx.Client, server: EngramProcess) -> None:
    sid = _space(http, "sem-g-stream")
    with GrpcClient(server.grpc_target, space=sid) as client:
        replies = list(client.streaming_recall([
            cue("espresso third floor", rank="similarity", wait_for_embeddings=True, max_results=10),
            cue("espresso third floor", max_results=10),
        ]))
    sim, fused = (r.recall_result for r in replies)
    assert sim.metadata.extra["rank"] == "similarity" and fused.metadata.extra["rank"] == "cognitive"
    for item in sim.memories.associated:
        assert item.score == pytest.approx(max(0.0, item.signals["vector"]), abs=1e-6)


def test_consolidation_reports_episodes_skipped(http: httpx.Client, stub: spb_grpc.EngramServiceStub) -> None:
    """Episodes whose vectors cannot be computed (the openai server is unreachable) are left out
    of consolidation and counted by reason, over REST and gRPC."""
    sid = "sem-skipped"
    http.post(f"{API}/spaces", json={"id": sid, "embedder": {"provider": "openai"}})
    for i in range(3):
        stored = http.post(f"{API}/episodes/remember", headers={"X-Memory-Space": sid},
                           json={"when": f"2026-01-0{i + 1}T09:00:00Z", "what": f"standup number {i}"})
        assert stored.status_code == 201, stored.text
    report = http.post(f"{API}/consolidate", headers={"X-Memory-Space": sid}, json={}).json()
    assert report["episodes_skipped"] == {"awaiting_embedding": 3}
    run = stub.Consolidate(spb.ConsolidateRequest(memory_space_id=sid)).run
    assert dict(run.episodes_skipped) == {"awaiting_embedding": 3}


# ----------------------------------------------------------------------------- Python clients


def test_http_clients_pass_embedder_rank_and_wait(server: EngramProcess) -> None:
    with EngramClient(server.http_url, space="sem-c-http") as client:
        made = client.create_space("sem-c-http", embedder="hash", model="hash-48")
        assert made.created and made.embedder is not None and made.embedder.dimension == 48
        assert client.get_space().embedding_backlog == 0
        for note in NOTES:
            client.remember(note)
        for kwargs in ({}, {"embedding": None}):
            result = client.recall("espresso third floor", rank="similarity", wait_for_embeddings=True,
                                   max_results=10, **kwargs)
            items = [*result.memories.vivid, *result.memories.associated]
            assert result.metadata["rank"] == "similarity" and "embedding_wait_ms" in result.metadata
            assert items and all(i.score == pytest.approx(max(0.0, i.signals["vector"]), abs=1e-6)
                                 for i in items)
        with pytest.raises(InvalidInput, match="word2vec"):
            client.create_space("sem-c-bad", embedder={"provider": "word2vec"})
        with pytest.raises(DimensionMismatch):
            client.remember("z", embedding=[1.0, 2.0])

    async def run() -> None:
        async with AsyncEngramClient(server.http_url, space="sem-c-async") as aclient:
            made = await aclient.create_space("sem-c-async",
                                              embedder={"provider": "hash", "model": "hash-24"})
            assert made.embedder is not None and made.embedder.model == "hash-24"
            await aclient.remember("the espresso machine is on the third floor")
            result = await aclient.recall("espresso", rank="similarity", wait_for_embeddings=True)
            assert result.metadata["rank"] == "similarity"
            assert result.memories.associated[0].signals["vector"] > 0

    import asyncio

    asyncio.run(run())


def test_grpc_client_passes_embedder_rank_and_wait(server: EngramProcess) -> None:
    with GrpcClient(server.grpc_target, space="sem-c-grpc") as client:
        made = client.create_space(embedder="hash", model="hash-40")
        assert made.created and made.space.embedder.dimension == 40
        for note in NOTES:
            client.remember(note)
        result = client.recall("espresso third floor", rank="similarity", wait_for_embeddings=True,
                               max_results=10)
        assert result.metadata.extra["rank"] == "similarity" and "embedding_wait_ms" in result.metadata.extra
        items = [*result.memories.vivid, *result.memories.associated]
        assert items and all(i.score == pytest.approx(max(0.0, i.signals["vector"]), abs=1e-6) for i in items)
        with pytest.raises(InvalidInput, match="word2vec"):
            client.create_space("sem-c-bad2", embedder={"provider": "word2vec"})
        with pytest.raises(DimensionMismatch):
            client.remember("z", embedding=[1.0, 2.0])
