"""Batch remember and update (SPEC §11) over REST, gRPC, the clients and the CLI, on real servers.

Batch: per-item results in request order, an invalid item failing alone (validation, duplicate id
409 MEMORY_EXISTS within the batch and against stored memories, wrong dimension), LSNs distinct
and ascending, >1,000 items a 400 envelope, the batch's own body limit, quotas counting items.
Update: PUT creates (201) then replaces (200), PATCH changes only the given fields and is 404 for
a missing memory, associations survive (spreading still finds the neighbour), the LSN advances,
an ``updated`` event reaches SSE and gRPC Stream, recall finds the new text and no longer the
old one (hash embedder), and ``engram memory update`` over REST and gRPC.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from click.testing import CliRunner
from google.protobuf import field_mask_pb2

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.cli.main import cli
from engram.client import EngramClient
from engram.client.grpc import GrpcClient
from engram.errors import MemoryNotFound
from engram.testing import EngramProcess

API = "/api/v1"


@pytest.fixture(scope="module")
def srv(module_server_factory: Callable[..., EngramProcess]) -> EngramProcess:
    return module_server_factory(spaces=["alpha", "beta", "quota"], name="batch",
                                 settings={"max_batch_body_bytes": 2_000_000})


@pytest.fixture(scope="module")
def alpha(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "alpha"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def vectors(srv: EngramProcess) -> Iterator[httpx.Client]:
    """Client vectors only (embedder none): dimension 4, set by the first vector."""
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "vectors"}, timeout=60) as c:
        made = c.post(f"{API}/spaces", json={"id": "vectors", "embedder": {"provider": "none"}})
        assert made.status_code == 201
        yield c


def batch(client: httpx.Client, items: list[Any]) -> httpx.Response:
    # json.dumps escapes lone surrogates (httpx's json= cannot encode them)
    return client.post(f"{API}/memories/batch", content=json.dumps({"memories": items}),
                       headers={"content-type": "application/json"})


def recall_ids(client: httpx.Client, query: str, **extra: Any) -> list[str]:
    body = {"query": query, "max_results": 20, "wait_for_embeddings": True, **extra}
    resp = client.post(f"{API}/memories/recall", json=body)
    assert resp.status_code == 200, resp.text
    buckets = resp.json()["memories"]
    return [r["memory"]["id"] for name in ("vivid", "associated", "reconstructed") for r in buckets[name]]


# -- batch over REST ----------------------------------------------------------------------------------
def test_rest_batch_mixed_items_fail_alone(alpha: httpx.Client, vectors: httpx.Client) -> None:
    old = alpha.post(f"{API}/memories/remember", json={"id": "b-old", "content": "stored before"})
    assert old.status_code == 201
    items: list[Any] = [
        {"id": "b-0", "content": "batch zero about harbour cranes"},
        {"id": "b-1", "content": "batch one", "confidence": 7},  # invalid confidence
        {"id": "b-2", "content": "batch two", "tags": ["x"], "metadata": {"k": "v"}},
        {"id": "b-0", "content": "duplicate inside the batch"},
        {"id": "b-old", "content": "duplicate of a stored memory"},
        "not an object",
        {"content": "no id: one is generated", "bogus": 1},  # unknown field
        {"content": "generated id"},
        {"content": "lone surrogate \ud800", "tags": ["\udfff"]},  # refused, and echoed safely
    ]
    resp = batch(alpha, items)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert body["stored"] == 3 and body["memory_space_id"] == "alpha"
    ok = {r["index"]: r for r in results if "error" not in r}
    assert set(ok) == {0, 2, 7}
    assert all(set(r) == {"index", "memory_id", "lsn"} for r in ok.values())
    lsns = [ok[i]["lsn"] for i in sorted(ok)]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3, "distinct, ascending in request order"
    codes = {r["index"]: r["error"]["code"] for r in results if "error" in r}
    assert codes == {1: "INVALID_INPUT", 3: "MEMORY_EXISTS", 4: "MEMORY_EXISTS", 5: "INVALID_INPUT",
                     6: "INVALID_INPUT", 8: "INVALID_INPUT"}
    for r in results:
        if "error" in r:
            assert {"code", "message", "suggestion", "example"} <= set(r["error"]), r
    assert "memories[1].confidence" in results[1]["error"]["message"]
    # what was stored is exactly the valid items, and nothing of the failed ones
    assert alpha.get(f"{API}/memories/b-0").json()["content"] == "batch zero about harbour cranes"
    assert alpha.get(f"{API}/memories/b-old").json()["content"] == "stored before"
    assert alpha.get(f"{API}/memories/b-1").status_code == 404
    got = alpha.get(f"{API}/memories/b-2").json()
    assert got["tags"] == ["x"] and got["metadata"] == {"k": "v"}
    assert "b-0" in recall_ids(alpha, "harbour cranes")
    # a wrong dimension is found per item too (the space's dimension is set by the first vector)
    resp = batch(vectors, [{"id": "v-0", "embedding": [1, 0, 0, 0]}, {"id": "v-1", "embedding": [1, 0]},
                           {"id": "v-2", "embedding": [0, 1, 0, 0]}])
    assert resp.status_code == 201
    res = resp.json()["results"]
    assert res[1]["error"]["code"] == "EMBEDDING_DIMENSION_MISMATCH" and "lsn" in res[0] and "lsn" in res[2]


def _b64(values: list[float]) -> str:
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def test_rest_batch_base64_vectors_fail_alone_and_store_exact_values(srv: EngramProcess) -> None:
    """The batch's base64 lane (vectors decoded per batch): good vectors are stored bit for bit,
    each bad one fails alone with the error the ordinary path gives, and nothing of it is stored."""
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "b64"}, timeout=60) as c:
        made = c.post(f"{API}/spaces", json={"id": "b64", "dimension": 4, "embedder": {"provider": "none"}})
        assert made.status_code == 201, made.text
        good = [0.1, -2.5, 3.0e-7, 1.0]
        items: list[Any] = [
            {"id": "g-0", "content": "first", "embedding": _b64(good)},
            {"id": "x-1", "embedding": "not base64!"},
            {"id": "x-2", "embedding": _b64([1.0, float("nan"), 0.0, 0.0])},
            {"id": "x-3", "embedding": _b64([0.0, 0.0, 0.0, 0.0])},
            {"id": "x-4", "embedding": _b64([1.0, 2.0])},  # another length: the space is 4-d
            {"id": "x-5", "embedding": _b64(good), "confidence": 7},  # a good vector, a bad field
            {"id": "x-6", "embedding": _b64(good)[:-4]},  # 2 bytes short of whole floats
            {"id": "g-7", "embedding": _b64([0.0, 0.0, 0.0, 2.0])},  # vector only, no content
            {"id": "g-0", "embedding": _b64(good)},  # duplicate id within the batch
        ]
        resp = batch(c, items)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        res = body["results"]
        assert body["stored"] == 2 and [r["index"] for r in res] == list(range(len(items)))
        assert {i for i, r in enumerate(res) if "lsn" in r} == {0, 7}
        codes = {i: r["error"]["code"] for i, r in enumerate(res) if "error" in r}
        assert codes == {1: "INVALID_INPUT", 2: "INVALID_INPUT", 3: "INVALID_INPUT",
                         4: "EMBEDDING_DIMENSION_MISMATCH", 5: "INVALID_INPUT", 6: "INVALID_INPUT",
                         8: "MEMORY_EXISTS"}
        assert "not valid base64" in res[1]["error"]["message"]
        assert "finite" in res[2]["error"]["message"] and "all zeros" in res[3]["error"]["message"]
        assert "memories[5].confidence" in res[5]["error"]["message"]
        assert "multiple of 4" in res[6]["error"]["message"]
        for r in res:
            if "error" in r:
                assert {"code", "message", "suggestion", "example"} <= set(r["error"]), r
        # stored exactly as sent (float32, bit for bit), and nothing of the failed items
        import struct

        want = list(struct.unpack("<4f", struct.pack("<4f", *good)))
        assert c.get(f"{API}/memories/g-0").json()["embedding"] == want
        assert c.get(f"{API}/memories/g-0").json()["content"] == "first"
        assert c.get(f"{API}/memories/g-7").json()["embedding"] == [0.0, 0.0, 0.0, 2.0]
        for mid in ("x-1", "x-2", "x-3", "x-4", "x-5", "x-6"):
            assert c.get(f"{API}/memories/{mid}").status_code == 404, mid
        # and recall by the same vector finds it (the unit vector reached the index)
        hit = c.post(f"{API}/memories/recall", json={"embedding": _b64(good), "max_results": 1,
                                                      "rank": "similarity"}).json()["memories"]
        assert [r["memory"]["id"] for r in hit["vivid"] + hit["associated"]][:1] == ["g-0"]


def test_rest_batch_all_failed_is_200_and_limits(alpha: httpx.Client, srv: EngramProcess) -> None:
    resp = batch(alpha, [{"id": "b-0", "content": "taken"}, {"confidence": 2}])
    assert resp.status_code == 200 and resp.json()["stored"] == 0
    assert [r["error"]["code"] for r in resp.json()["results"]] == ["MEMORY_EXISTS", "INVALID_INPUT"]
    too_many = batch(alpha, [{"content": f"m {i}"} for i in range(1001)])
    assert too_many.status_code == 400
    err = too_many.json()["error"]
    assert err["code"] == "INVALID_INPUT" and "1000" in err["message"] and err["example"]
    assert batch(alpha, []).status_code == 400
    assert alpha.post(f"{API}/memories/batch", json={"memories": "nope"}).status_code == 400
    # the batch route has its own body limit (2 MB in this server), every other route keeps 1 MiB
    big = [{"content": "x" * 60_000} for _ in range(25)]  # ~1.5 MB
    resp = batch(alpha, big)
    assert resp.status_code == 201 and resp.json()["stored"] == 25
    assert alpha.post(f"{API}/memories/remember", json={"content": "y" * 1_100_000}).status_code == 413
    huge = batch(alpha, [{"content": "z" * 60_000} for _ in range(40)])  # ~2.4 MB
    assert huge.status_code == 413 and "max_batch_body_bytes" in huge.json()["error"]["message"]


def test_batch_counts_against_quota(module_server_factory: Callable[..., EngramProcess]) -> None:
    srv = module_server_factory(spaces=["quota"], name="quota", settings={"max_memories": 5})
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "quota"}, timeout=30) as c:
        assert batch(c, [{"content": f"q {i}"} for i in range(4)]).status_code == 201
        refused = batch(c, [{"content": "q 4"}, {"content": "q 5"}])  # 6 > 5: the whole batch
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "QUOTA_EXCEEDED"
        assert c.get(f"{API}/memories").json()["total"] == 4, "nothing of a refused batch is stored"
        assert batch(c, [{"content": "q 4"}]).status_code == 201
        # PUT that replaces adds no memory: allowed at the quota; PUT that would create is refused
        first = c.get(f"{API}/memories").json()["memories"][0]["id"]
        assert c.put(f"{API}/memories/{first}", json={"content": "replaced at quota"}).status_code == 200
        assert c.put(f"{API}/memories/brand-new", json={"content": "x"}).status_code == 403


# -- batch over gRPC -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stub(srv: EngramProcess) -> Iterator[spb_grpc.EngramServiceStub]:
    with grpc.insecure_channel(srv.grpc_target) as channel:
        yield spb_grpc.EngramServiceStub(channel)


def test_grpc_batch_per_item_results(stub: spb_grpc.EngramServiceStub) -> None:
    items = [pb.MemoryInput(id="g-0", content="grpc zero"), pb.MemoryInput(id="g-1", content="grpc one",
                                                                          confidence=3.0),
             pb.MemoryInput(id="g-0", content="dup"), pb.MemoryInput(content="grpc three")]
    resp = stub.RememberBatch(spb.RememberBatchRequest(memories=items, memory_space_id="beta"), timeout=30)
    assert resp.stored == 2 and resp.memory_space_id == "beta"
    assert [r.index for r in resp.results] == [0, 1, 2, 3]
    kinds = [r.WhichOneof("outcome") for r in resp.results]
    assert kinds == ["receipt", "error", "error", "receipt"]
    assert resp.results[1].error.code == "INVALID_INPUT"
    assert "memories[1].confidence" in resp.results[1].error.message
    assert resp.results[2].error.code == "MEMORY_EXISTS"
    assert resp.results[2].error.grpc_code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert resp.results[0].receipt.lsn < resp.results[3].receipt.lsn
    with pytest.raises(grpc.RpcError) as info:
        stub.RememberBatch(spb.RememberBatchRequest(memories=[pb.MemoryInput(content="m")] * 1001,
                                                    memory_space_id="beta"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:  # a duplicate on Remember: ALREADY_EXISTS
        stub.Remember(spb.RememberRequest(memory=pb.MemoryInput(id="g-0", content="again"),
                                          memory_space_id="beta"), timeout=30)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_clients_batch(srv: EngramProcess) -> None:
    with EngramClient(srv.http_url, space="beta") as client:
        out = client.remember_batch([{"id": "c-0", "content": "client zero"}, {"content": ""}])
        assert out.stored == 1 and out.results[0].memory_id == "c-0" and out.results[1].error is not None
    with GrpcClient(srv.grpc_target, space="beta") as g:
        resp = g.remember_batch([{"id": "c-1", "content": "grpc client"}, pb.MemoryInput(content="two")])
        assert resp.stored == 2


# -- update over REST ----------------------------------------------------------------------------------
def test_put_creates_then_replaces_patch_changes_fields(alpha: httpx.Client) -> None:
    created = alpha.put(f"{API}/memories/u-1", json={"content": "the kettle is in the kitchen",
                                                     "tags": ["home"], "metadata": {"room": "kitchen"}})
    assert created.status_code == 201, created.text
    c = created.json()
    assert c["created"] is True and c["memory"]["id"] == "u-1" and c["memory"]["embedding"] is None
    replaced = alpha.put(f"{API}/memories/u-1", json={"content": "the kettle moved to the study",
                                                      "confidence": 0.9})
    assert replaced.status_code == 200
    r = replaced.json()
    assert r["created"] is False and r["lsn"] > c["lsn"] and r["memory"]["lsn"] == r["lsn"]
    assert r["memory"]["tags"] == [] and r["memory"]["metadata"] == {}, "PUT replaces: unsent fields reset"
    assert r["memory"]["created_at"] == c["memory"]["created_at"], "the row keeps its identity"
    patched = alpha.patch(f"{API}/memories/u-1", json={"tags": ["office"]})
    assert patched.status_code == 200
    p = patched.json()["memory"]
    assert p["tags"] == ["office"] and p["content"] == "the kettle moved to the study"
    assert p["confidence"] == 0.9
    assert patched.json()["lsn"] > r["lsn"]
    missing = alpha.patch(f"{API}/memories/never-was", json={"content": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "MEMORY_NOT_FOUND"
    assert alpha.get(f"{API}/memories/never-was").status_code == 404, "PATCH never creates"
    empty = alpha.patch(f"{API}/memories/u-1", json={"memory_space_id": "alpha"})  # found by schemathesis
    assert empty.status_code == 400 and "nothing to change" in empty.json()["error"]["message"]
    bad = alpha.patch(f"{API}/memories/u-1", json={"content": None})
    assert bad.status_code == 400 and "null" in bad.json()["error"]["message"]
    assert alpha.patch(f"{API}/memories/u-1", json={"when": "2026-01-01T00:00:00Z"}).status_code == 400
    assert alpha.put(f"{API}/memories/u-1", json={"id": "other", "content": "x"}).status_code == 400


def test_update_recall_new_text_not_old(alpha: httpx.Client) -> None:
    alpha.put(f"{API}/memories/u-2", json={"content": "penguins waddle across antarctic ice"})
    assert "u-2" in recall_ids(alpha, "penguins antarctic ice", threshold=0.3)
    assert "u-2" in recall_ids(alpha, "penguins waddle across antarctic ice", rank="similarity",
                               threshold=0.5)
    alpha.patch(f"{API}/memories/u-2", json={"content": "volcanoes erupt molten basalt lava"})
    assert "u-2" in recall_ids(alpha, "volcanoes basalt lava", threshold=0.3)
    assert "u-2" not in recall_ids(alpha, "penguins antarctic ice", threshold=0.3), "old text and vector gone"
    assert "u-2" not in recall_ids(alpha, "penguins waddle across antarctic ice", rank="similarity",
                                   threshold=0.5)


def test_update_keeps_associations(alpha: httpx.Client) -> None:
    alpha.put(f"{API}/memories/as-a", json={"content": "quarterly invoice from the plumber"})
    alpha.put(f"{API}/memories/as-b", json={"content": "zebra crossing outside the bakery"})
    resp = alpha.post(f"{API}/memories/associate", json={"source_id": "as-a", "target_id": "as-b",
                                                         "strength": 0.9})
    assert resp.status_code in (200, 201), resp.text
    alpha.patch(f"{API}/memories/as-b", json={"content": "zebra crossing outside the new bakery",
                                              "tags": ["street"]})
    alpha.put(f"{API}/memories/as-a", json={"content": "quarterly invoice from the plumber, paid"})
    found = recall_ids(alpha, "quarterly invoice plumber", mode="spreading")
    assert "as-a" in found and "as-b" in found, "spreading still walks the association after updates"


def test_suppressed_memory_put_revives_patch_keeps(alpha: httpx.Client) -> None:
    alpha.put(f"{API}/memories/s-1", json={"content": "marmalade recipe with seville oranges"})
    assert alpha.delete(f"{API}/memories/s-1").status_code == 200
    patched = alpha.patch(f"{API}/memories/s-1", json={"tags": ["food"]})
    assert patched.status_code == 200 and patched.json()["memory"]["suppressed"] is True
    assert "s-1" not in recall_ids(alpha, "marmalade seville oranges")
    put = alpha.put(f"{API}/memories/s-1", json={"content": "marmalade recipe with seville oranges"})
    assert put.status_code == 200 and put.json()["memory"]["suppressed"] is False
    assert "s-1" in recall_ids(alpha, "marmalade seville oranges")


def test_vectors_space_update_embedding(vectors: httpx.Client) -> None:
    vectors.put(f"{API}/memories/vv", json={"content": "vector memory", "embedding": [0, 0, 1, 0]})
    hit = vectors.post(f"{API}/memories/recall", json={"embedding": [0, 0, 1, 0], "rank": "similarity",
                                                        "max_results": 1}).json()["memories"]["vivid"]
    assert hit[0]["memory"]["id"] == "vv"
    vectors.patch(f"{API}/memories/vv", json={"embedding": [0, 0, 0, 1]})
    after = vectors.post(f"{API}/memories/recall", json={"embedding": [0, 0, 0, 1], "rank": "similarity",
                                                          "max_results": 1}).json()["memories"]["vivid"]
    assert after[0]["memory"]["id"] == "vv" and after[0]["score"] > 0.99
    wrong = vectors.patch(f"{API}/memories/vv", json={"embedding": [1, 2]})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "EMBEDDING_DIMENSION_MISMATCH"


# -- events --------------------------------------------------------------------------------------------
def test_updated_event_on_sse_and_grpc_stream(srv: EngramProcess, stub: spb_grpc.EngramServiceStub) -> None:
    events: queue.Queue[Any] = queue.Queue()

    def listen() -> None:
        with EngramClient(srv.http_url, space="alpha") as own:
            for event in own.stream("memories", types=["updated"]):
                events.put(event)
                return

    threading.Thread(target=listen, daemon=True).start()
    call = stub.Stream(spb.StreamRequest(memory_space_id="alpha", event_types=[pb.EVENT_TYPE_UPDATED]))
    call.initial_metadata()
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "alpha"}, timeout=30) as c:
        c.put(f"{API}/memories/ev-1", json={"content": "first"})
        sse = None
        for n in range(100):  # the SSE subscription starts asynchronously: update until it is seen
            done = c.patch(f"{API}/memories/ev-1", json={"content": f"change {n}"}).json()
            try:
                sse = events.get(timeout=0.2)
                break
            except queue.Empty:
                continue
    assert sse is not None and sse.event == "updated"
    assert sse.data["data"]["memory_id"] == "ev-1" and "content" in sse.data["data"]["fields"]
    msg = next(iter(call))
    call.cancel()
    assert msg.event.type == pb.EVENT_TYPE_UPDATED and msg.event.memory_id == "ev-1"
    assert msg.event.lsn > 0 and done["lsn"] >= msg.event.lsn


# -- update over gRPC and the clients ------------------------------------------------------------------
def test_grpc_update_memory_put_and_mask(stub: spb_grpc.EngramServiceStub) -> None:
    put = stub.UpdateMemory(spb.UpdateMemoryRequest(memory_id="gu-1", memory=pb.MemoryInput(
        content="grpc put", tags=["a"]), memory_space_id="beta"), timeout=30)
    assert put.created and put.memory.content == "grpc put" and put.lsn > 0
    again = stub.UpdateMemory(spb.UpdateMemoryRequest(memory_id="gu-1", memory=pb.MemoryInput(
        content="grpc put again"), memory_space_id="beta"), timeout=30)
    assert not again.created and list(again.memory.tags) == [] and again.lsn > put.lsn
    masked = stub.UpdateMemory(spb.UpdateMemoryRequest(
        memory_id="gu-1", memory=pb.MemoryInput(content="ignored", tags=["b", "c"]),
        update_mask=field_mask_pb2.FieldMask(paths=["tags"]), memory_space_id="beta"), timeout=30)
    assert list(masked.memory.tags) == ["b", "c"] and masked.memory.content == "grpc put again"
    for bad, code in ((spb.UpdateMemoryRequest(memory_id="gu-1", memory=pb.MemoryInput(content="x"),
                                               update_mask=field_mask_pb2.FieldMask(paths=["when"]),
                                               memory_space_id="beta"), grpc.StatusCode.INVALID_ARGUMENT),
                      (spb.UpdateMemoryRequest(memory_id="nope", memory=pb.MemoryInput(content="x"),
                                               update_mask=field_mask_pb2.FieldMask(paths=["content"]),
                                               memory_space_id="beta"), grpc.StatusCode.NOT_FOUND),
                      (spb.UpdateMemoryRequest(memory=pb.MemoryInput(content="x"), memory_space_id="beta"),
                       grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as info:
            stub.UpdateMemory(bad, timeout=30)
        assert info.value.code() == code


def test_clients_update_and_patch(srv: EngramProcess) -> None:
    with EngramClient(srv.http_url, space="beta") as client:
        made = client.update_memory("cu-1", "client put", tags=["t"])
        assert made.created and made.memory.tags == ["t"]
        patched = client.patch_memory("cu-1", metadata={"k": "v"})
        assert patched.memory.metadata == {"k": "v"} and patched.memory.tags == ["t"] and not patched.created
        with pytest.raises(MemoryNotFound):
            client.patch_memory("cu-missing", content="x")
    with GrpcClient(srv.grpc_target, space="beta") as g:
        resp = g.patch_memory("cu-1", content="via grpc")
        assert resp.memory.content == "via grpc" and list(resp.memory.tags) == ["t"]
        assert g.update_memory("cu-2", "grpc client put").created


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_memory_update(srv: EngramProcess, transport: str) -> None:
    runner = CliRunner()
    where = (["--url", srv.http_url] if transport == "rest"
             else ["--transport", "grpc", "--grpc-target", srv.grpc_target])
    mid = f"cli-{transport}"
    made = runner.invoke(cli, ["memory", "remember", "cli text", "--id", mid, "--space", "beta", *where])
    assert made.exit_code == 0
    res = runner.invoke(cli, ["memory", "update", mid, "--content", "new cli text", "--tag", "x",
                              "--metadata", "k=v", "--space", "beta", "--json", *where])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["memory"]["content"] == "new cli text" and body["memory"]["tags"] == ["x"]
    assert body["memory"]["metadata"] == {"k": "v"}
    human = runner.invoke(cli, ["memory", "update", mid, "--confidence", "0.3", "--space", "beta", *where])
    assert human.exit_code == 0 and "updated" in human.stdout
    missing = runner.invoke(cli, ["memory", "update", "no-such", "--content", "x", "--space", "beta", *where])
    assert missing.exit_code == 3
    assert runner.invoke(cli, ["memory", "update", mid, "--space", "beta", *where]).exit_code == 2
