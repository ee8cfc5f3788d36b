"""Recall's memory semantics on PostgreSQL (SPEC §5, §13; issue 17): context cues, spreading and
hybrid modes with activation paths, the cognitive rank, reinforcement seen from a second server,
the ``recalled`` event, and bad cues answered with the error envelope.

Two real ``engram start --backend postgres`` processes share one fresh database; vectors are the
client's (4-d), so every answer follows from the memories stored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from engram.testing.clients import GrpcSpaceClient, RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers
from .test_server import new_space

E0 = [1.0, 0.0, 0.0, 0.0]
E1 = [0.0, 1.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def servers(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    dsn = fresh_database(pg, "cog")
    # a generous spreading budget: one database round trip per hop on a loaded 2-core machine
    with pg_servers(dsn, tmp_path_factory, spreading_time_budget_ms=2000.0) as pair:
        yield pair


def ids(result: dict[str, Any]) -> list[str]:
    return [i["memory"]["id"] for i in result["results"]]


def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something true (the answer), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_spreading_finds_a_memory_reachable_only_through_an_association(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as c:
        c.remember(id="seed", content="the heron stands in the reeds", embedding=E0)
        c.remember(id="other", content="a kettle on the stove", embedding=E1)
        # no vector, no shared word: only the association leads here
        c.remember(id="linked", content="grandmother's copper lantern")
        c.remember(id="two-hops", content="a violin case in the attic")
        c.remember(id="unlinked", content="an orchard in late autumn")
        c.associate("seed", "linked", 0.9)
        c.associate("linked", "two-hops", 0.8)
        plain = c.recall(embedding=E0, max_results=10)
        assert "linked" not in ids(plain) and "two-hops" not in ids(plain)
        assert ids(plain)[0] == "seed"
        cue = {"embedding": E0, "max_results": 10, "mode": "spreading", "trace_activation": True}
        spread = c.recall(**cue)
        got = {i["memory"]["id"]: i for i in spread["results"]}
        assert {"seed", "linked", "two-hops"} <= set(got) and "unlinked" not in got
        linked = got["linked"]
        assert linked["source"] == "spreading"
        # seed relevance 1.0, x strength 0.9 x spreading_decay 0.5
        assert [s["memory_id"] for s in linked["activation_path"]] == ["seed", "linked"]
        assert linked["activation_path"][1]["activation"] == pytest.approx(0.45, abs=1e-3)
        assert linked["signals"]["spread"] == pytest.approx(0.45, abs=1e-3)
        far = got["two-hops"]["activation_path"]
        assert [s["memory_id"] for s in far] == ["seed", "linked", "two-hops"]
        assert far[2]["activation"] == pytest.approx(0.45 * 0.8 * 0.5, abs=1e-3)
        assert spread["metadata"]["activation_paths"]["linked"][0]["memory_id"] == "seed"
        assert spread["metadata"]["spreading"]["hops"] >= 2
        assert ids(spread)[0] == "seed"
        with GrpcSpaceClient(b.grpc_target, sid) as g:  # gRPC, on the other server
            by_grpc = g.recall(embedding=E0, max_results=10, mode="spreading", trace_activation=True)
        got_grpc = {i["memory"]["id"]: i for i in by_grpc["result"]["results"]}
        assert [s["memory_id"] for s in got_grpc["linked"]["activation_path"]] == ["seed", "linked"]
        # max_hops bounds the spread; hybrid spreads too
        one_hop = ids(c.recall(**{**cue, "max_hops": 1}))
        assert "linked" in one_hop and "two-hops" not in one_hop
        assert "linked" not in ids(c.recall(**{**cue, "max_hops": 0}))
        assert "linked" in ids(c.recall(**{**cue, "mode": "hybrid"}))
        # a suppressed memory is neither reached nor passed through
        c.forget("linked", mode="suppress")
        after = ids(c.recall(**cue))
        assert "linked" not in after and "two-hops" not in after


def test_context_cues_filter_by_time_place_and_people(servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as c:
        c.experience(id="dawn", content="walked to the harbour", when="2026-01-02T06:00:00Z",
                     where_location="Lisbon Harbour", who=["Ann", "Bo"], embedding=E0)
        c.experience(id="noon", content="lunch by the water", when="2026-01-02T12:00:00Z",
                     where_location="harbour cafe", who=["Cy"], embedding=E0)
        c.experience(id="march", content="a walk in the hills", when="2026-03-01T10:00:00Z",
                     where_location="Sintra", who=["ann"], embedding=E1)
        c.remember(id="plain", content="a note with no episode", embedding=E0)
    with RestSpaceClient(b.http_url, sid) as c:  # read through the other server
        def by(**cue: Any) -> set[str]:
            return set(ids(c.recall(max_results=50, **cue)))

        january = {"time_start": "2026-01-01T00:00:00Z", "time_end": "2026-01-31T00:00:00Z"}
        assert by(**january) == {"dawn", "noon"}
        assert by(location="HARBOUR") == {"dawn", "noon"}
        assert by(participants=["ANN"]) == {"dawn", "march"}
        assert by(participants=["ann"], location="harbour") == {"dawn"}
        assert by(embedding=E0, **january) == {"dawn", "noon"}
        assert by(embedding=E0, participants=["cy"]) == {"noon"}
        assert by(embedding=E1, location="sintra", mode="spreading") == {"march"}
        assert by(location="nowhere") == set()
        res = c.recall(embedding=E0, location="harbour", max_results=5)
        assert all(i["signals"]["context"] == 1.0 for i in res["results"])


def test_cognitive_rank_puts_a_surer_or_recently_strengthened_memory_first(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as c:
        # the same vector: similarity cannot tell them apart (ties go by id: "a-unsure" first)
        c.remember(id="a-unsure", content="first", embedding=E0, confidence=0.4)
        c.remember(id="b-sure", content="second", embedding=E0, confidence=0.95)
        assert ids(c.recall(embedding=E0, rank="similarity", max_results=2)) == ["a-unsure", "b-sure"]
        cognitive = c.recall(embedding=E0, max_results=2)
        assert ids(cognitive) == ["b-sure", "a-unsure"]
        top = cognitive["results"][0]
        assert top["score"] > cognitive["results"][1]["score"]
        assert set(top["signals"]) >= {"relevance", "activation", "recency", "confidence", "vector"}
        assert top in cognitive["memories"]["vivid"]  # 0.7 relevance + confidence, activation, recency > 0.7
        # equal activation (an episode starts at 0.5 confidence + 0.5 importance): confidence decides,
        # against the sure one's slightly older age (stored first, it has decayed a few ms longer)
        e2 = [0.0, 0.0, 1.0, 0.0]
        c.experience(id="e-sure", content="sixth", when="2026-01-01T00:00:00Z", embedding=e2,
                     confidence=0.9, importance=0.1)
        c.experience(id="d-unsure", content="fifth", when="2026-01-01T00:00:00Z", embedding=e2,
                     confidence=0.1, importance=0.9)
        assert ids(c.recall(embedding=e2, rank="similarity", max_results=2)) == ["d-unsure", "e-sure"]
        assert ids(c.recall(embedding=e2, max_results=2)) == ["e-sure", "d-unsure"]
        # two equal memories; one is recalled (alone, by its tag) a few times, so it is strengthened
        c.remember(id="c-plain", content="third", embedding=E1, confidence=0.6)
        c.remember(id="d-used", content="fourth", embedding=E1, confidence=0.6, tags=["used"])
        assert ids(c.recall(embedding=E1, rank="similarity", max_results=2)) == ["c-plain", "d-used"]
        for _ in range(4):
            assert ids(c.recall(embedding=E1, tags=["used"], max_results=1)) == ["d-used"]
    with RestSpaceClient(b.http_url, sid) as other:
        until(lambda: other.get("d-used")["access_count"] >= 4, "the reinforcement of d-used")
        assert ids(other.recall(embedding=E1, max_results=2)) == ["d-used", "c-plain"]


def test_recall_strengthens_what_it_returns_and_a_second_server_sees_it(
        servers: tuple[EngramProcess, ...]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        on_a.remember(id="m", content="the heron", embedding=E0, confidence=0.5)
        on_a.remember(id="never", content="the kettle", embedding=E1, confidence=0.5)
        before = on_b.get("m")
        assert before["access_count"] == 0
        for _ in range(3):
            assert ids(on_a.recall(embedding=E0, max_results=1)) == ["m"]
        def counted() -> dict[str, Any] | None:
            m = on_b.get("m")
            return m if m["access_count"] == 3 else None

        after = until(counted, "3 accesses on B")
        assert after["last_access"] > before["last_access"]
        assert after["activation"] > before["activation"]
        assert on_b.get("never")["access_count"] == 0  # only what recall returned

        # both servers at once, many recalls: every one counts (increments in SQL)
        def recall_on(client: RestSpaceClient) -> None:
            assert ids(client.recall(embedding=E0, max_results=1)) == ["m"]

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(recall_on, [on_a, on_b] * 20))
        until(lambda: on_a.get("m")["access_count"] == 43, "43 accesses", timeout=20)
        assert on_b.get("m")["access_count"] == 43


def test_recall_publishes_a_recalled_event(servers: tuple[EngramProcess, ...]) -> None:
    a, _ = servers
    sid = new_space(a)
    seen: list[dict[str, Any]] = []
    opened = threading.Event()
    with RestSpaceClient(a.http_url, sid) as c:
        c.remember(id="m", content="the heron", embedding=E0)

        def collect() -> None:
            with RestSpaceClient(a.http_url, sid) as s:
                for frame in s.sse(on_open=opened.set):
                    if frame.get("event") == "recalled":
                        seen.append(frame)
                        return

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        assert opened.wait(30)
        c.recall(embedding=E0, max_results=3)
        reader.join(30)
    assert seen, "no recalled event"
    event = seen[0]["data"]
    assert event["memory_space_id"] == sid and event["lsn"] == 1
    assert event["data"]["top"] == ["m"] and event["data"]["results"] == 1


@pytest.mark.parametrize("cue", [
    {"query": "x", "time_start": "2026-02-01T00:00:00Z", "time_end": "2026-01-01T00:00:00Z"},
    {"query": "x", "time_start": "not a time"},
    {"embedding": E0, "mode": "spreading", "max_hops": 11},
    {"embedding": E0, "mode": "sideways"},
    {"embedding": E0, "rank": "loudest"},
    {"participants": "ann"},
    {"location": 7},
    {"embedding": [1.0, 0.0]},
    {"embedding": E0, "mode": "spreading", "filter": {"n": {"$nope": 1}}},
    {"max_results": 5},
])
def test_bad_cues_get_the_error_envelope_and_lose_nothing(servers: tuple[EngramProcess, ...],
                                                          cue: dict[str, Any]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(b.http_url, sid) as c:
        c.remember(id="kept", content="still here", embedding=E0)
    r = httpx.post(a.http_url + "/api/v1/memories/recall", headers={"X-Memory-Space": sid}, json=cue,
                   timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] and err["message"] and "suggestion" in err and "example" in err
    with RestSpaceClient(b.http_url, sid) as c:
        assert ids(c.recall(embedding=E0, mode="spreading")) == ["kept"]


def test_spaces_do_not_spread_into_each_other(servers: tuple[EngramProcess, ...]) -> None:
    a, _ = servers
    mine, theirs = new_space(a), new_space(a)
    shared_id = f"x-{uuid.uuid4().hex[:6]}"
    with RestSpaceClient(a.http_url, theirs) as t:  # the same ids, and an edge, in another space
        t.remember(id="seed", content="theirs", embedding=E0)
        t.remember(id=shared_id, content="their secret")
        t.associate("seed", shared_id, 1.0)
    with RestSpaceClient(a.http_url, mine) as m:
        m.remember(id="seed", content="mine", embedding=E0)
        m.remember(id=shared_id, content="my unlinked memory")
        got = m.recall(embedding=E0, mode="spreading", max_results=10, trace_activation=True)
    assert ids(got) == ["seed"]


def test_context_cues_select_in_the_database_before_the_candidate_limit(
        servers: tuple[EngramProcess, ...]) -> None:
    """An old matching episode behind 1,100 newer memories: the context query must filter before
    it takes its newest ``max(wide, 1000)`` rows, or the match is never a candidate."""
    a, _ = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as c:
        c.experience(id="old", content="the first walk", when="2020-05-01T10:00:00Z",
                     where_location="Porto", who=["Dina"])
        for start in (0, 550):
            r = c.request("POST", "/api/v1/memories/batch", json={"memories": [
                {"content": f"newer note {i}", "tags": ["t"]} for i in range(start, start + 550)]})
            assert r.status_code in (200, 201), r.text
        may_2020 = {"time_start": "2020-05-01T00:00:00Z", "time_end": "2020-05-02T00:00:00Z"}
        assert ids(c.recall(max_results=5, **may_2020)) == ["old"]
        assert ids(c.recall(max_results=5, location="porto")) == ["old"]
        assert ids(c.recall(max_results=5, participants=["dina"])) == ["old"]


def test_two_servers_reinforcing_the_same_rows_count_every_recall(pg: PgCluster) -> None:
    """Two reinforcers on their own pools (two servers), writing at once over the same rows in
    different orders: every recall counts (increments in SQL), and no batch is lost to a deadlock."""
    import random

    from engram.core.postgres import MemoryRow, PostgresDatabase, PostgresStore
    from engram.core.postgres.reinforce import PgReinforcer

    dbs = [PostgresDatabase(pg.app, min_size=1, max_size=4) for _ in range(2)]
    try:
        stores = [PostgresStore(d, vector_index=False) for d in dbs]
        sid = f"r-{uuid.uuid4().hex[:10]}"
        assert stores[0].create_space(sid, dimension=4)
        names = [f"m{i:02d}" for i in range(20)]
        stores[0].remember_many(sid, [(MemoryRow(id=n, content=n, activation=0.1), None) for n in names])
        reinforcers = [PgReinforcer(s, linger=0.0) for s in stores]  # every recall its own UPDATE

        def recalls(r: PgReinforcer, seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(25):
                r.add(sid, rng.sample(names, len(names)), time.time())

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: recalls(reinforcers[i % 2], i), range(8)))
        for r in reinforcers:
            r.close()
        rows = stores[1].rows_by_id(sid, names)
        assert {n: rows[n].access_count for n in names} == {n: 200 for n in names}
        assert all(rows[n].activation == 1.0 for n in names)  # 0.1 + 200 x 0.05, capped
    finally:
        for d in dbs:
            d.close()


def _stream_until_stored(client: RestSpaceClient, marker: str, out: list[tuple[str, Any]],
                         opened: threading.Event) -> None:
    """Collect (event, data) of stored/recalled/activation until the ``stored`` of ``marker``."""
    for frame in client.sse("/api/v1/stream/activities", on_open=opened.set):
        if frame.get("event") in ("stored", "recalled", "activation"):
            out.append((frame["event"], frame["data"]))
            if frame["event"] == "stored" and frame["data"]["data"]["memory_id"] == marker:
                return


def test_a_recall_through_one_server_reaches_the_streams_of_both(servers: tuple[EngramProcess, ...]) -> None:
    """``recalled`` and ``activation`` are live-only (as on SQLite) yet reach every server's streams,
    after the writes the recall saw, once each, in the same order on both."""
    a, b = servers
    sid = new_space(a)
    streams: dict[str, list[tuple[str, Any]]] = {"a": [], "b": []}
    readers = []
    with RestSpaceClient(a.http_url, sid) as on_a:
        on_a.remember(id="seed", content="the heron", embedding=E0)
        for name, srv in (("a", a), ("b", b)):
            opened = threading.Event()
            t = threading.Thread(target=_stream_until_stored,
                                 args=(RestSpaceClient(srv.http_url, sid), "marker", streams[name], opened),
                                 daemon=True)
            t.start()
            readers.append(t)
            assert opened.wait(30)
        on_a.remember(id="seen", content="the egret", embedding=E0)
        on_a.recall(embedding=E0, max_results=3, mode="spreading")
        on_a.remember(id="marker", content="a later write", embedding=E0)
        for t in readers:
            t.join(30)
            assert not t.is_alive(), f"streams so far: {streams}"
    for name, got in streams.items():
        kinds = [k for k, _ in got]
        assert kinds == ["stored", "activation", "recalled", "stored"], (name, got)
        recalled = got[2][1]
        assert recalled["memory_space_id"] == sid and recalled["lsn"] == got[0][1]["lsn"]
        assert set(recalled["data"]["top"]) == {"seed", "seen"}
