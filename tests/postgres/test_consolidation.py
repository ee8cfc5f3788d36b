"""Consolidation and beliefs on PostgreSQL (issue 17): real servers on a real database.

- On demand through one server (REST and gRPC), read through another: beliefs (list, get with
  its centroid), citations, the episodes marked ``consolidated``, one LSN for the run, and the
  ``consolidation`` event delivered to a stream on the *other* server (the events table).
- The same episodes give the same beliefs on SQLite and PostgreSQL (ids, citations, contents;
  numbers within 1e-3: PostgreSQL keeps vectors as float16).
- Dream streams the steps of one run over gRPC.
- At most one run per space across servers: two servers consolidating one space at once give one
  belief set and each episode consolidated once; a run waits for the space's consolidation lock
  and reads its episodes only once it holds it.
- The schedule: with two scheduled servers on one database, each change is consolidated once
  (one ``consolidation`` event), and an unchanged space is not consolidated again.
- Bad input keeps the error envelope.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from engram.core.postgres.beliefs import lock_key
from engram.testing.clients import ApiError, GrpcSpaceClient, RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers

DIM = 8
TOL = 1e-3
INTERVAL = 0.3  # the scheduled servers' consolidation_interval_seconds


@pytest.fixture(scope="module")
def dsn(pg: PgCluster) -> str:
    return fresh_database(pg, "cons")


@pytest.fixture(scope="module")
def servers(dsn: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    with pg_servers(dsn, tmp_path_factory, embedder="none") as pair:
        yield pair


def new_space(srv: EngramProcess, sid: str | None = None) -> str:
    sid = sid or f"c-{uuid.uuid4().hex[:10]}"
    r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid, "dimension": DIM}, timeout=30)
    assert r.status_code == 201, r.text
    return sid


def episodes(seed: int = 7) -> list[dict[str, Any]]:
    """Three tight groups (around axes 0, 3, 6) and two loners, with fixed ids, in shuffled order."""
    rng = random.Random(seed)
    out = []
    topics = {0: "heron fishing reeds river", 3: "kettle stove breakfast kitchen",
              6: "train station platform"}
    for axis, words in topics.items():
        for i in range(4):
            v = [rng.uniform(0.0, 0.15) for _ in range(DIM)]
            v[axis] = 1.0
            out.append({"id": f"ep-{axis}-{i}", "content": f"{words} {i}", "embedding": v,
                        "when": f"2026-01-0{1 + i}T10:00:00Z", "what": words.split()[0]})
    for j, axis in enumerate((1, 5)):
        v = [0.0] * DIM
        v[axis] = 1.0
        out.append({"id": f"lone-{j}", "content": f"a lone thought {j}", "embedding": v,
                    "when": "2026-01-09T10:00:00Z"})
    rng.shuffle(out)
    return out


def cited(report: dict[str, Any]) -> dict[str, set[str]]:
    return {b["id"]: {c["episode_id"] for c in b["citations"]} for b in report["beliefs"]}


def events_of(dsn: str, sid: str, type_: str) -> list[tuple[int, dict[str, Any]]]:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('engram.space_id', %s, true)", (sid,))
        rows = conn.execute("SELECT lsn, data FROM engram.events WHERE space_id = %s AND type = %s "
                            "ORDER BY lsn, seq", (sid, type_)).fetchall()
    return [(int(r[0]), dict(r[1])) for r in rows]


def test_consolidate_on_one_server_read_beliefs_and_events_on_the_other(
        servers: tuple[EngramProcess, EngramProcess], dsn: str) -> None:
    a, b = servers
    sid = new_space(a)
    frames: list[dict[str, Any]] = []
    opened = threading.Event()

    def watch() -> None:
        with RestSpaceClient(b.http_url, sid) as on_b:
            for frame in on_b.sse("/api/v1/stream/consolidation", on_open=opened.set):
                if frame.get("event") == "consolidation":
                    frames.append(frame)
                    return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    assert opened.wait(30)
    with RestSpaceClient(a.http_url, sid) as on_a, RestSpaceClient(b.http_url, sid) as on_b:
        for ep in episodes():
            on_a.experience(**ep)
        report = on_a.consolidate()
        assert report["episodes_considered"] == 14 and report["episodes_consolidated"] == 12
        assert report["lsn"] == 15  # 14 episodes, then the run: one LSN
        assert sorted(map(sorted, cited(report).values())) == [
            [f"ep-{axis}-{i}" for i in range(4)] for axis in (0, 3, 6)]
        assert all(b_["lsn"] == 15 for b_ in report["beliefs"])
        page = on_b.beliefs()
        assert {x["id"] for x in page["beliefs"]} == set(cited(report)) and page["last_consolidation"]
        assert [x["id"] for x in page["beliefs"]] == sorted(x["id"] for x in page["beliefs"])
        one = on_b.belief(report["beliefs"][0]["id"])
        assert len(one["centroid"]) == DIM and one["citations"] == report["beliefs"][0]["citations"]
        assert "heron" in " ".join(x["content"] for x in page["beliefs"])
        assert on_b.get("ep-3-2")["consolidation_state"] == "consolidated"
        assert on_b.get("lone-1")["consolidation_state"] == "recent"
        with pytest.raises(ApiError) as missing:
            on_b.belief("belief-nope")
        assert missing.value.status == 404 and missing.value.body["error"]["code"] == "BELIEF_NOT_FOUND"
        # again: same beliefs (deterministic), nothing newly consolidated, creation times kept
        again = on_b.consolidate()
        assert cited(again) == cited(report) and again["run_id"] == report["run_id"]
        assert again["episodes_consolidated"] == 0 and again["lsn"] == 16
        assert {x["id"]: x["created_at"] for x in on_a.beliefs()["beliefs"]} == {
            x["id"]: x["created_at"] for x in page["beliefs"]}
    reader.join(30)
    assert frames, "no consolidation event reached the stream on the other server"
    data = frames[0]["data"]
    assert data["lsn"] == 15 and data["data"]["beliefs"] == 3 and data["data"]["episodes_consolidated"] == 12
    assert [lsn for lsn, _ in events_of(dsn, sid, "consolidation")] == [15, 16]


def test_a_belief_page_walk_and_an_empty_space(servers: tuple[EngramProcess, EngramProcess]) -> None:
    a, _ = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a:
        empty = on_a.consolidate()
        assert (empty["beliefs"], empty["episodes_considered"], empty["lsn"]) == ([], 0, 1)
        for ep in episodes():
            on_a.experience(**ep)
        on_a.remember(content="not an episode", embedding=[1.0] + [0.0] * (DIM - 1))
        on_a.experience(content="an episode with no vector", when="2026-01-01T00:00:00Z")
        report = on_a.consolidate(min_cluster=2)
        assert report["episodes_considered"] == 14 and report["episodes_skipped"] == {"no_embedding": 1}
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = on_a.call_obj("GET", "/api/v1/consolidations", params=params)
            seen += [x["id"] for x in page["beliefs"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == sorted(cited(report))


def test_sqlite_and_postgres_give_the_same_beliefs(pg: PgCluster,
                                                   servers: tuple[EngramProcess, EngramProcess],
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    a, _ = servers
    lite = EngramProcess.start(tmp_path_factory.mktemp("lite"), settings={"embedder": "none"})
    try:
        sid = f"same-{uuid.uuid4().hex[:8]}"  # one id on both: belief ids hash the space id
        reports = {}
        for name, srv in (("sqlite", lite), ("postgres", a)):
            new_space(srv, sid)
            with RestSpaceClient(srv.http_url, sid) as c:
                for ep in episodes(seed=11):
                    c.experience(**ep)
                c.forget("ep-6-1", mode="suppress")  # a suppressed episode is left out on both
                reports[name] = (c.consolidate(similarity=0.85), c.beliefs(),
                                 {x["id"]: c.belief(x["id"]) for x in c.beliefs()["beliefs"]})
        (lr, lp, lb), (pr, pp, pb) = reports["sqlite"], reports["postgres"]
        assert [x["id"] for x in lr["beliefs"]] == [x["id"] for x in pr["beliefs"]]
        for key in ("episodes_considered", "episodes_consolidated", "clusters", "episodes_skipped", "lsn"):
            assert lr[key] == pr[key], key
        assert [x["id"] for x in lp["beliefs"]] == [x["id"] for x in pp["beliefs"]]
        for bid, lite_b in lb.items():
            pg_b = pb[bid]
            assert lite_b["content"] == pg_b["content"]
            assert ([c["episode_id"] for c in lite_b["citations"]]
                    == [c["episode_id"] for c in pg_b["citations"]])
            assert [c["preview"] for c in lite_b["citations"]] == [c["preview"] for c in pg_b["citations"]]
            for c1, c2 in zip(lite_b["citations"], pg_b["citations"], strict=True):
                assert abs(c1["similarity"] - c2["similarity"]) < TOL
            for field in ("strength", "schema_confidence"):
                assert abs(lite_b[field] - pg_b[field]) < TOL, field
            assert max(abs(x - y) for x, y in zip(lite_b["centroid"], pg_b["centroid"], strict=True)) < TOL
        assert "ep-6-1" not in {c["episode_id"] for x in pp["beliefs"] for c in x["citations"]}
    finally:
        lite.stop()


def test_dream_streams_one_run_over_grpc(servers: tuple[EngramProcess, EngramProcess]) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a:
        for ep in episodes():
            on_a.experience(**ep)
    with GrpcSpaceClient(b.grpc_target, sid) as on_b:
        steps = on_b.dream(min_cluster_size=2)
        kinds = [next(k for k in ("progress", "replay", "insight", "summary") if k in s) for s in steps]
        assert kinds.count("replay") == 3 and kinds.count("insight") == 3 and kinds[-1] == "summary", kinds
        assert kinds.index("replay") < kinds.index("insight") and kinds[0] == "progress"
        assert [int(s["sequence"]) for s in steps] == list(range(1, len(steps) + 1))
        assert "heron" in str(steps) and "ep-0-0" in str(steps)
        unary = on_b.consolidate(min_cluster_size=2)
        assert str(unary).count("belief-") >= 3  # a second run over gRPC: the same three beliefs
    with RestSpaceClient(a.http_url, sid) as on_a:
        assert len(on_a.beliefs()["beliefs"]) == 3
        assert on_a.get("ep-0-3")["consolidation_state"] == "consolidated"


def test_two_servers_consolidating_one_space_at_once(servers: tuple[EngramProcess, EngramProcess],
                                                      dsn: str) -> None:
    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a:
        for ep in episodes():
            on_a.experience(**ep)
    start = threading.Barrier(2)
    results: dict[str, dict[str, Any]] = {}

    def run(name: str, srv: EngramProcess) -> None:
        with RestSpaceClient(srv.http_url, sid) as c:
            start.wait(30)
            results[name] = c.consolidate()

    threads = [threading.Thread(target=run, args=(n, s), daemon=True) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {"a", "b"}
    ra, rb = results["a"], results["b"]
    assert cited(ra) == cited(rb) and len(cited(ra)) == 3
    assert sorted([ra["episodes_consolidated"], rb["episodes_consolidated"]]) == [0, 12]  # once, by one run
    assert sorted([ra["lsn"], rb["lsn"]]) == [15, 16]
    with RestSpaceClient(b.http_url, sid) as on_b:
        ids = [x["id"] for x in on_b.beliefs()["beliefs"]]
    assert sorted(ids) == sorted(cited(ra)) and len(ids) == len(set(ids))
    logged = events_of(dsn, sid, "consolidation")
    assert [(lsn, d["episodes_consolidated"]) for lsn, d in logged] == [(15, 12), (16, 0)]


def _waiting_advisory_locks(pg: PgCluster, dbname: str) -> int:
    with psycopg.connect(pg.superuser, autocommit=True) as su:
        row = su.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                         "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
                         (dbname,)).fetchone()
    return int(row[0]) if row else 0


def test_a_run_waits_for_the_spaces_consolidation_lock_and_reads_after_taking_it(
        pg: PgCluster, servers: tuple[EngramProcess, EngramProcess], dsn: str) -> None:
    """The lock another server's run would hold is held here; a run through server A waits for it,
    and the episode stored meanwhile (through B) is in that run: it read its input under the lock."""
    a, b = servers
    sid = new_space(a)
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with RestSpaceClient(a.http_url, sid) as on_a:
        for ep in episodes()[:6]:
            on_a.experience(**ep)
    result: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as holder:
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(sid),))

            def run() -> None:
                with RestSpaceClient(a.http_url, sid) as c:
                    result["report"] = c.consolidate()

            t = threading.Thread(target=run, daemon=True)
            t.start()
            deadline = time.monotonic() + 30
            while _waiting_advisory_locks(pg, str(dbname)) == 0:
                assert time.monotonic() < deadline, "the run did not wait for the consolidation lock"
                assert t.is_alive(), f"the run finished while another held the lock: {result}"
                time.sleep(0.02)
            with RestSpaceClient(b.http_url, sid) as on_b:
                on_b.experience(id="late-episode", content="stored while the lock was held",
                                embedding=[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                                when="2026-02-01T00:00:00Z")
            assert t.is_alive()
        t.join(60)  # the transaction above ended: the lock is free
    assert result["report"]["episodes_considered"] == 7


@pytest.fixture(scope="module")
def scheduled(pg: PgCluster,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[EngramProcess]]]:
    db = fresh_database(pg, "sched")
    with pg_servers(db, tmp_path_factory, ("s1", "s2"), embedder="none",
                    consolidation_interval_seconds=INTERVAL) as procs:
        yield db, list(procs)


def _wait_for(cond: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_scheduled_consolidation_runs_once_per_change_across_servers(
        scheduled: tuple[str, list[EngramProcess]]) -> None:
    db, (s1, _s2) = scheduled
    sid = new_space(s1)
    idle = new_space(s1)
    with RestSpaceClient(s1.http_url, idle) as c:
        c.remember(content="a memory, not an episode", embedding=[1.0] + [0.0] * (DIM - 1))
    with RestSpaceClient(s1.http_url, sid) as c:
        for ep in episodes():
            c.experience(**ep)
        # (a tick may fall between two of these writes: each change it saw is a run of its own)
        _wait_for(lambda: any(d["episodes_considered"] == 14 for _, d in events_of(db, sid, "consolidation")),
                  "no scheduled run saw all the episodes")
        runs = len(events_of(db, sid, "consolidation"))
        assert events_of(db, sid, "consolidation")[-1][1]["beliefs"] == 3
        # Both servers tick every INTERVAL: several ticks later, still no run for no change
        # (the absence of a run can only be observed over a window).
        time.sleep(6 * INTERVAL)
        assert len(events_of(db, sid, "consolidation")) == runs
        assert len(c.beliefs()["beliefs"]) == 3
        assert events_of(db, idle, "consolidation") == []  # no episode ever: the schedule writes nothing
        # one change (a new member of a group): one run, by one of the two servers
        v = [0.0] * DIM
        v[3] = 1.0
        c.experience(id="ep-3-new", content="kettle stove breakfast again", embedding=v,
                     when="2026-01-08T10:00:00Z")
        _wait_for(lambda: len(events_of(db, sid, "consolidation")) > runs, "no run after a change")
        time.sleep(6 * INTERVAL)
        logged = events_of(db, sid, "consolidation")
        assert len(logged) == runs + 1
        assert (logged[-1][1]["episodes_considered"], logged[-1][1]["episodes_consolidated"]) == (15, 1)
        assert c.get("ep-3-new")["consolidation_state"] == "consolidated"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/consolidate", {"similarity": 2}),
    ("POST", "/api/v1/consolidate", {"min_cluster": 1}),
    ("POST", "/api/v1/consolidate", {"bogus": True}),
    ("POST", "/api/v1/consolidate", "not json"),
    ("GET", "/api/v1/consolidations?limit=0", None),
    ("GET", "/api/v1/consolidations/belief-nope", None),
])
def test_bad_input_keeps_the_error_envelope(servers: tuple[EngramProcess, EngramProcess], method: str,
                                            path: str, body: Any) -> None:
    a, _ = servers
    sid = new_space(a)
    kw: dict[str, Any] = {"content": body} if isinstance(body, str) else {"json": body}
    headers = {"X-Memory-Space": sid, "Content-Type": "application/json"}
    r = httpx.request(method, a.http_url + path, headers=headers, timeout=30, **kw)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert err["code"] and err["message"] and "suggestion" in err


def test_an_episode_forgotten_while_the_run_clusters_is_not_cited(pg: PgCluster, db: Any, clock: Any) -> None:
    """In process, on the real database: the run is paused after clustering (between two steps of
    its generator), an episode it clustered is suppressed by another transaction, and the run's
    write re-checks what it cites: the belief is rebuilt from the survivors."""
    from engram.cognition.pg_consolidation import PgConsolidationRun
    from engram.core.models import ConsolidateInput, EpisodeInput
    from engram.core.postgres import PostgresStore
    from engram.core.postgres.space import PostgresSpace
    from engram.settings import Settings

    store = PostgresStore(db, vector_index=False, clock=clock)
    sid = f"stale-{uuid.uuid4().hex[:8]}"
    assert store.create_space(sid, dimension=DIM)
    space = PostgresSpace(sid, store, Settings(embedder="none"), clock, dimension=DIM)
    for ep in episodes():
        space.remember(EpisodeInput(**ep))
    run = PgConsolidationRun(space, Settings(embedder="none"), ConsolidateInput())
    steps = run.steps()
    for step in steps:
        if step.kind == "replay":
            break  # clustered; nothing written yet
    space.forget("ep-0-2")  # another writer, while the run holds the consolidation lock
    rest = list(steps)
    assert rest[-1].kind == "done" and run.report is not None
    by_first = {min(c.episode_id for c in b.citations): b for b in run.report.beliefs}
    assert {c.episode_id for c in by_first["ep-0-0"].citations} == {"ep-0-0", "ep-0-1", "ep-0-3"}
    assert run.report.episodes_consolidated == 11
    assert space.get("ep-0-2").consolidation_state == "recent"


def test_a_dream_whose_client_goes_away_writes_nothing_and_frees_the_lock(
        pg: PgCluster, servers: tuple[EngramProcess, EngramProcess], dsn: str) -> None:
    """The dream's client cancels while the run waits for the space's lock (held here): once the
    lock is free the run is closed after its current step (rolled back, its lock released), so a
    run through the other server goes ahead and is the one that writes."""
    import grpc

    from engram.api.grpc.gen import service_pb2 as spb
    from engram.api.grpc.gen import service_pb2_grpc as spb_grpc

    a, b = servers
    sid = new_space(a)
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    with RestSpaceClient(a.http_url, sid) as on_a:
        for ep in episodes():
            on_a.experience(**ep)
    with (psycopg.connect(dsn, autocommit=True) as holder, grpc.insecure_channel(a.grpc_target) as channel,
          holder.transaction()):
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(sid),))
        call = spb_grpc.EngramServiceStub(channel).Dream(
            spb.DreamRequest(memory_space_id=sid, min_cluster_size=2), timeout=60)
        first = next(call)  # sent before the run waits for the lock
        assert first.WhichOneof("kind") == "progress"
        _wait_for(lambda: _waiting_advisory_locks(pg, dbname) == 1, "the dream did not wait for the lock")
        call.cancel()
    with RestSpaceClient(b.http_url, sid, timeout=30) as on_b:
        report = on_b.consolidate()
    assert (report["lsn"], report["episodes_consolidated"]) == (15, 12)  # the dream wrote nothing
    assert [lsn for lsn, _ in events_of(dsn, sid, "consolidation")] == [15]
    assert "already executing" not in a.logs()


def test_the_mcp_cognitive_tools_answer_on_postgres(servers: tuple[EngramProcess, EngramProcess]) -> None:
    import asyncio

    from engram.testing.mcp import http_session, structured, text_of

    a, b = servers
    sid = new_space(a)
    with RestSpaceClient(a.http_url, sid) as on_a:
        for ep in episodes():
            on_a.experience(**ep)

    async def scenario() -> dict[str, Any]:
        async with http_session(b.http_url, sid) as s:
            out = {}
            for tool, args in (("consolidate", {"min_cluster": 2}), ("reminisce", {"topic": "heron"}),
                               ("complete", {"what": "kettle breakfast"})):
                res = await s.call_tool(tool, args)
                assert not res.is_error, (tool, text_of(res))
                out[tool] = structured(res)
            return out

    got = asyncio.run(scenario())
    assert len(got["consolidate"]["beliefs"]) == 3
    assert {e["id"] for e in got["reminisce"]["episodes"]} == {f"ep-0-{i}" for i in range(4)}
    assert got["complete"]["best"]["episode"]["memory_id"].startswith("ep-3-")
