#!/usr/bin/env python3
"""Many spaces on a small open-file limit (issue 11): prints figures and writes JSON.

    python bench/spaces.py [--quick] [--spaces N] [--out bench/results/spaces.json]

A real server is started under ``ulimit -n 1024`` (the harness's ``nofile``). One hot
space holds 2,000 memories (64-d client vectors). Then 10,000 new spaces (quick: 1,000)
are each created, written once and read once over REST by 8 concurrent aiohttp clients,
so the server must unload spaces to stay within its descriptor budget. Every answer must
be a success: the run fails on the first error.

A separate process recalls from the hot space, one request at a time, throughout; its
latencies are split into before / during / after the churn (P50, P99, overhead of
"during" and "after" against "before"). Descriptors, threads and loaded spaces of the
server are sampled from /proc and /health during the churn.

Issue 11 target: no error, and the hot space's recall P99 unchanged within 20 %.
(On a 2-core machine the churn itself competes with the hot space for the CPU, so
"during" also measures that competition; "after" is the like-for-like comparison.)
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    RESULTS,
    dataset,
    exit_on_sigterm,
    latency_summary,
    overhead_pct,
    rmtree,
    show,
    stamp,
    tmpdir,
)
from benchlib import write_json as _write_json

DIM = 64
NOFILE = 1024
API = "/api/v1"


def _probe(url: str, queries: np.ndarray, stop: Any, out: Any) -> None:
    """Child process: sequential recalls on the hot space until ``stop`` is set; sends (t, ms) pairs."""
    import httpx

    samples: list[tuple[float, float]] = []
    with httpx.Client(base_url=url, timeout=30.0, headers={"X-Memory-Space": "hot"}) as client:
        i = 0
        while not stop.is_set():
            body = {"embedding": queries[i % len(queries)].tolist(), "max_results": 10}
            t0 = time.perf_counter()
            r = client.post(f"{API}/memories/recall", json=body)
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                samples.append((time.time(), -1.0))
            else:
                samples.append((time.time(), ms))
            i += 1
            time.sleep(0.01)  # a steady, light probe: ~60-90 recalls/s
    out.send(samples)


async def _churn(url: str, ids: list[str], concurrency: int, errors: list[str]) -> None:
    import aiohttp

    pending = list(reversed(ids))
    vec = [0.1] * DIM

    async def worker(session: aiohttp.ClientSession) -> None:
        while pending and not errors:
            sid = pending.pop()
            h = {"X-Memory-Space": sid}
            async with session.post(f"{url}{API}/spaces", json={"id": sid}) as r:
                if r.status != 201:
                    errors.append(f"create {sid}: {r.status} {(await r.text())[:300]}")
                    return
            memory = {"id": "m1", "content": f"only memory of {sid}", "embedding": vec}
            async with session.post(f"{url}{API}/memories/remember", headers=h, json=memory) as r:
                if r.status != 201:
                    errors.append(f"remember {sid}: {r.status} {(await r.text())[:300]}")
                    return
            async with session.get(f"{url}{API}/memories/m1", headers=h) as r:
                if r.status != 200 or (await r.json())["content"] != f"only memory of {sid}":
                    errors.append(f"get {sid}: {r.status} {(await r.text())[:300]}")
                    return

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def _sample(pid: int, url: str) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {"fds": len(os.listdir(f"/proc/{pid}/fd")),
                           "threads": len(os.listdir(f"/proc/{pid}/task"))}
    try:
        h = httpx.get(f"{url}/health", timeout=10).json()
        out["spaces_loaded"] = h["spaces_loaded"]
        out["status"] = h["status"]
    except (httpx.HTTPError, ValueError, KeyError):
        out["status"] = "unreachable"
    return out


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--spaces", type=int,
                    help="spaces to create, write and read (default 10,000; quick 1,000)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default=str(RESULTS / "spaces.json"))
    args = ap.parse_args()
    n = args.spaces or (1000 if args.quick else 10_000)

    import httpx

    from engram.testing import EngramProcess

    root = tmpdir("engram-spaces-")
    results: dict[str, Any] = {**stamp(args.quick), "spaces": n, "nofile": NOFILE,
                               "concurrency": args.concurrency}
    srv = EngramProcess.start(root, spaces=["hot"], nofile=NOFILE, settings={"embedder": "none"}, timeout=120)
    probe = None
    try:
        hot = dataset(2000, DIM, 7)
        with httpx.Client(base_url=srv.http_url, timeout=60.0) as client:
            for j in range(len(hot)):
                client.post(f"{API}/memories/remember", headers={"X-Memory-Space": "hot"},
                            json={"id": f"h{j}", "content": f"hot memory {j}",
                                  "embedding": hot[j].tolist()}).raise_for_status()
            health = client.get("/health").json()
        results["open_files_at_start"] = health.get("open_files")
        show("budget", health.get("open_files"))

        queries = dataset(200, DIM, 11)
        stop = mp.Event()
        recv, send = mp.Pipe(duplex=False)
        probe = mp.Process(target=_probe, args=(srv.http_url, queries, stop, send), daemon=True)
        probe.start()
        time.sleep(8.0)  # before
        t_before_end = time.time()

        ids = [f"tenant-{i:05d}" for i in range(n)]
        errors: list[str] = []
        samples: list[dict[str, Any]] = []

        async def churn_and_sample() -> None:
            task = asyncio.create_task(_churn(srv.http_url, ids, args.concurrency, errors))
            while not task.done():
                await asyncio.sleep(2.0)
                samples.append(await asyncio.to_thread(_sample, srv.pid, srv.http_url))
            await task

        t0 = time.perf_counter()
        asyncio.run(churn_and_sample())
        churn_s = time.perf_counter() - t0
        t_during_end = time.time()
        time.sleep(8.0)  # after
        stop.set()
        probe_samples: list[tuple[float, float]] = recv.recv()
        probe.join(30)

        def phase(lo: float, hi: float) -> dict[str, Any]:
            ms = [m for t, m in probe_samples if lo <= t < hi and m >= 0]
            failed = sum(1 for t, m in probe_samples if lo <= t < hi and m < 0)
            return {**latency_summary(ms), "failed": failed}

        before = phase(0, t_before_end)
        during = phase(t_before_end, t_during_end)
        after = phase(t_during_end, float("inf"))
        end = _sample(srv.pid, srv.http_url)
        with httpx.Client(base_url=srv.http_url, timeout=60.0) as client:
            total = client.get("/health").json()["spaces_total"]
            sample_get = client.get(f"{API}/spaces/{ids[0]}")
        results.update({
            "errors": len(errors),
            "first_errors": errors[:5],
            "churn_seconds": round(churn_s, 1),
            "spaces_per_second": round((n if not errors else 0) / churn_s, 1),
            "spaces_total_after": total,
            "unloaded_space_described": sample_get.status_code == 200,
            "max_fds": max((s["fds"] for s in samples), default=None),
            "max_threads": max((s["threads"] for s in samples), default=None),
            "max_spaces_loaded": max((s.get("spaces_loaded", 0) for s in samples), default=None),
            "health_not_ok_samples": sum(1 for s in samples if s.get("status") != "ok"),
            "end": end,
            "hot_recall": {"before": before, "during": during, "after": after,
                           "p99_during_vs_before_pct": overhead_pct(during["p99_ms"], before["p99_ms"]),
                           "p99_after_vs_before_pct": overhead_pct(after["p99_ms"], before["p99_ms"])},
            "rss_bytes_end": _rss(srv.pid),
        })
        for key in ("errors", "churn_seconds", "spaces_per_second", "max_fds", "max_threads",
                    "max_spaces_loaded", "hot_recall"):
            show(key, results[key])
    finally:
        if probe is not None and probe.is_alive():
            probe.kill()
        srv.kill()
        rmtree(root)
    _write_json(args.out, results)
    if results["errors"]:
        raise SystemExit(f"{results['errors']} error(s); first: {results['first_errors'][:1]}")


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


if __name__ == "__main__":
    main()
