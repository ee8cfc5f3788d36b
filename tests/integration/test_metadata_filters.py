"""Typed metadata, metadata filters and delete by filter (SPEC §11) against one real server,
over REST, gRPC and the CLI: every operator checked against the Python evaluator, recall that
finds k results through a 1% filter, isolation between spaces, durability across a restart."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from click.testing import CliRunner, Result
from google.protobuf import struct_pb2

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.cli.main import cli
from engram.client import EngramClient
from engram.client.grpc import GrpcClient
from engram.core import filters
from engram.testing import EngramProcess

API = "/api/v1"
DIM = 16

#: A small fixed set, rich in classes: what every operator is checked against.
DOCS: dict[str, dict[str, Any]] = {
    "s1": {"team": "core", "n": 1, "ok": True},
    "s2": {"team": "web", "n": 2.5, "ok": False, "note": None},
    "s3": {"team": "core", "n": "2", "x": 0},
    "s4": {"n": 10, "team": "ops"},
    "s5": {},
    "s6": {"team": "Core", "n": -3, "ok": True, "note": "later"},
}
FILTERS: list[dict[str, Any]] = [
    {"team": "core"}, {"team": {"$eq": "core"}}, {"team": {"$ne": "core"}},
    {"n": {"$gt": 1}}, {"n": {"$gte": 1}}, {"n": {"$lt": 2.5}}, {"n": {"$lte": 2.5}},
    {"n": {"$gt": "1"}}, {"team": {"$in": ["web", "ops"]}}, {"team": {"$nin": ["web", "ops"]}},
    {"note": {"$exists": True}}, {"note": {"$exists": False}}, {"note": None}, {"ok": True},
    {"ok": {"$ne": True}}, {"n": 1.0},
    {"$or": [{"team": "web"}, {"n": {"$gte": 10}}]},
    {"$and": [{"team": "core"}, {"$or": [{"ok": True}, {"x": {"$exists": True}}]}]},
    {"team": {"$in": ["core", "Core"]}, "n": {"$gt": -5, "$lt": 2}},
]


def expected_ids(flt: dict[str, Any], docs: dict[str, dict[str, Any]] = DOCS) -> set[str]:
    node = filters.parse(flt)
    return {i for i, meta in docs.items() if filters.evaluate(node, meta)}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    proc = EngramProcess.start(tmp_path_factory.mktemp("filters"), spaces=["alpha", "beta"])
    try:
        yield proc
    finally:
        if proc.running:
            proc.stop()


@pytest.fixture(scope="module")
def alpha(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "alpha"}, timeout=60) as c:
        yield c


def http(srv: EngramProcess, space: str) -> httpx.Client:
    return httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": space}, timeout=60)


def new_space(srv: EngramProcess, space: str, provider: str = "none") -> httpx.Client:
    """Create ``space`` (client vectors only, unless ``provider``); a client of it, not yet opened."""
    with http(srv, space) as c:
        resp = c.post(f"{API}/spaces", json={"id": space, "embedder": {"provider": provider}})
    assert resp.status_code in (200, 201), resp.text
    return http(srv, space)


def remember(c: httpx.Client, **memory: Any) -> dict[str, Any]:
    resp = c.post(f"{API}/memories/remember", json=memory)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def list_ids(c: httpx.Client, flt: dict[str, Any] | None = None, **params: Any) -> set[str]:
    q: dict[str, Any] = {"limit": 1000, **params}
    if flt is not None:
        q["filter"] = json.dumps(flt)
    resp = c.get(f"{API}/memories", params=q)
    assert resp.status_code == 200, resp.text
    return {m["id"] for m in resp.json()["memories"]}


def recall_ids(body: dict[str, Any]) -> list[str]:
    return [i["memory"]["id"] for b in ("vivid", "associated", "reconstructed") for i in body["memories"][b]]


def envelope(resp: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) >= {"code", "message", "suggestion", "example"}
    return dict(err)


# -- typed metadata ---------------------------------------------------------------------------------


def test_typed_metadata_round_trips_on_get_list_and_recall(alpha: httpx.Client) -> None:
    meta = {"s": "text", "i": 2, "f": 2.5, "t": True, "z": False, "n": None, "big": 2**62, "neg": -0.25}
    remember(alpha, id="typed", content="typed metadata about lanterns", metadata=meta)
    got = alpha.get(f"{API}/memories/typed").json()["metadata"]
    assert got == meta and type(got["i"]) is int and type(got["f"]) is float and got["t"] is True
    listed = [m for m in alpha.get(f"{API}/memories", params={"limit": 1000}).json()["memories"]
              if m["id"] == "typed"]
    assert listed[0]["metadata"] == meta
    rec = alpha.post(f"{API}/memories/recall", json={"query": "lanterns", "filter": {"i": 2}}).json()
    items = [i for b in rec["memories"].values() for i in b]
    assert [i["memory"]["id"] for i in items] == ["typed"] and items[0]["memory"]["metadata"] == meta


@pytest.mark.parametrize(("metadata", "says"), [
    ({"deep": {"a": 1}}, "metadata.deep: got an object"),
    ({"arr": [1, 2]}, "metadata.arr: got an array"),
    ({"huge": 2**64}, "metadata.huge: integer"),
    ({f"k{i}": i for i in range(65)}, "at most 64"),
    ({"long": "x" * 4097}, "at most 4096"),
    ({"k" * 129: 1}, "at most 128"),
])
def test_bad_metadata_is_refused_naming_the_key(alpha: httpx.Client, metadata: dict[str, Any],
                                                says: str) -> None:
    err = envelope(alpha.post(f"{API}/memories/remember", json={"content": "x", "metadata": metadata}))
    assert err["code"] == "INVALID_INPUT" and says in err["message"], err


# -- every operator, over list ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ops(srv: EngramProcess) -> Iterator[httpx.Client]:
    c = new_space(srv, "ops")
    for mid, meta in DOCS.items():
        remember(c, id=mid, content=f"memory {mid} about operators", metadata=meta)
    yield c
    c.close()


@pytest.mark.parametrize("flt", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_each_operator_lists_what_the_evaluator_says(ops: httpx.Client, flt: dict[str, Any]) -> None:
    assert list_ids(ops, flt) == expected_ids(flt)


def test_list_total_counts_the_filtered_memories(ops: httpx.Client) -> None:
    page = ops.get(f"{API}/memories", params={"limit": 1, "filter": json.dumps({"team": "core"})}).json()
    assert page["total"] == 2 and len(page["memories"]) == 1 and page["next_cursor"]
    nxt = ops.get(f"{API}/memories", params={"limit": 1, "cursor": page["next_cursor"],
                                              "filter": json.dumps({"team": "core"})}).json()
    assert [m["id"] for m in page["memories"] + nxt["memories"]] == ["s1", "s3"]


def test_recall_filters_by_get_and_by_post(ops: httpx.Client) -> None:
    flt = {"team": {"$in": ["core", "web"]}}
    got = ops.get(f"{API}/memories/recall", params={"query": "operators", "max_results": 10,
                                                     "filter": json.dumps(flt)})
    assert got.status_code == 200, got.text
    assert set(recall_ids(got.json())) == expected_ids(flt)
    posted = ops.post(f"{API}/memories/recall", json={"query": "operators", "filter": flt}).json()
    assert set(recall_ids(posted)) == expected_ids(flt)
    only = ops.post(f"{API}/memories/recall", json={"filter": {"n": {"$gte": 10}}}).json()  # filter alone
    assert recall_ids(only) == ["s4"]


@pytest.mark.parametrize(("flt", "says"), [
    ({"n": {"$gtx": 1}}, "filter.n.$gtx: unknown operator"),
    ({"$nor": [{"a": 1}]}, "unknown operator '$nor'"),
    ({"$or": [{"a": 1}, {"b": [1]}]}, "filter.$or[1].b: got an array"),
    ({"a": {"$gt": None}}, "filter.a.$gt"),
])
def test_bad_filters_get_the_envelope_on_every_route(ops: httpx.Client, flt: dict[str, Any],
                                                     says: str) -> None:
    for resp in (
        ops.get(f"{API}/memories", params={"filter": json.dumps(flt)}),
        ops.get(f"{API}/memories/recall", params={"query": "x", "filter": json.dumps(flt)}),
        ops.post(f"{API}/memories/recall", json={"query": "x", "filter": flt}),
        ops.post(f"{API}/memories/delete", json={"filter": flt}),
    ):
        err = envelope(resp)
        assert err["code"] == "INVALID_INPUT" and says in err["message"], err
    err = envelope(ops.get(f"{API}/memories", params={"filter": "{not json"}))
    assert "not valid JSON" in err["message"]
    assert list_ids(ops) == set(DOCS)  # nothing was touched


# -- recall inside the filter -----------------------------------------------------------------------


def test_a_one_percent_filter_still_returns_k_results(srv: EngramProcess) -> None:
    rng = np.random.default_rng(7)
    n, keep = 2000, 20  # 1% of the space matches
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    query = rng.normal(size=DIM)
    # the matching memories are the ones *farthest* from the query: post-filtering a top-k finds none
    far = set(np.argsort(vecs @ query)[:keep].tolist())
    with new_space(srv, "sparse") as c:
        for i in range(n):
            remember(c, id=f"v{i}", content="", embedding=vecs[i].tolist(),
                     metadata={"tenant": "rare" if i in far else "common", "i": i, "grp": i % 100})
        for body in ({"embedding": query.tolist(), "max_results": 10, "filter": {"tenant": "rare"}},
                     {"embedding": query.tolist(), "max_results": 10, "filter": {"tenant": "rare"},
                      "rank": "similarity"},
                     {"embedding": query.tolist(), "max_results": 10, "mode": "hybrid",
                      "filter": {"$and": [{"tenant": {"$ne": "common"}}, {"i": {"$gte": 0}}]}}):
            resp = c.post(f"{API}/memories/recall", json=body)
            assert resp.status_code == 200, resp.text
            ids = recall_ids(resp.json())
            assert len(ids) == 10, (body, resp.json()["metadata"])
            assert {int(i[1:]) for i in ids} <= far
        # exact: the best matches by cosine, in numpy's order (scores clamp at 0: positive ones only)
        resp = c.post(f"{API}/memories/recall", json={"embedding": query.tolist(), "max_results": 10,
                                                       "filter": {"grp": 3}, "rank": "similarity"})
        unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        cos = unit @ (query / np.linalg.norm(query))
        best = [i for i in sorted(range(3, n, 100), key=lambda i: -cos[i]) if cos[i] > 0][:10]
        assert len(best) >= 3
        assert recall_ids(resp.json())[: len(best)] == [f"v{i}" for i in best]
        # a broad filter (half the space) takes the ANN-and-check path and still fills the page
        resp = c.post(f"{API}/memories/recall", json={"embedding": query.tolist(), "max_results": 10,
                                                       "filter": {"tenant": "common"}})
        assert len(recall_ids(resp.json())) == 10
        assert all(int(i[1:]) not in far for i in recall_ids(resp.json()))


def test_spreading_never_returns_what_the_filter_excludes(srv: EngramProcess) -> None:
    with new_space(srv, "spread", provider="hash") as c:
        remember(c, id="seed", content="the lighthouse keeper", metadata={"kind": "a"})
        # found by the query's words, then dropped by the filter, then reached again by spreading
        remember(c, id="near", content="the lighthouse keeper's boat", metadata={"kind": "b"})
        remember(c, id="hop", content="unrelated words entirely", metadata={"kind": "b"})
        remember(c, id="far", content="another unrelated sentence", metadata={"kind": "a"})
        for src, dst in (("seed", "near"), ("seed", "hop"), ("hop", "far")):
            assert c.post(f"{API}/memories/associate",
                          json={"source_id": src, "target_id": dst, "strength": 0.9}).status_code == 200
        free = recall_ids(c.post(f"{API}/memories/recall", json={
            "query": "lighthouse keeper", "mode": "spreading", "max_results": 10}).json())
        assert {"near", "hop"} <= set(free)  # without the filter, both come back
        for mode in ("spreading", "hybrid"):
            kept = recall_ids(c.post(f"{API}/memories/recall", json={
                "query": "lighthouse keeper", "mode": mode, "max_results": 10,
                "filter": {"kind": "a"}}).json())
            assert "seed" in kept and not {"near", "hop"} & set(kept), (mode, kept)


# -- delete by filter ---------------------------------------------------------------------------------


def _forgotten_events(srv: EngramProcess, space: str, want: int, out: list[dict[str, Any]],
                      ready: threading.Event) -> None:
    with httpx.Client(base_url=srv.http_url, timeout=30) as c, c.stream(
            "GET", f"{API}/stream/memories", params={"types": "forgotten"},
            headers={"X-Memory-Space": space}) as resp:
        ready.set()
        for line in resp.iter_lines():
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if data.get("type", "forgotten") == "forgotten" and "memory_id" in json.dumps(data):
                    out.append(data)
                    if len(out) >= want:
                        return


def test_delete_by_filter_suppresses_then_erases_and_is_durable(srv: EngramProcess) -> None:
    with new_space(srv, "gdpr") as c, new_space(srv, "gdpr-other") as other:
        for i in range(6):
            remember(c, id=f"g{i}", content=f"note {i}", metadata={"user": "ada" if i % 2 else "bob", "i": i})
            remember(other, id=f"g{i}", content=f"note {i}", metadata={"user": "ada", "i": i})
        events: list[dict[str, Any]] = []
        ready = threading.Event()
        watcher = threading.Thread(target=_forgotten_events, args=(srv, "gdpr", 3, events, ready),
                                   daemon=True)
        watcher.start()
        assert ready.wait(10)
        resp = c.post(f"{API}/memories/delete", json={"filter": {"user": "ada"}})
        assert resp.status_code == 200, resp.text
        first = resp.json()
        assert first["count"] == 3 and first["mode"] == "suppress" and first["lsn"] > 0
        watcher.join(10)
        assert len(events) == 3, events
        assert list_ids(c) == {"g0", "g2", "g4"}
        assert list_ids(c, include_suppressed="true") == {f"g{i}" for i in range(6)}
        again = c.post(f"{API}/memories/delete", json={"filter": {"user": "ada"}}).json()
        assert again["count"] == 0  # already suppressed
        erased = c.post(f"{API}/memories/delete", json={"filter": {"user": "ada", "i": {"$lt": 5}},
                                                         "mode": "delete"}).json()
        assert erased["count"] == 2 and erased["lsn"] > first["lsn"]  # suppressed ones are erased too
        assert list_ids(c, include_suppressed="true") == {"g0", "g2", "g4", "g5"}
        assert list_ids(other) == {f"g{i}" for i in range(6)}  # a filter never crosses spaces
        err = envelope(c.post(f"{API}/memories/delete", json={"filter": {}}))
        assert "empty filter" in err["message"]
        envelope(c.post(f"{API}/memories/delete", json={}))
        envelope(c.post(f"{API}/memories/delete", json={"filter": {"user": "ada"}, "mode": "shred"}))


def test_delete_by_filter_survives_a_kill(tmp_path: Any) -> None:
    proc = EngramProcess.start(tmp_path, spaces=["durable"])
    try:
        with http(proc, "durable") as c:
            for i in range(10):
                remember(c, id=f"d{i}", content=f"note {i}", metadata={"i": i})
            assert c.post(f"{API}/memories/delete", json={"filter": {"i": {"$lt": 3}}}).json()["count"] == 3
            assert c.post(f"{API}/memories/delete", json={"filter": {"i": {"$gte": 8}},
                                                          "mode": "delete"}).json()["count"] == 2
        proc.kill()  # SIGKILL right after the acknowledgements: they were durable
        proc = proc.restart()
        with http(proc, "durable") as c:
            assert list_ids(c) == {f"d{i}" for i in range(3, 8)}
            assert list_ids(c, include_suppressed="true") == {f"d{i}" for i in range(8)}
            assert list_ids(c, {"i": {"$gte": 7}}) == {"d7"}  # the index is intact after recovery
    finally:
        if proc.running:
            proc.stop()


# -- gRPC -----------------------------------------------------------------------------------------------


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def test_grpc_typed_metadata_filters_and_delete(srv: EngramProcess) -> None:
    new_space(srv, "rpc").close()
    with GrpcClient(srv.grpc_target, space="rpc") as c, grpc.insecure_channel(srv.grpc_target) as ch:
        stub = spb_grpc.EngramServiceStub(ch)
        c.remember("first rpc memory", id="r1", metadata={"team": "core", "n": 3, "ok": True, "no": None})
        c.remember("second rpc memory", id="r2", metadata={"team": "web"}, typed_metadata={"n": 7.5})
        mem = c.get_memory("r1")
        assert dict(mem.metadata) == {"team": "core", "n": "3", "ok": "true", "no": "null"}
        typed = {k: v.WhichOneof("kind") for k, v in mem.typed_metadata.items()}
        assert typed == {"team": "string_value", "n": "number_value", "ok": "bool_value", "no": "null_value"}
        with http(srv, "rpc") as rest:  # a gRPC integral number reads back as an integer over REST
            assert rest.get(f"{API}/memories/r1").json()["metadata"] == {
                "team": "core", "n": 3, "ok": True, "no": None}
        page = c.list_memories(page_size=10, filter={"n": {"$gt": 5}})
        assert [m.id for m in page.memories] == ["r2"] and page.total == 1
        result = c.recall("rpc memory", filter={"team": "core"})
        assert [i.memory.id for i in list(result.memories.vivid) + list(result.memories.associated)] == ["r1"]
        for bad, says in (
            (spb.RememberRequest(memory=pb.MemoryInput(content="x", metadata={"k": "a"},
                                                      typed_metadata={"k": struct_pb2.Value(number_value=1)}),
                                 memory_space_id="rpc"), "also in memory.metadata"),
            (spb.RememberRequest(memory=pb.MemoryInput(content="x", typed_metadata={
                "deep": struct_pb2.Value(struct_value=_struct({"a": 1}))}), memory_space_id="rpc"),
             "memory.typed_metadata.deep"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.Remember(bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert says in (err.value.details() or "")
        for req in (spb.DeleteMemoriesRequest(memory_space_id="rpc"),
                    spb.DeleteMemoriesRequest(filter=_struct({"n": {"$bad": 1}}), memory_space_id="rpc"),
                    spb.ListMemoriesRequest(filter=_struct({"$or": []}), memory_space_id="rpc"),
                    spb.RecallRequest(cue=pb.Cue(query="x", filter=_struct({"a": {"$in": 3}})),
                                      memory_space_id="rpc")):
            method = {"DeleteMemoriesRequest": stub.DeleteMemories, "ListMemoriesRequest": stub.ListMemories,
                      "RecallRequest": stub.Recall}[type(req).__name__]
            with pytest.raises(grpc.RpcError) as err:
                method(req)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, req
            assert dict(err.value.trailing_metadata() or ())["engram-error-code"] == "INVALID_INPUT"
        gone = c.delete_memories({"team": "web"}, mode="delete")
        assert gone.count == 1 and gone.lsn > 0 and gone.memory_space_id == "rpc"
        assert [m.id for m in c.list_memories(page_size=10).memories] == ["r1"]


# -- CLI ------------------------------------------------------------------------------------------------


def cli_run(srv: EngramProcess, *args: str, transport: str = "rest") -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    env.update(ENGRAM_URL=srv.http_url, ENGRAM_GRPC_TARGET=srv.grpc_target, ENGRAM_TRANSPORT=transport)
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_meta_filter_and_delete(srv: EngramProcess, transport: str) -> None:
    space = f"cli-{transport}"
    new_space(srv, space, provider="hash").close()
    for mid, meta in (("c1", ["team=core", "n=2", "ok=true"]), ("c2", ["team=web", "n=2.5", 'code="7"']),
                      ("c3", ["team=core", "n=9"])):
        res = cli_run(srv, "memory", "remember", f"cli note {mid}", "--id", mid, "--space", space,
                      *[a for m in meta for a in ("--meta", m)], transport=transport)
        assert res.exit_code == 0, res.output
    got = json.loads(cli_run(srv, "memory", "get", "c2", "--space", space, "--json",
                             transport=transport).output)
    assert got["metadata"] == {"team": "web", "n": 2.5, "code": "7"}
    listed = json.loads(cli_run(srv, "memory", "list", "--space", space, "--json", "--filter",
                                '{"n": {"$gte": 2, "$lt": 9}}', transport=transport).output)
    assert [m["id"] for m in listed["memories"]] == ["c1", "c2"]
    recalled = json.loads(cli_run(srv, "memory", "recall", "cli note", "--space", space, "--json",
                                  "--filter", '{"team": "core"}', transport=transport).output)
    assert {i["memory"]["id"] for b in recalled["memories"].values() for i in b} == {"c1", "c3"}
    bad = cli_run(srv, "memory", "list", "--space", space, "--filter", '{"n": {"$gtx": 1}}',
                  transport=transport)
    assert bad.exit_code == 2 and "$gtx" in bad.output
    res = cli_run(srv, "memory", "delete", "--space", space, "--filter", '{"team": "core"}',
                  "--mode", "delete", "--json", transport=transport)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["count"] == 2
    left = json.loads(cli_run(srv, "memory", "list", "--space", space, "--json", "--include-suppressed",
                              transport=transport).output)
    assert [m["id"] for m in left["memories"]] == ["c2"]


def test_python_client_filters(srv: EngramProcess) -> None:
    new_space(srv, "pyclient").close()
    with EngramClient(srv.http_url, space="pyclient") as c:
        c.remember("a", id="p1", metadata={"lvl": 1})
        c.remember("b", id="p2", metadata={"lvl": 2})
        assert [m.id for m in c.list_memories(filter={"lvl": {"$gt": 1}}).memories] == ["p2"]
        assert [m.id for m in c.iter_memories(filter={"lvl": 1})] == ["p1"]
        assert c.delete_memories({"lvl": {"$in": [1, 2]}}).count == 2
        assert c.list_memories().memories == []
