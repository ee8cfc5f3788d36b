#!/usr/bin/env python3
"""Start-up time and memory of a real server with many spaces on disk.

    python bench/startup.py [--quick] [--out bench/results/startup.json]

For 0 (default space only), 10, 1,000 and 10,000 spaces on disk (each a real
space with a few memories), a real ``engram start`` process is launched and
timed from exec until ``/health/alive`` answers; its RSS is read at that moment,
and again after the first recall in one of the spaces (spaces load lazily, so
that first request pays the open). SPEC §7: start-up must not grow with the
number of idle spaces.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchlib import (
    RESULTS,
    ServerProcess,
    exit_on_sigterm,
    populate_spaces,
    rmtree,
    rss_bytes,
    show,
    stamp,
    tmpdir,
    write_json,
)


def _recall_once(url: str, space: str) -> float:
    body = json.dumps({"query": "memory about topic", "max_results": 5}).encode()
    req = urllib.request.Request(
        url + "/api/v1/memories/recall",
        data=body,
        method="POST",
        headers={"content-type": "application/json", "X-Memory-Space": space},
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
    return time.perf_counter() - t0


def measure(root: Path, count: int, reps: int) -> dict[str, Any]:
    data_dir = root / f"spaces-{count}"
    setup = populate_spaces(data_dir, count) if count else 0.0
    starts, rss, first_recall, rss_after = [], [], [], []
    for rep in range(reps):
        srv = ServerProcess(root / f"run-{count}-{rep}", data_dir)
        try:
            starts.append(srv.seconds)
            rss.append(rss_bytes(srv.pid))
            if count:
                try:
                    first_recall.append(_recall_once(srv.url, f"idle-{count // 2:05d}"))
                    rss_after.append(rss_bytes(srv.pid))
                except OSError as exc:
                    first_recall.append(float("nan"))
                    print(f"first recall failed: {exc}", flush=True)
        finally:
            srv.stop()
    med = sorted(starts)[len(starts) // 2]
    out: dict[str, Any] = {
        "spaces_on_disk": count,
        "reps": reps,
        "start_to_alive_s": round(med, 3),
        "start_to_alive_all_s": [round(s, 3) for s in starts],
        "rss_mb_at_alive": round(sorted(rss)[len(rss) // 2] / 2**20, 1),
        "setup_seconds": round(setup, 1),
    }
    if first_recall:
        out["first_recall_in_idle_space_ms"] = round(1000 * sorted(first_recall)[len(first_recall) // 2], 1)
        out["rss_mb_after_first_recall"] = (
            round(sorted(rss_after)[len(rss_after) // 2] / 2**20, 1) if rss_after else None
        )
    rmtree(data_dir)
    return out


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--counts", help="comma-separated space counts (default 0,10,1000,10000; quick 0,10,1000)"
    )
    ap.add_argument("--reps", type=int, help="starts per count (median reported; default 3, quick 1)")
    ap.add_argument("--out", default=str(RESULTS / "startup.json"))
    args = ap.parse_args()
    counts = (
        [int(c) for c in args.counts.split(",")]
        if args.counts
        else ([0, 10, 1000] if args.quick else [0, 10, 1000, 10000])
    )
    reps = args.reps or (1 if args.quick else 3)
    root = tmpdir("engram-startup-")
    results: dict[str, Any] = {**stamp(args.quick), "benchmark": "startup", "cases": {}}
    try:
        for count in counts:
            results["cases"][str(count)] = measure(root, count, reps)
            show(f"startup {count} spaces", results["cases"][str(count)])
    finally:
        rmtree(root)
    base = results["cases"].get("0") or results["cases"].get(str(counts[0]))
    for case in results["cases"].values():
        case["start_growth_pct_vs_fewest"] = round(
            100 * (case["start_to_alive_s"] - base["start_to_alive_s"]) / base["start_to_alive_s"], 1
        )
    write_json(args.out, results)


if __name__ == "__main__":
    main()
