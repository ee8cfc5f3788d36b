"""Differential test: the PostgreSQL backend answers the data plane as the SQLite backend does (issue 17).

One seeded sequence of data-plane operations (``script``) is replayed **interleaved** into four
targets: spaces A and B on a real SQLite server, spaces A and B on a real PostgreSQL server (real
``engram start`` processes on free ports, ``embedder = "none"``, every vector given by the client,
so every answer is determined by the operations). Op *i* goes to all four before op *i + 1*.
The four normalised transcripts must be equal: SQLite A = SQLite B (nothing leaks between spaces),
PostgreSQL A = PostgreSQL B, and SQLite = PostgreSQL.

Covered: receipts (id, lsn), batch (one invalid item), episode, get, list pages (order, a batch's
items in batch order, the cursor walk, each page's ``total``, with and without suppressed memories,
by memory type and by metadata filter), PUT (create, replace), PATCH, forget (suppress, delete),
delete by metadata filter (counts), associate and associations, auto-links on remember (the
receipt's ``auto_links`` and the edges) and temporal links between episodes, recall by embedding with
``rank: "similarity"`` (ids and order; the ``similarity`` within 1e-3: PostgreSQL keeps vectors
as ``halfvec``, the two differ by ~1e-5 here), metadata-filtered and
tag-filtered recall, spreading and hybrid recall over associations to memories with no vector
(which memories, and the activation path of those spreading alone found; ``max_hops``), recall by
context (time range, place, people; alone, with a vector, with spreading), a few gRPC reads, and
errors (404 and 400 bodies' codes) for bad operations.

Normalisation: wall-clock fields are dropped; generated memory ids become ``m#n`` in the order a
target first answered them (so the same op sequence maps to the same names); list cursors become
``<cursor>`` (they are opaque and backend-specific; the walk is compared, not the token).

Where the backends legitimately differ, only what the contract makes equal is compared:

- ``score``, ``confidence`` and ``activation`` of recall items: both backends score with the same
  functions (cognition/recall.py), but the inputs differ by a little (halfvec cosines, text
  scores, and when each backend's background reinforcement of an earlier recall lands), so only
  ``similarity`` (cosine), the ``rank: "similarity"`` order and the *sets* a cognitive recall
  returns are compared. Likewise a memory's access bookkeeping (``access_count``,
  ``activation``, ``last_access``: written in the background on both) is dropped.
- Full-text recall: SQLite ranks with FTS5 BM25, PostgreSQL with ``ts_rank``; scores and order
  differ by design, so the set of matching ids is compared.
- ``storage_confidence.reasoning`` says which storage acknowledged the write (fsync'd file or
  PostgreSQL commit): human text naming the backend, dropped.

List order is compared as served: both backends list in insertion order (SQLite's rowid,
PostgreSQL's ``created_lsn``), so the items of one batch, stored at one instant, come in batch
order on both (this test found them in random id order on PostgreSQL before ``created_lsn``).
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database

DIM = 4
SEED = 17
TOL = 1e-3
NO_VECTOR = {"include_embedding": "false"}
GENERATED = re.compile(r"[0-9a-f]{32}")  # a server-made memory id (uuid4 hex)
DROP = {"created_at", "updated_at", "last_access", "last_accessed", "observed_at", "stored_at", "timing",
        "timing_ms", "duration_ms", "took_ms", "access_count", "activation", "score", "confidence",
        "request_id", "memory_space_id", "reasoning"}


@dataclass
class Target:
    """One space on one server, with the names its generated ids were given."""

    name: str
    http: httpx.Client
    grpc_target: str
    space: str
    ids: dict[str, str] = field(default_factory=dict)

    def name_id(self, raw: str) -> str:
        return self.ids.setdefault(raw, f"m#{len(self.ids)}")


@pytest.fixture(scope="module")
def servers(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EngramProcess]]:
    # a generous spreading budget on both: a truncated spread (load) is not a backend difference
    common = {"embedder": "none", "spreading_time_budget_ms": 2000.0}
    lite = EngramProcess.start(tmp_path_factory.mktemp("lite"), settings=common)
    try:
        post = EngramProcess.start(tmp_path_factory.mktemp("pg"), settings={
            "backend": "postgres", "postgres_dsn": fresh_database(pg, "diff"), **common})
    except BaseException:
        lite.stop()
        raise
    yield {"sqlite": lite, "postgres": post}
    for srv in (lite, post):
        srv.stop()


def _targets(servers: dict[str, EngramProcess]) -> list[Target]:
    out = []
    for backend, srv in servers.items():
        for label in ("A", "B"):
            sid = f"d{label.lower()}-{uuid.uuid4().hex[:8]}"
            r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid, "dimension": DIM}, timeout=30)
            assert r.status_code == 201, r.text
            out.append(Target(f"{backend}-{label}", httpx.Client(base_url=srv.http_url, timeout=30,
                                                                   headers={"X-Memory-Space": sid}),
                              srv.grpc_target, sid))
    return out


# ------------------------------------------------------------------------------ normalising


def normalise(obj: Any, t: Target, key: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: normalise(v, t, k) for k, v in obj.items() if k not in DROP and not k.endswith("_ms")}
    if isinstance(obj, list):
        return [normalise(v, t, key) for v in obj]
    if isinstance(obj, str):
        if key in ("next_cursor", "cursor"):
            return "<cursor>"
        if GENERATED.fullmatch(obj):
            return t.name_id(obj)
        return obj.replace(t.space, "<space>")
    return obj


def answer(t: Target, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """Status and normalised body of one REST call; an error keeps only its code."""
    r = t.http.request(method, path, **kw)
    body = r.json()
    if r.status_code >= 400:
        return {"status": r.status_code, "code": body["error"]["code"]}
    if isinstance(body, dict):
        for key in ("memory_id", "id"):  # register generated ids in the order they are answered
            if isinstance(body.get(key), str) and GENERATED.fullmatch(body[key]):
                t.name_id(body[key])
        for item in body.get("results", []) if isinstance(body.get("results"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("memory_id"), str):
                t.name_id(item["memory_id"])
    return {"status": r.status_code, "body": normalise(body, t)}


def recall_view(res: dict[str, Any], *, as_set: bool = False) -> dict[str, Any]:
    """A recall answer as the contract fixes it: ids in rank order with cosine similarity (or a set)."""
    if "body" not in res:
        return res
    items = res["body"]["results"]
    if as_set:
        return {"status": res["status"], "ids": sorted(i["memory"]["id"] for i in items)}
    return {"status": res["status"],
            "hits": [(i["memory"]["id"], i.get("similarity")) for i in items]}


def edges(t: Target, memory_id: str) -> dict[str, Any]:
    """The edges of a memory, sorted (the backends order edges of equal strength differently)."""
    res = answer(t, "GET", "/api/v1/associations", params={"memory_id": memory_id})
    if "body" in res:
        res["body"]["associations"].sort(key=lambda e: (e["source_id"], e["target_id"]))
    return res


def spread_view(res: dict[str, Any]) -> dict[str, Any]:
    """A spreading recall as both backends must agree on it: which memories, and for those that
    spreading alone found, the path that reached them (memory ids)."""
    if "body" not in res:
        return res
    items = res["body"]["results"]
    return {"status": res["status"], "ids": sorted(i["memory"]["id"] for i in items),
            "paths": {i["memory"]["id"]: [s["memory_id"] for s in i["activation_path"]]
                      for i in items if i["source"] == "spreading"}}


def list_walk(t: Target, limit: int, **params: Any) -> dict[str, Any]:
    """A whole cursor walk: the page sizes, each page's ``total``, and the memories in the order
    served (insertion order on both backends, compared as is)."""
    sizes: list[int] = []
    totals: list[int] = []
    served: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(sizes) <= 50:
        q: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            q["cursor"] = cursor
        r = t.http.get("/api/v1/memories", params=q)
        assert r.status_code == 200, r.text
        page = r.json()
        sizes.append(len(page["memories"]))
        totals.append(page["total"])
        served.extend(page["memories"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return {"page_sizes": sizes, "totals": totals, "memories": [normalise(m, t) for m in served]}


# ------------------------------------------------------------------------------ the script


Op = Callable[[Target], Any]


def vector(rng: random.Random) -> list[float]:
    return [round(rng.uniform(0.05, 1), 3) for _ in range(DIM)]


WORDS = ["heron", "kettle", "harbour", "lantern", "orchard", "ferry", "granite", "violin", "meadow", "copper"]


def script(seed: int) -> list[tuple[str, Op]]:
    """The operations, each a function of a target; drawn once from ``seed``, the same for all four."""
    rng = random.Random(seed)
    ops: list[tuple[str, Op]] = []
    kinds = ["bird", "home", "work"]

    def add(label: str, op: Op) -> None:
        ops.append((label, op))

    first_vector: list[float] = []
    for i in range(12):
        body = {"content": f"{rng.choice(WORDS)} {rng.choice(WORDS)} note {i}", "embedding": vector(rng),
                "tags": rng.sample(["red", "blue", "green"], rng.randint(0, 2)),
                "metadata": {"kind": rng.choice(kinds), "n": i, "score": rng.randint(0, 9)}}
        add(f"remember {i}", lambda t, b=body: answer(t, "POST", "/api/v1/memories/remember", json=b))
        first_vector = first_vector or body["embedding"]
    batch = {"memories": [{"content": f"batch {WORDS[i]}", "embedding": vector(rng),
                           "metadata": {"kind": "batch", "n": 100 + i}} for i in range(4)]
             + [{"content": "wrong length", "embedding": [1.0, 2.0]}]}
    add("batch", lambda t: answer(t, "POST", "/api/v1/memories/batch", json=batch))
    episode = {"content": "walked to the harbour at dawn", "when": "2026-01-02T10:00:00Z", "what": "walk",
               "who": ["ann", "bo"], "where_location": "harbour", "embedding": vector(rng),
               "metadata": {"kind": "episode"}}
    add("experience", lambda t: answer(t, "POST", "/api/v1/episodes/remember", json=episode))
    adjacent = {**episode, "id": "ep-later", "content": "the ferry left the harbour",
                "when": "2026-01-02T10:02:00Z",  # within episodic_adjacency_seconds: a temporal link
                "embedding": vector(rng)}
    add("experience adjacent", lambda t: answer(t, "POST", "/api/v1/episodes/remember", json=adjacent))
    add("temporal links", lambda t: edges(t, "ep-later"))
    put_new = {"content": "put copper lantern", "embedding": vector(rng),
               "metadata": {"kind": "put", "n": 200}, "tags": ["red"]}
    put_again = {"content": "replaced copper lantern", "embedding": vector(rng),
                 "metadata": {"kind": "put", "n": 201}}
    add("put new", lambda t: answer(t, "PUT", "/api/v1/memories/fixed-1", json=put_new))
    add("put replace", lambda t: answer(t, "PUT", "/api/v1/memories/fixed-1", json=put_again))
    add("get fixed", lambda t: answer(t, "GET", "/api/v1/memories/fixed-1", params=NO_VECTOR))

    def by_name(n: int) -> Callable[[Target], str]:
        return lambda t: next(raw for raw, name in t.ids.items() if name == f"m#{n}")

    add("patch", lambda t: answer(t, "PATCH", f"/api/v1/memories/{by_name(3)(t)}",
                                  json={"content": "patched kettle", "metadata": {"kind": "home", "n": 3}}))
    for n in (0, 3, 7, 13):
        add(f"get m#{n}", lambda t, n=n: answer(t, "GET", f"/api/v1/memories/{by_name(n)(t)}",
                                                params=NO_VECTOR))
    add("list walk by 5", lambda t: list_walk(t, 5))
    add("list episodes", lambda t: list_walk(t, 1, memory_type="episodic"))
    add("list filtered", lambda t: list_walk(t, 2, filter='{"kind": {"$in": ["home", "batch"]}}'))
    near = [round(x * 1.01, 3) for x in first_vector]
    add("remember auto-linked", lambda t: answer(t, "POST", "/api/v1/memories/remember", json={
        "id": "auto-1", "content": "auto linked note", "embedding": near, "auto_link": True}))
    add("auto links", lambda t: edges(t, "auto-1"))
    cues = [vector(rng) for _ in range(4)]
    for j, cue in enumerate(cues):
        add(f"recall {j}", lambda t, c=cue: recall_view(answer(
            t, "POST", "/api/v1/memories/recall",
            json={"embedding": c, "rank": "similarity", "max_results": 6})))
    add("recall filtered", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "embedding": cues[0], "rank": "similarity", "max_results": 20,
        "filter": {"kind": {"$in": ["bird", "work"]}, "score": {"$gte": 3}}})))
    add("recall tags", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "embedding": cues[1], "rank": "similarity", "tags": ["red"], "max_results": 20})))
    add("recall filter only", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "filter": {"kind": "batch"}, "max_results": 20}), as_set=True))
    add("recall text", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "query": "lantern", "max_results": 50}), as_set=True))
    add("recall text words", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "query": "where did I leave the old lantern near the quiet meadow", "max_results": 50}), as_set=True))
    add("associate", lambda t: answer(t, "POST", "/api/v1/memories/associate", json={
        "source_id": by_name(0)(t), "target_id": "fixed-1", "strength": 0.7}))
    add("associate one-way", lambda t: answer(t, "POST", "/api/v1/memories/associate", json={
        "source_id": by_name(1)(t), "target_id": by_name(2)(t), "strength": 0.4, "bidirectional": False}))
    # spreading: memories with no vector, reachable only over associations
    for n in (1, 2):
        add(f"remember orphan {n}", lambda t, n=n: answer(t, "POST", "/api/v1/memories/remember", json={
            "id": f"orphan-{n}", "content": f"no vector here {n}"}))
    add("associate orphan", lambda t: answer(t, "POST", "/api/v1/memories/associate", json={
        "source_id": "fixed-1", "target_id": "orphan-1", "strength": 0.9, "bidirectional": False}))
    add("associate orphans", lambda t: answer(t, "POST", "/api/v1/memories/associate", json={
        "source_id": "orphan-1", "target_id": "orphan-2", "strength": 0.8, "bidirectional": False}))
    spreading = {"embedding": cues[0], "mode": "spreading", "max_results": 50, "trace_activation": True}
    add("recall spreading", lambda t: spread_view(answer(
        t, "POST", "/api/v1/memories/recall", json=spreading)))
    add("recall spreading one hop", lambda t: spread_view(answer(t, "POST", "/api/v1/memories/recall",
                                                                 json={**spreading, "max_hops": 1})))
    add("recall hybrid", lambda t: spread_view(answer(t, "POST", "/api/v1/memories/recall", json={
        **spreading, "mode": "hybrid", "embedding": cues[1]})))
    add("recall spreading filtered", lambda t: spread_view(answer(
        t, "POST", "/api/v1/memories/recall", json={**spreading, "tags": ["red"]})))
    # context cues: time range, place, people, alone and with a vector or spreading
    january = {"time_start": "2026-01-01T00:00:00Z", "time_end": "2026-01-31T00:00:00Z"}
    later = {"time_start": "2026-06-01T00:00:00Z", "time_end": "2100-01-01T00:00:00Z"}
    for label, cue in [("time", january), ("place", {"location": "HARBOUR"}),
                       ("people", {"participants": ["Bo"]}), ("people none", {"participants": ["zed"]}),
                       ("later", later),
                       ("later vector", {**later, "embedding": cues[2]}),
                       ("place vector", {"location": "harbour", "embedding": cues[3]}),
                       ("later spreading", {**later, "embedding": cues[0], "mode": "spreading"})]:
        add(f"recall context {label}", lambda t, c=cue: recall_view(answer(
            t, "POST", "/api/v1/memories/recall", json={**c, "max_results": 50}), as_set=True))
    add("associations", lambda t: answer(t, "GET", "/api/v1/associations",
                                         params={"memory_id": ["fixed-1", by_name(1)(t)]}))
    add("forget suppress", lambda t: answer(t, "DELETE", f"/api/v1/memories/{by_name(4)(t)}",
                                            params={"mode": "suppress"}))
    add("forget delete", lambda t: answer(t, "DELETE", f"/api/v1/memories/{by_name(5)(t)}",
                                          params={"mode": "delete"}))
    add("get suppressed", lambda t: answer(t, "GET", f"/api/v1/memories/{by_name(4)(t)}",
                                           params=NO_VECTOR))
    add("get deleted", lambda t: answer(t, "GET", f"/api/v1/memories/{by_name(5)(t)}"))
    add("recall after forget", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "embedding": cues[2], "rank": "similarity", "max_results": 30})))
    add("list walk by 4", lambda t: list_walk(t, 4))
    add("list with suppressed", lambda t: list_walk(t, 7, include_suppressed="true"))
    add("delete by filter", lambda t: answer(t, "POST", "/api/v1/memories/delete", json={
        "filter": {"kind": "bird", "score": {"$lt": 5}}, "mode": "delete"}))
    add("delete by filter suppress", lambda t: answer(t, "POST", "/api/v1/memories/delete", json={
        "filter": {"kind": "batch"}, "mode": "suppress"}))
    add("list after deletes", lambda t: list_walk(t, 3))
    add("recall after deletes", lambda t: recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
        "embedding": cues[3], "rank": "similarity", "max_results": 30})))
    # bad operations: the same status and code on both backends, and nothing changes
    add("get missing", lambda t: answer(t, "GET", "/api/v1/memories/no-such-memory"))
    add("forget missing", lambda t: answer(t, "DELETE", "/api/v1/memories/no-such-memory"))
    add("patch missing", lambda t: answer(t, "PATCH", "/api/v1/memories/no-such-memory",
                                          json={"content": "x"}))
    add("remember wrong dimension", lambda t: answer(t, "POST", "/api/v1/memories/remember",
                                                     json={"content": "x", "embedding": [1.0, 0.0]}))
    add("remember no content", lambda t: answer(t, "POST", "/api/v1/memories/remember", json={}))
    add("recall wrong dimension", lambda t: answer(t, "POST", "/api/v1/memories/recall",
                                                   json={"embedding": [1.0]}))
    add("recall bad filter", lambda t: answer(t, "POST", "/api/v1/memories/recall",
                                              json={"embedding": cues[0], "filter": {"n": {"$nope": 1}}}))
    add("associate missing", lambda t: answer(t, "POST", "/api/v1/memories/associate",
                                              json={"source_id": "fixed-1", "target_id": "no-such-memory"}))
    add("unknown space", lambda t: answer(t, "GET", "/api/v1/memories",
                                          headers={"X-Memory-Space": "no-such-space"}))
    add("final list", lambda t: list_walk(t, 50, include_suppressed="true"))
    add("grpc list and get", grpc_reads)
    return ops


def grpc_reads(t: Target) -> Any:
    from engram.testing.clients import GrpcSpaceClient

    with GrpcSpaceClient(t.grpc_target, t.space) as g:
        listed = [t.ids.get(m["id"], m["id"]) for m in g.list_all()]
        got = g.get("fixed-1")["memory"]
        missing = GrpcSpaceClient.status_of(lambda: g.get("no-such-memory"))
    return {"ids": listed, "fixed-1": got["content"], "missing": missing}


# ------------------------------------------------------------------------------ comparing


def first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= TOL
        return "" if ok else f"{path}: {a!r} != {b!r}"
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in one ({a.get(k, b.get(k))!r})"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return ""
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)} items: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return ""
    return "" if a == b else f"{path}: {a!r} != {b!r}"


def test_postgres_answers_the_data_plane_as_sqlite_does(servers: dict[str, EngramProcess]) -> None:
    t0 = time.monotonic()
    targets = _targets(servers)
    transcripts: dict[str, list[Any]] = {t.name: [] for t in targets}
    ops = script(SEED)
    try:
        for label, op in ops:
            for t in targets:  # interleaved: op i into every target before op i + 1
                transcripts[t.name].append((label, op(t)))
    finally:
        for t in targets:
            t.http.close()
    ref = transcripts["sqlite-A"]
    for name in ("sqlite-B", "postgres-A", "postgres-B"):
        diff = first_difference(ref, transcripts[name])
        at = int(diff[1:diff.index("]")]) if diff else 0
        assert not diff, (f"sqlite-A and {name} answered differently at {diff}\n"
                          f"sqlite-A: {ref[at]}\n{name}: {transcripts[name][at]}")
    # the script exercises what it claims to: hits, several pages, counts, edges, errors
    seen = dict(ref)
    everything = len(seen["recall after forget"]["hits"])
    assert 0 < len(seen["recall filtered"]["hits"]) < everything
    assert 0 < len(seen["recall tags"]["hits"]) < everything
    assert seen["recall text"]["ids"] and seen["recall filter only"]["ids"]
    # any word of a question finds a memory, not only one holding every word
    assert len(seen["recall text words"]["ids"]) > len(seen["recall text"]["ids"])
    assert len(seen["list walk by 5"]["page_sizes"]) > 2
    assert seen["list episodes"]["totals"][0] == 2 and seen["list filtered"]["totals"][0] > 2
    assert seen["list walk by 5"]["totals"][0] > seen["list filtered"]["totals"][0]
    assert 0 < len(seen["remember auto-linked"]["body"]["auto_links"]) <= 5
    assert {e["kind"] for e in seen["auto links"]["body"]["associations"]} == {"auto"}
    assert len(seen["auto links"]["body"]["associations"]) == 2 * len(seen["remember auto-linked"]["body"][
        "auto_links"])
    assert {e["kind"] for e in seen["temporal links"]["body"]["associations"]} == {"temporal"}
    assert seen["delete by filter"]["body"]["count"] > 0
    assert seen["delete by filter suppress"]["body"]["count"] > 0
    assert len(seen["associations"]["body"]["associations"]) >= 2
    assert seen["get missing"] == {"status": 404, "code": "MEMORY_NOT_FOUND"}
    assert seen["recall bad filter"]["status"] == 400
    assert seen["recall spreading"]["paths"]["orphan-2"][-3:] == ["fixed-1", "orphan-1", "orphan-2"]
    assert "orphan-2" not in seen["recall spreading one hop"]["ids"]
    assert "orphan-1" in seen["recall spreading one hop"]["ids"]
    assert seen["recall context time"]["ids"] and seen["recall context place"]["ids"]
    assert seen["recall context people none"]["ids"] == []
    assert 0 < len(seen["recall context later vector"]["ids"]) <= len(seen["recall context later"]["ids"])
    print(f"differential: {len(ops)} ops x {len(targets)} targets in {time.monotonic() - t0:.1f} s")



def _reembedded(t: Target, target: dict[str, str]) -> dict[str, Any]:
    """Start a re-embedding of ``t``'s space and wait for it; the final status, normalised."""
    started = answer(t, "POST", f"/api/v1/spaces/{t.space}/reembed", json=target)
    assert started["status"] == 202, started
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = answer(t, "GET", f"/api/v1/spaces/{t.space}/reembed")
        if status["body"]["state"] == "idle":
            return {"started": {k: started["body"][k] for k in ("target", "total")}, "final": status}
        time.sleep(0.1)
    raise AssertionError(f"{t.name}: the re-embedding did not finish")


