#!/usr/bin/env python3
"""Multi-space overhead (in-process engine): prints figures and writes JSON.

    python bench/multispace.py [--quick] [--out bench/results/multispace.json]

The same total data (N memories x 768) is spread over 1, 5 and 10 active spaces,
and a fourth run keeps it in one space with 1,000 idle spaces on disk beside it.
For each: sequential recall latency P50/P99 (queries round-robin over the active
spaces) and throughput with 8 concurrent callers; overhead in percent against the
one-space run. A control run holds N/10 memories in a single space, so the
10-space figure can also be read against the same per-space size (spreading the
same data over more spaces makes each search smaller, which flatters them).

Issue 2 target: recall P50 with 10 loaded spaces no more than 5 % slower than one.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    DIM,
    RESULTS,
    dataset,
    exit_on_sigterm,
    latency_summary,
    make_service,
    overhead_pct,
    populate_spaces,
    queries_near,
    remember_vectors,
    rmtree,
    show,
    stamp,
    tmpdir,
    write_json,
)


async def _measure(
    svc: Any, names: list[str], per_space: dict[str, np.ndarray], queries: int, concurrency: int, seed: int
) -> dict[str, Any]:
    from engram.core.models import Cue

    qs = {name: queries_near(vecs, queries, seed) for name, vecs in per_space.items()}
    cues = [
        (names[j % len(names)], Cue(embedding=qs[names[j % len(names)]][j].tolist(), max_results=10))
        for j in range(queries)
    ]
    for name, cue in cues[: 2 * len(names)]:  # warm each space (first use loads it)
        await svc.recall(name, cue)
    lat: list[float] = []
    for name, cue in cues:
        t0 = time.perf_counter()
        await svc.recall(name, cue)
        lat.append((time.perf_counter() - t0) * 1000)
    out = latency_summary(lat)
    out["throughput_1_caller_per_s"] = round(1000.0 * len(lat) / sum(lat), 1)

    next_j = 0

    async def caller() -> None:
        nonlocal next_j
        while next_j < len(cues):
            name, cue = cues[next_j]
            next_j += 1
            await svc.recall(name, cue)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    out["throughput_per_s"] = round(len(cues) / (time.perf_counter() - t0), 1)
    out["concurrency"] = concurrency
    return out


def run_case(
    tmp: Path, label: str, vecs: np.ndarray, spaces: int, idle: int, queries: int, concurrency: int
) -> dict[str, Any]:
    data_dir = tmp / label
    idle_setup = populate_spaces(data_dir, idle) if idle else 0.0
    names = [f"active-{i:02d}" for i in range(spaces)]
    svc = make_service(data_dir, names)
    try:
        per = len(vecs) // spaces
        per_space = {name: vecs[i * per : (i + 1) * per] for i, name in enumerate(names)}
        for name, part in per_space.items():
            asyncio.run(remember_vectors(svc, name, part, 32))
        res = asyncio.run(_measure(svc, names, per_space, queries, concurrency, seed=7))
        res.update(
            {
                "active_spaces": spaces,
                "idle_spaces": idle,
                "memories_total": per * spaces,
                "memories_per_space": per,
                "spaces_known": len(svc.registry.known_ids()),
                "spaces_loaded": len(svc.registry.loaded()),
                "search": "exact" if per < svc.settings.exact_search_max else "indexed",
            }
        )
        if idle:
            res["idle_setup_seconds"] = round(idle_setup, 1)
    finally:
        svc.close()
        rmtree(data_dir)
    return res


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--total", type=int, help="memories in total (default 15,000; quick 3,000)")
    ap.add_argument("--queries", type=int, help="queries per case (default 1,000; quick 200)")
    ap.add_argument("--idle", type=int, default=1000, help="idle spaces for the idle case")
    ap.add_argument("--out", default=str(RESULTS / "multispace.json"))
    args = ap.parse_args()
    total = args.total or (3_000 if args.quick else 15_000)
    queries = args.queries or (200 if args.quick else 1_000)
    concurrency = 8
    vecs = dataset(total, DIM, 11)
    tmp = tmpdir("engram-multispace-")
    results: dict[str, Any] = {
        **stamp(args.quick),
        "benchmark": "multispace",
        "dim": DIM,
        "total": total,
        "queries_per_case": queries,
        "cases": {},
    }
    cases = [("1", 1, 0), ("5", 5, 0), ("10", 10, 0), ("1+idle", 1, args.idle)]
    try:
        for label, spaces, idle in cases:
            results["cases"][label] = run_case(tmp, f"case-{label}", vecs, spaces, idle, queries, concurrency)
            show(f"multispace {label}", results["cases"][label])
        # control: one space holding only the per-space size of the 10-space case
        small = vecs[: total // 10]
        results["cases"]["1-small"] = run_case(tmp, "case-1-small", small, 1, 0, queries, concurrency)
        show("multispace 1-small", results["cases"]["1-small"])
    finally:
        rmtree(tmp)
    base = results["cases"]["1"]
    ctrl = results["cases"]["1-small"]
    for label in ("5", "10", "1+idle"):
        case = results["cases"][label]
        case["overhead_vs_1"] = {
            "p50_pct": overhead_pct(case["p50_ms"], base["p50_ms"]),
            "p99_pct": overhead_pct(case["p99_ms"], base["p99_ms"]),
            "throughput_pct": overhead_pct(case["throughput_per_s"], base["throughput_per_s"]),
        }
    ten = results["cases"]["10"]
    ten["overhead_vs_same_per_space_size"] = {
        "p50_pct": overhead_pct(ten["p50_ms"], ctrl["p50_ms"]),
        "p99_pct": overhead_pct(ten["p99_ms"], ctrl["p99_ms"]),
        "throughput_pct": overhead_pct(ten["throughput_per_s"], ctrl["throughput_per_s"]),
    }
    results["target"] = {
        "name": "recall P50 with 10 loaded spaces <= 5 % slower than one (issue 2)",
        "p50_overhead_pct_same_total": ten["overhead_vs_1"]["p50_pct"],
        "p50_overhead_pct_same_per_space": ten["overhead_vs_same_per_space_size"]["p50_pct"],
    }
    write_json(args.out, results)


if __name__ == "__main__":
    main()
