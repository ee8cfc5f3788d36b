#!/usr/bin/env python3
"""Scale and crash recovery through a real server process: prints figures and writes JSON.

    python bench/scale.py [--quick] [--sizes 10000,100000] [--with-1m] [--out bench/results/scale.json]

For each size N (one space, 768 dimensions; the optional 1M case uses 128 so it
fits the time budget, and says so):

1. N memories are stored durably in-process (32 concurrent writers) and the
   HNSW index is allowed to catch up, then the engine is closed (which
   checkpoints the index), as a server that had been running would leave it.
2. A real ``engram start`` process opens that data root. Measured: start until
   ``/health/alive``, the first recall (the space loads lazily, so this is the
   space open: SQLite recovery, vectors, index checkpoint), end-to-end recall
   P50/P99 over HTTP (aiohttp, one client) and recall@10 against exact cosine
   search, and the server's resident memory per stored memory.
3. Crash: 32 HTTP writers keep remembering new memories; the server is killed
   with SIGKILL mid-stream. A new process is started on the same root and timed
   until alive and until the space answers a recall again; every acknowledged
   write is then checked to be present.

The in-process engine figures at 10k/100k (exact and indexed vector search) come
from bench/engine.py; this script measures what a client of the server sees.
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
    ServerProcess,
    dataset,
    exact_topk,
    exit_on_sigterm,
    latency_summary,
    make_service,
    queries_near,
    recall_at_k,
    remember_vectors,
    rmtree,
    rss_bytes,
    show,
    stamp,
    tmpdir,
    wait_index_ready,
    write_json,
)

SPACE = "scale"


def _ids(result: dict[str, Any]) -> list[str]:
    mems = result.get("memories") or {}
    items = [*mems.get("vivid", []), *mems.get("associated", [])]
    items.sort(key=lambda it: -float(it.get("score", 0.0)))
    return [str((it.get("memory") or it).get("id")) for it in items]


async def _recall(session: Any, url: str, vec: np.ndarray, k: int = 10) -> dict[str, Any]:
    async with session.post(
        url + "/api/v1/memories/recall",
        json={"embedding": vec.tolist(), "max_results": k},
        headers={"X-Memory-Space": SPACE},
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"recall answered {resp.status}: {str(body)[:300]}")
        return body


async def _recall_until_ok(url: str, vec: np.ndarray, timeout: float) -> float:
    import aiohttp

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await _recall(session, url, vec)
                return time.perf_counter() - t0
            except (aiohttp.ClientError, RuntimeError):
                if time.perf_counter() - t0 > timeout:
                    raise
                await asyncio.sleep(0.05)


async def _measure_recall(url: str, queries: np.ndarray) -> tuple[dict[str, Any], list[list[int]]]:
    import aiohttp

    lat: list[float] = []
    found: list[list[int]] = []
    async with aiohttp.ClientSession() as session:
        for q in queries[:5]:
            await _recall(session, url, q)
        for q in queries:
            t0 = time.perf_counter()
            body = await _recall(session, url, q)
            lat.append((time.perf_counter() - t0) * 1000)
            found.append([int(i[1:]) for i in _ids(body) if i.startswith("m") and i[1:].isdigit()])
    return latency_summary(lat), found


async def _write_until_killed(
    url: str, dim: int, srv: Any, writers: int, kill_after: float
) -> tuple[list[str], int]:
    """32 writers remember new memories; SIGKILL the server after ``kill_after`` s. Returns acked ids."""
    import aiohttp

    acked: list[str] = []
    attempted = 0
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((512, dim)).astype(np.float32)
    stop = False

    async def writer(w: int) -> None:
        nonlocal attempted
        n = 0
        async with aiohttp.ClientSession() as session:
            while not stop:
                mid = f"k{w}-{n}"
                n += 1
                attempted += 1
                body = {
                    "id": mid,
                    "content": f"written before the crash {mid}",
                    "embedding": vecs[(w * 31 + n) % 512].tolist(),
                }
                try:
                    async with session.post(
                        url + "/api/v1/memories/remember", json=body, headers={"X-Memory-Space": SPACE}
                    ) as resp:
                        if resp.status == 201:
                            acked.append(mid)
                        await resp.read()
                except (TimeoutError, aiohttp.ClientError, ConnectionError):
                    return

    tasks = [asyncio.create_task(writer(w)) for w in range(writers)]
    await asyncio.sleep(kill_after)
    srv.kill()  # SIGKILL while requests are in flight
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return acked, attempted


async def _check_present(url: str, ids: list[str]) -> int:
    import aiohttp

    missing = 0
    async with aiohttp.ClientSession() as session:
        for mid in ids:
            async with session.get(f"{url}/api/v1/memories/{mid}", headers={"X-Memory-Space": SPACE}) as resp:
                await resp.read()
                if resp.status != 200:
                    missing += 1
    return missing


def _space_count(url: str) -> int | None:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/v1/spaces/{SPACE}", timeout=30) as resp:
            return int(json.loads(resp.read()).get("memory_count"))
    except (OSError, ValueError, TypeError):
        return None


def run_size(root: Path, n: int, dim: int, queries: int, index_timeout: float, crash: bool) -> dict[str, Any]:
    data_dir = root / f"data-{n}"
    out: dict[str, Any] = {"memories": n, "dim": dim}
    vecs = dataset(n, dim, 21)
    # 1. fill in-process (durable), let the index catch up, close (checkpoints the index)
    svc = make_service(data_dir, [SPACE])
    t_ingest = asyncio.run(remember_vectors(svc, SPACE, vecs, 32))
    out["ingest_per_s_inprocess"] = round(n / t_ingest)
    t0 = time.perf_counter()
    ready = wait_index_ready(svc, SPACE, index_timeout)
    out["index_catch_up_s"] = round(time.perf_counter() - t0, 1) if ready is not None else None
    out["search"] = "indexed" if n >= svc.settings.exact_search_max else "exact"
    svc.close()

    qs = queries_near(vecs, queries, 22)
    truth = exact_topk(vecs, qs, 10)
    del vecs
    # 2. a real server on that root
    t0 = time.perf_counter()
    srv = ServerProcess(root / f"srv-{n}", data_dir, timeout=120)
    out["start_to_alive_s"] = round(srv.seconds, 3)
    try:
        rss_idle = rss_bytes(srv.pid)
        out["space_open_first_recall_s"] = round(asyncio.run(_recall_until_ok(srv.url, qs[0], 600)), 3)
        lat, found = asyncio.run(_measure_recall(srv.url, qs))
        out["recall_http"] = lat
        out["recall_at_10"] = round(recall_at_k(found, truth), 4)
        rss_loaded = rss_bytes(srv.pid)
        out["server_rss_mb"] = round(rss_loaded / 2**20, 1)
        out["rss_bytes_per_memory"] = round((rss_loaded - rss_idle) / n)
        if not crash:
            srv.stop()
            return out
        # 3. SIGKILL with writes in flight, then recover
        acked, attempted = asyncio.run(_write_until_killed(srv.url, dim, srv, 32, 2.0))
        out["crash"] = {"writes_attempted": attempted, "writes_acknowledged": len(acked)}
        srv = srv.restart(timeout=300)
        alive = srv.seconds
        first = asyncio.run(_recall_until_ok(srv.url, qs[0], 600))
        missing = asyncio.run(_check_present(srv.url, acked))
        count = _space_count(srv.url)
        out["crash"].update(
            {
                "restart_to_alive_s": round(alive, 3),
                "then_first_recall_s": round(first, 3),
                "recovery_total_s": round(alive + first, 3),
                "acknowledged_missing": missing,
                "memories_after": count,
                "expected_at_least": n + len(acked),
            }
        )
    finally:
        if srv.running:
            srv.stop()
        rmtree(data_dir)
    return out


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--sizes", help="comma-separated sizes at 768-d (default 10000,100000; quick 10000; 'none')"
    )
    ap.add_argument("--with-1m", action="store_true", help="add 1,000,000 memories (slow; see --dim-1m)")
    ap.add_argument(
        "--dim-1m", type=int, default=128, help="dimension of the 1M case (768 needs ~20 min, ~6 GB)"
    )
    ap.add_argument("--queries", type=int, help="queries per size (default 500; quick 200)")
    ap.add_argument("--index-timeout", type=float, default=420.0)
    ap.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = ap.parse_args()
    if args.sizes == "none":
        sizes: list[int] = []
    elif args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [10_000] if args.quick else [10_000, 100_000]
    queries = args.queries or (200 if args.quick else 500)
    cases: list[tuple[int, int]] = [(n, DIM) for n in sizes]
    if args.with_1m:
        cases.append((1_000_000, args.dim_1m))
    # the crash/recovery run is done once, on the largest 768-d case
    crash_case = max((c for c in cases if c[1] == DIM), default=None)
    root = tmpdir("engram-scale-")
    results: dict[str, Any] = {**stamp(args.quick), "benchmark": "scale", "sizes": {}}
    try:
        for n, dim in cases:
            key = f"{n}x{dim}"
            crash = (n, dim) == crash_case
            timeout = args.index_timeout if n < 1_000_000 else max(args.index_timeout, 2400.0)
            results["sizes"][key] = run_size(root, n, dim, queries, timeout, crash)
            show(f"scale {key}", results["sizes"][key])
    finally:
        rmtree(root)
    if args.with_1m and args.dim_1m != DIM:
        results["note_1m"] = (
            f"1M uses {args.dim_1m} dimensions to fit the time budget "
            "(768-d: ~20 min of ingest and HNSW build)."
        )
    write_json(args.out, results)


if __name__ == "__main__":
    main()
