"""recognize, reminisce, complete and introspect on PostgreSQL answer as on SQLite (issue 17).

A real SQLite server and a real PostgreSQL server (``embedder = "none"``: every vector is the
client's) get the same space id and the same memories and episodes; each cognitive question is
then asked of both, and the answers must agree: the same memories in the same order, the same
field sources, numbers within 1e-3 (PostgreSQL keeps vectors as float16). What differs by design
is dropped: wall-clock fields, ``storage_bytes`` and ``index`` (a file against table rows), and
the confidence *reasoning* text only where it quotes a score. Bad input gets the same error code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database

DIM = 8
TOL = 1e-3
DROP = {"created_at", "last_access", "updated_at", "storage_bytes", "index", "reasoning", "observed_at",
        "stored_at", "last_consolidation", "expires_at", "timing", "duration_ms"}


def unit(axis: int, tilt: float = 0.0, other: int = 0) -> list[float]:
    v = [0.0] * DIM
    v[axis] = 1.0
    v[other] += tilt
    return v


EPISODES = [
    {"id": "e-heron", "content": "watched a heron fishing by the river", "what": "heron fishing",
     "when": "2026-03-01T08:00:00Z", "where_location": "Riverside Park", "who": ["Ana", "Ben"],
     "why": "morning walk", "embedding": unit(0)},
    {"id": "e-heron2", "content": "the heron caught a fish at the river bend", "what": "heron caught fish",
     "when": "2026-03-02T08:30:00Z", "where_location": "Riverside Park", "who": ["Ana"],
     "embedding": unit(0, 0.2, 1)},
    {"id": "a-kettle", "content": "the kettle whistled while making breakfast", "what": "breakfast",
     "when": "2026-03-03T07:00:00Z", "where_location": "Kitchen", "who": ["Cleo"], "how": "kettle",
     "embedding": unit(3)},
    {"id": "e-train", "content": "missed the early train at the station", "what": "missed train",
     "when": "2026-03-04T06:45:00Z", "where_location": "Central Station", "who": ["Ben"],
     "why": "overslept", "embedding": unit(5)},
    {"id": "e-train2", "content": "the station was crowded and the train late", "what": "late train",
     "when": "2026-03-05T06:50:00Z", "where_location": "Central Station", "who": ["Ben", "Dee"],
     "embedding": unit(5, 0.3, 6)},
    {"id": "e-hidden", "content": "a heron memory that is suppressed", "what": "heron",
     "when": "2026-03-06T09:00:00Z", "embedding": unit(0, 0.1, 2)},
]
MEMORIES = [
    {"id": "m-fact", "content": "herons are wading birds", "embedding": unit(0, 0.5, 7)},
    {"id": "m-tea", "content": "green tea needs water below boiling", "embedding": unit(3, 0.4, 4)},
]


@pytest.fixture(scope="module")
def pair(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx.Client]]:
    lite = EngramProcess.start(tmp_path_factory.mktemp("lite"), settings={"embedder": "none"})
    try:
        post = EngramProcess.start(tmp_path_factory.mktemp("pg"), settings={
            "backend": "postgres", "postgres_dsn": fresh_database(pg, "cog"), "embedder": "none"})
    except BaseException:
        lite.stop()
        raise
    sid = f"cog-{uuid.uuid4().hex[:8]}"
    clients = {}
    try:
        for name, srv in (("sqlite", lite), ("postgres", post)):
            r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid, "dimension": DIM}, timeout=30)
            assert r.status_code == 201, r.text
            c = httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": sid}, timeout=30)
            for ep in EPISODES:
                assert c.post("/api/v1/episodes/remember", json=ep).status_code == 201
            for mem in MEMORIES:
                assert c.post("/api/v1/memories/remember", json=mem).status_code == 201
            assert c.delete("/api/v1/memories/e-hidden", params={"mode": "suppress"}).status_code == 200
            assert c.post("/api/v1/memories/associate", json={"source_id": "e-heron", "target_id": "m-fact",
                                                              "strength": 0.6}).status_code in (200, 201)
            clients[name] = c
        yield clients
    finally:
        for c in clients.values():
            c.close()
        lite.stop()
        post.stop()


def clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if k not in DROP}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal, numbers within TOL."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), (path, sorted(set(a) ^ set(b)))
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        assert abs(a - b) <= TOL, (path, a, b)
    else:
        assert a == b, (path, a, b)


def ask(pair: dict[str, httpx.Client], method: str, path: str, **kw: Any) -> tuple[Any, Any]:
    out = []
    for c in pair.values():
        r = c.request(method, path, **kw)
        body = r.json()
        out.append({"status": r.status_code, "code": body["error"]["code"]} if r.status_code >= 400
                   else {"status": r.status_code, "body": clean(body)})
    same(out[0], out[1])
    return out[0], out[1]


@pytest.mark.parametrize("body", [
    {"content": "watched a heron fishing by the river"},  # exact content: familiarity 1
    {"content": "heron river walk"},  # word overlap only
    {"content": "herons are wading birds", "max_matches": 2},
    {"embedding": unit(5, 0.1, 6)},
    {"embedding": unit(0), "threshold": 0.99, "max_matches": 10},
    {"content": "nothing like anything stored"},
])
def test_recognize_answers_as_sqlite(pair: dict[str, httpx.Client], body: dict[str, Any]) -> None:
    lite, _ = ask(pair, "POST", "/api/v1/memories/recognize", json=body)
    assert lite["status"] == 200
    matched = [m["memory_id"] for m in lite["body"]["matches"]]
    assert "e-hidden" not in matched  # suppressed: never a match
    if "content" in body and body["content"].startswith("watched"):
        assert lite["body"]["recognized"] is True and matched[0] == "e-heron"


@pytest.mark.parametrize("params", [
    {},
    {"time_start": "2026-03-02T00:00:00Z", "time_end": "2026-03-04T23:00:00Z"},
    {"time_start": "2026-03-04T00:00:00Z", "limit": 1},
    {"topic": "heron"},
    {"topic": "train station", "time_end": "2026-03-04T23:00:00Z"},
])
def test_reminisce_answers_as_sqlite(pair: dict[str, httpx.Client], params: dict[str, Any]) -> None:
    lite, _ = ask(pair, "GET", "/api/v1/episodes/reminisce", params=params)
    told = [e["id"] for e in lite["body"]["episodes"]]
    assert told and "e-hidden" not in told
    whens = [e["when"] for e in lite["body"]["episodes"]]
    assert whens == sorted(whens)


@pytest.mark.parametrize("body", [
    {"embedding": unit(5), "limit": 5},
    {"embedding": unit(5), "topic": "heron"},
    {"embedding": unit(0), "time_start": "2026-03-02T00:00:00Z"},
])
def test_reminisce_by_embedding_answers_as_sqlite(pair: dict[str, httpx.Client],
                                                  body: dict[str, Any]) -> None:
    lite, _ = ask(pair, "POST", "/api/v1/episodes/reminisce", json=body)
    told = {e["id"] for e in lite["body"]["episodes"]}
    assert told and "e-hidden" not in told
    if "topic" not in body and "time_start" not in body:
        assert told == {"e-train", "e-train2"}


@pytest.mark.parametrize("body", [
    {"what": "heron fishing"},
    {"where_location": "central station"},
    {"who": ["Ben"], "when": "2026-03-04T07:00:00Z"},
    {"what": "breakfast", "who": ["Cleo"]},
    {"embedding": unit(0)[:3]},  # a partial embedding: the leading components
    {"what": "heron", "max_hypotheses": 4, "min_confidence": 0.05},
])
def test_complete_answers_as_sqlite(pair: dict[str, httpx.Client], body: dict[str, Any]) -> None:
    lite, _ = ask(pair, "POST", "/api/v1/complete", json=body)
    assert lite["status"] == 200, lite
    best = lite["body"]["best"]
    assert {f["source"] for f in best["fields"]} <= {"given", "recalled", "reconstructed"}
    assert "e-hidden" not in best["source_memory_ids"]


def test_introspect_answers_as_sqlite(pair: dict[str, httpx.Client]) -> None:
    lite, _ = ask(pair, "GET", "/api/v1/system/introspect")
    stats = lite["body"]
    assert (stats["memories"], stats["suppressed"], stats["associations"]) == (8, 1, 2)  # an edge each way
    assert stats["by_type"] == {"episodic": 5, "semantic": 2}
    assert stats["by_consolidation_state"] == {"recent": 5}
    assert stats["last_lsn"] == 10 and stats["average_activation"] > 0


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/memories/recognize", {"embedding": [1.0, 0.0]}),
    ("POST", "/api/v1/memories/recognize", {}),
    ("POST", "/api/v1/complete", {}),
    ("POST", "/api/v1/complete", {"embedding": [1.0] * (DIM + 1)}),
    ("POST", "/api/v1/complete", {"what": "zebra xylophone quasar"}),  # nothing matches: CUE_TOO_WEAK
    ("GET", "/api/v1/episodes/reminisce?time_start=2026-03-05T00:00:00Z&time_end=2026-03-01T00:00:00Z", None),
    ("GET", "/api/v1/episodes/reminisce?limit=0", None),
])
def test_bad_input_gets_the_same_error(pair: dict[str, httpx.Client], method: str, path: str,
                                       body: dict[str, Any] | None) -> None:
    lite, _ = ask(pair, method, path, json=body)
    assert 400 <= lite["status"] < 500, lite
