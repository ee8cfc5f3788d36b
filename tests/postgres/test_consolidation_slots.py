"""More simultaneous on-demand consolidation runs than a server's pool has connections: reads and
writes still get a connection (service_pg's bound: half the pool runs at once, the rest wait on the
event loop holding nothing), and every run completes once the space's lock is free.

The runs are held deterministically: the test takes the space's consolidation lock (the advisory
lock every run waits for) from its own session, so every run that reaches the database blocks
there, holding its pooled connection, until the test lets go."""

from __future__ import annotations

import concurrent.futures
import uuid
from pathlib import Path

import httpx
import psycopg

from engram.core.postgres.beliefs import lock_key
from engram.service_pg import consolidation_slots
from engram.testing.clients import RestSpaceClient

from .conftest import PgCluster, fresh_database, start_pg_server
from .test_server import vec

POOL = 4
RUNS = 3 * POOL


def test_more_consolidations_than_connections_leave_reads_and_writes_served(pg: PgCluster,
                                                                          tmp_path: Path) -> None:
    assert consolidation_slots(POOL) < POOL
    dsn = fresh_database(pg, "slots")
    srv = start_pg_server(tmp_path / "srv", dsn, postgres_pool_size=POOL, embedder="none")
    sid = f"cs-{uuid.uuid4().hex[:8]}"
    try:
        assert httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid, "dimension": 4},
                          timeout=30).status_code == 201
        with RestSpaceClient(srv.http_url, sid) as c:
            for i in range(4):
                c.remember(id=f"e{i}", content=f"episode {i}", embedding=vec(i % 2))
        holder = psycopg.connect(dsn, autocommit=True)  # another session holding the space's run lock
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(sid),))
        pool = concurrent.futures.ThreadPoolExecutor(RUNS)
        try:
            runs = [pool.submit(httpx.post, srv.http_url + "/api/v1/consolidate", json={},
                                headers={"X-Memory-Space": sid}, timeout=120) for _ in range(RUNS)]
            # every run that got a connection is now blocked on the lock, holding it
            waiting = 0
            for _ in range(600):
                row = holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND NOT granted").fetchone()
                waiting = int(row[0]) if row else 0
                if waiting >= consolidation_slots(POOL):
                    break
                holder.execute("SELECT pg_sleep(0.05)")
            assert waiting == consolidation_slots(POOL), waiting  # never more than the bound
            with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": sid}, timeout=30) as http:
                for i in range(2 * POOL):  # reads and writes meanwhile: a connection each, no 503
                    r = http.get("/api/v1/memories/e0")
                    assert r.status_code == 200, r.text
                    w = http.post("/api/v1/memories/remember",
                                  json={"content": f"meanwhile {i}", "embedding": vec(i)})
                    assert w.status_code == 201, w.text
            assert not any(f.done() for f in runs)  # still held: the reads did not wait for them
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (lock_key(sid),))
            holder.close()
            results = [f.result(timeout=120) for f in runs]
            pool.shutdown()
        assert [r.status_code for r in results] == [200] * RUNS, [r.text[:200] for r in results]
    finally:
        srv.stop()
