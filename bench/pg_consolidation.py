#!/usr/bin/env python3
"""Consolidation through an Engram server on SQLite vs PostgreSQL (issue 17).

    python bench/pg_consolidation.py [--episodes 2000] [--dim 64] [--cluster 10] [--writes 300]
                                     [--out bench/results/pg_consolidation.json]

Each backend: one ``engram start`` (embedder ``none``), a fresh space, ``--episodes`` episodes
with client vectors in groups of ``--cluster`` (8 aiohttp writers), then

* ``consolidate``: one POST /api/v1/consolidate, wall time and the report's ``duration_ms``;
* ``writes_alone`` / ``writes_during``: ``--writes`` remembers (4 writers) with no run, then
  while runs repeat back to back: a run must not hold up the space's writers (on PostgreSQL
  it holds the space's advisory lock, never the LSN row, while it clusters).

Prints the figures and writes them, with the load average, to ``--out``. Not a test: the
server, PostgreSQL and the clients share this machine's two cores.
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
from benchlib import RESULTS, stamp, versions, write_json
from postgres import phase, start_postgres, stop_postgres

from engram.testing.harness import EngramProcess


def episodes(n: int, dim: int, cluster: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(17)
    centres = rng.standard_normal((max(1, n // cluster), dim)).astype(np.float32)
    out = []
    for i in range(n):
        v = centres[i // cluster % len(centres)] + 0.05 * rng.standard_normal(dim).astype(np.float32)
        v /= np.linalg.norm(v)
        out.append({"id": f"ep-{i:06d}", "content": f"episode {i} of group {i // cluster}",
                    "when": "2026-01-01T00:00:00Z", "embedding": v.tolist()})
    return out


async def consolidate_loop(url: str, space: str, stop: asyncio.Event) -> int:
    runs = 0
    async with aiohttp.ClientSession(headers={"X-Memory-Space": space}) as http:
        while not stop.is_set():
            async with http.post(url + "/api/v1/consolidate", json={}) as resp:
                await resp.read()
                resp.raise_for_status()
            runs += 1
    return runs


async def writes_during(url: str, space: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    stop = asyncio.Event()
    runner = asyncio.create_task(consolidate_loop(url, space, stop))
    await asyncio.sleep(0.2)  # a run is under way before the writes start
    out = await phase([url], space, bodies, "/api/v1/memories/remember", 4)
    stop.set()
    out["consolidations_meanwhile"] = await runner
    return out


def measure(srv: EngramProcess, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    space = f"cons-{uuid.uuid4().hex[:8]}"
    httpx.post(srv.http_url + "/api/v1/spaces", json={"id": space, "dimension": args.dim},
               timeout=60).raise_for_status()
    stored = asyncio.run(phase([srv.http_url], space, episodes(args.episodes, args.dim, args.cluster),
                               "/api/v1/episodes/remember", 8))
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rep = httpx.post(srv.http_url + "/api/v1/consolidate", headers={"X-Memory-Space": space}, json={},
                     timeout=600).json()
    wall = (time.perf_counter() - t0) * 1000
    rng = np.random.default_rng(3)
    plain = [{"content": f"note {i}", "embedding": (v / np.linalg.norm(v)).tolist()}
             for i, v in enumerate(rng.standard_normal((2 * args.writes, args.dim)))]
    alone = asyncio.run(phase([srv.http_url], space, plain[: args.writes], "/api/v1/memories/remember", 4))
    during = asyncio.run(writes_during(srv.http_url, space, plain[args.writes:]))
    out = {"episodes_stored_per_second": stored["per_second"],
           "consolidate": {"wall_ms": round(wall, 1), "duration_ms": rep["duration_ms"],
                           "beliefs": len(rep["beliefs"]), "episodes_considered": rep["episodes_considered"]},
           "writes_alone": alone, "writes_during": during,
           "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"  consolidate {args.episodes} episodes: {out['consolidate']['wall_ms']} ms wall "
          f"({rep['duration_ms']} ms in the run), {len(rep['beliefs'])} beliefs; remember alone "
          f"p50 {alone['p50_ms']} / p99 {alone['p99_ms']} ms, during runs p50 {during['p50_ms']} / "
          f"p99 {during['p99_ms']} ms ({during['consolidations_meanwhile']} runs); load {out['loadavg_after'][0]}",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--cluster", type=int, default=10)
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--out", default=str(RESULTS / "pg_consolidation.json"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pgcons-"))
    settings = {"embedder": "none", "log_level": "warning"}
    results: dict[str, Any] = {"stamp": stamp(False), "versions": versions(), "params": vars(args)}
    pg_server = None
    try:
        print("sqlite:", flush=True)
        srv = EngramProcess.start(root / "sqlite", settings=settings)
        try:
            results["sqlite"] = measure(srv, args)
        finally:
            srv.stop()
        pg_server, dsn = start_postgres(root / "pg")
        print("postgres:", flush=True)
        one = EngramProcess.start(root / "pg1", settings={**settings, "backend": "postgres", "postgres_dsn": dsn})
        try:
            results["postgres"] = measure(one, args)
        finally:
            one.stop()
    finally:
        if pg_server is not None:
            stop_postgres(pg_server, root / "pg")
        shutil.rmtree(root, ignore_errors=True)
    results["note"] = "Server, PostgreSQL and clients share 2 cores (see loadavg)."
    write_json(args.out, results)


if __name__ == "__main__":
    main()