def _vectors(t: Target, ids: list[str]) -> list[list[float]]:
    out = []
    for mid in ids:
        r = t.http.get(f"/api/v1/memories/{mid}")
        assert r.status_code == 200, r.text
        out.append([round(x, 2) for x in r.json()["embedding"]])
    return out


def _semantic_view(t: Target, ids: list[str]) -> dict[str, Any]:
    """The space's links once its text is embedded (SQLite makes ``semantic`` ones when the
    background embedding lands, PostgreSQL in the writing transaction) and the count the
    space's ``stats`` give."""
    links = answer(t, "GET", "/api/v1/associations", params={"memory_id": ids, "limit": 1000})
    got = sorted((e["source_id"], e["target_id"], e["kind"], e["strength"])
                 for e in links["body"]["associations"])
    stats = t.http.get("/api/v1/system/introspect")
    assert stats.status_code == 200, stats.text
    return {"links": got, "associations": stats.json()["associations"]}


def test_postgres_embeds_and_reembeds_a_space_as_sqlite_does(servers: dict[str, EngramProcess]) -> None:
    """A space created with its own embedder (the servers' default is ``none``), text embedded by
    it, re-embedded with another model: the descriptors, the re-embedding's status, every vector
    (to halfvec's precision), the ``semantic`` links embedding made (which pairs, strength to
    halfvec's precision, the space's association count) and recall by query answer the same on
    both backends; so do the refusals (a size that contradicts the embedder, re-embedding with
    no model, client vectors without text)."""
    texts = {f"t{i}": f"the {w} sings near the river at dawn {i}"
             for i, w in enumerate(["wren", "robin", "heron", "owl", "lark"])}
    texts["t5"] = "copper kettle boils on a cold stove"  # shares no word: linked by no meaning
    views: dict[str, list[Any]] = {}
    for backend, srv in servers.items():
        sid = f"de-{uuid.uuid4().hex[:8]}"
        t = Target(backend, httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": sid}),
                   srv.grpc_target, sid)
        raw = f"dr-{uuid.uuid4().hex[:8]}"
        view: list[Any] = []
        try:
            view.append(answer(t, "POST", "/api/v1/spaces", json={
                "id": sid, "embedder": {"provider": "hash", "model": "hash-16"}}))
            view.append(answer(t, "POST", "/api/v1/spaces", json={
                "id": f"dx-{uuid.uuid4().hex[:8]}", "dimension": 8,
                "embedder": {"provider": "hash", "model": "hash-16"}}))
            for mid, text in texts.items():
                view.append(answer(t, "POST", "/api/v1/memories/remember", json={"id": mid, "content": text}))
            view.append(recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
                "query": "heron at the river", "rank": "similarity", "wait_for_embeddings": True})))
            view.append(_vectors(t, sorted(texts)))
            view.append(_semantic_view(t, sorted(texts)))
            # new text the server embeds: linked by its meaning too (SQLite: when it lands)
            view.append(answer(t, "PATCH", "/api/v1/memories/t5", json={
                "content": "the finch sings near the river at dusk 5"}))
            assert answer(t, "POST", "/api/v1/memories/recall", json={
                "query": "finch", "wait_for_embeddings": True})["status"] == 200
            view.append(_semantic_view(t, sorted(texts)))
            view.append(answer(t, "POST", f"/api/v1/spaces/{sid}/reembed", json={"provider": "none"}))
            view.append(_reembedded(t, {"provider": "hash", "model": "hash-32"}))
            desc = answer(t, "GET", f"/api/v1/spaces/{sid}")["body"]
            view.append({k: desc[k] for k in ("embedder", "dimension", "embedding_backlog", "memory_count")})
            view.append(_vectors(t, sorted(texts)))
            view.append(recall_view(answer(t, "POST", "/api/v1/memories/recall", json={
                "query": "heron at the river", "rank": "similarity"})))
            # a space of client vectors without text: no model can re-embed it
            assert httpx.post(srv.http_url + "/api/v1/spaces", json={"id": raw, "dimension": DIM},
                              timeout=30).status_code == 201
            t.http.headers["X-Memory-Space"] = raw
            view.append(answer(t, "POST", "/api/v1/memories/remember",
                               json={"id": "v", "content": "", "embedding": [0.5] * DIM}))
            view.append(answer(t, "POST", f"/api/v1/spaces/{raw}/reembed", json={"provider": "hash"}))
        finally:
            t.http.close()
        views[backend] = [normalise(v, Target(backend, t.http, "", raw)) for v in view]
    diff = first_difference(views["sqlite"], views["postgres"])
    assert not diff, diff
    seen = views["sqlite"]
    assert seen[1] == {"status": 400, "code": "EMBEDDING_DIMENSION_MISMATCH"}
    assert seen[-1] == {"status": 400, "code": "INVALID_INPUT"}
    n = 2 + len(texts)  # the two creations, one remember per text: then the recall
    assert seen[n + 5] == {"status": 400, "code": "INVALID_INPUT"}
    assert seen[n + 6]["final"]["body"]["done"] == seen[n + 6]["final"]["body"]["total"] == len(texts)
    assert seen[n + 7]["embedder"] == {"provider": "hash", "model": "hash-32", "dimension": 32}
    assert len(seen[n + 8][0]) == 32 and len(seen[n + 1][0]) == 16 and seen[n + 8] != seen[n + 1]
    assert seen[n + 9]["hits"][0][0] == "t2"  # the heron
    # embedding linked the texts by meaning: some pairs (both ways), not the kettle
    semantic = seen[n + 2]
    kinds = {kind for _, _, kind, _ in semantic["links"]}
    assert kinds == {"semantic"} and semantic["links"]
    assert not [link for link in semantic["links"] if "t5" in link[:2]]
    assert semantic["associations"] == len(semantic["links"])
    patched = seen[n + 4]["links"]
    assert [link for link in patched if "t5" in link[:2]] and set(semantic["links"]) < set(patched)
