#!/usr/bin/env python3
"""Recall by mode on SQLite vs PostgreSQL: what context cues, spreading and the cognitive rank cost.

    python bench/pg_recall.py [--memories 1000] [--edges 2] [--recalls 300] [--clients 4] [--dim 64]
                              [--out bench/results/pg_recall.json]

One server per backend (``embedder = "none"``, client vectors), a space of ``--memories``
episodes (one a day, three places, two people each) with ``--edges`` random associations per
memory; then ``--recalls`` recalls per cue kind, from ``--clients`` aiohttp workers:
``similarity`` (rank similarity), ``cognitive`` (the default rank), ``spreading`` (3 hops, the
default), ``hybrid``, ``context`` (a time range and a place, no vector), ``context+vector``.
Reports requests/s and P50/P99 latency of each, and the load average.

Not a capacity figure: the servers, PostgreSQL and the clients share this machine's 2 cores
(see the load average). On PostgreSQL a spreading hop is one database round trip, and vectors
are scanned exactly (docs/scale-out.md).
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (keeps bench/ from shadowing stdlib http)

import argparse
import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from benchlib import RESULTS, stamp, versions, write_json
from postgres import phase, start_postgres, stop_postgres

from engram.testing.harness import EngramProcess

PLACES = ["harbour", "market", "library"]
PEOPLE = ["ann", "bo", "cy", "dee", "eli"]


def fill(url: str, space: str, args: argparse.Namespace, vecs: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    with httpx.Client(base_url=url, headers={"X-Memory-Space": space}, timeout=120) as http:
        items = [{"id": f"m{i}", "content": f"episode {i}", "embedding": vecs[i].tolist(),
                  "when": f"2025-{1 + (i // 28) % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
                  "where_location": PLACES[i % 3], "who": [PEOPLE[i % 5], PEOPLE[(i + 2) % 5]]}
                 for i in range(args.memories)]
        for item in items:  # episodes one by one (the batch route takes memories)
            http.post("/api/v1/episodes/remember", json=item).raise_for_status()
        for i in range(args.memories):
            for j in rng.choice(args.memories, args.edges, replace=False):
                if int(j) != i:
                    http.post("/api/v1/memories/associate", json={
                        "source_id": f"m{i}", "target_id": f"m{int(j)}",
                        "strength": round(float(rng.uniform(0.3, 1.0)), 3)}).raise_for_status()


def cues(args: argparse.Namespace, vecs: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng(7)
    picks = rng.integers(0, args.memories, args.recalls)
    near = [(vecs[int(j)] + 0.1 * rng.standard_normal(args.dim)).tolist() for j in picks]
    months = [f"2025-{1 + int(j) % 12:02d}" for j in picks]
    return {
        "similarity": [{"embedding": v, "rank": "similarity"} for v in near],
        "cognitive": [{"embedding": v} for v in near],
        "spreading": [{"embedding": v, "mode": "spreading"} for v in near],
        "hybrid": [{"embedding": v, "mode": "hybrid"} for v in near],
        "context": [{"time_start": f"{m}-01T00:00:00Z", "time_end": f"{m}-28T23:00:00Z",
                     "location": PLACES[i % 3]} for i, m in enumerate(months)],
        "context+vector": [{"embedding": v, "participants": [PEOPLE[i % 5]]} for i, v in enumerate(near)],
    }


def measure(srv: EngramProcess, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((args.memories, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    space = f"bench-{uuid.uuid4().hex[:8]}"
    httpx.post(srv.http_url + "/api/v1/spaces", json={"id": space, "dimension": args.dim},
               timeout=60).raise_for_status()
    fill(srv.http_url, space, args, vecs)
    out: dict[str, Any] = {"loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    for kind, bodies in cues(args, vecs).items():
        bodies = [{**b, "max_results": 10} for b in bodies]
        out[kind] = asyncio.run(phase([srv.http_url], space, bodies, "/api/v1/memories/recall", args.clients))
        print(f"  {kind}: {out[kind]['per_second']}/s p50 {out[kind]['p50_ms']} ms "
              f"p99 {out[kind]['p99_ms']} ms errors {out[kind]['errors']}", flush=True)
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", type=int, default=1000)
    ap.add_argument("--edges", type=int, default=2)
    ap.add_argument("--recalls", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--out", default=str(RESULTS / "pg_recall.json"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pgrecall-"))
    settings = {"embedder": "none", "log_level": "warning"}
    results: dict[str, Any] = {"stamp": stamp(False), "versions": versions(), "params": vars(args)}
    pg_server = None
    try:
        print("sqlite", flush=True)
        srv = EngramProcess.start(root / "sqlite", settings=settings)
        try:
            results["sqlite"] = measure(srv, args)
        finally:
            srv.stop()
        pg_server, dsn = start_postgres(root / "pg")
        print("postgres", flush=True)
        pg_settings = {**settings, "backend": "postgres", "postgres_dsn": dsn}
        one = EngramProcess.start(root / "pg1", settings=pg_settings)
        try:
            results["postgres"] = measure(one, args)
        finally:
            one.stop()
    finally:
        if pg_server is not None:
            stop_postgres(pg_server, root / "pg")
        shutil.rmtree(root, ignore_errors=True)
    results["note"] = ("One server per backend; servers, PostgreSQL and clients share 2 cores with other "
                       "work (see loadavg). A spreading hop on PostgreSQL is one database round trip.")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
