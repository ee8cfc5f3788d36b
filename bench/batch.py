#!/usr/bin/env python3
"""REST ingest of 384-d memories: one per request vs batches of 256 (POST /api/v1/memories/batch).

    python bench/batch.py [--memories 20000] [--batch 256] [--clients 8] [--out bench/results/batch.json]

Starts one ``engram start`` process (fsync durability, group commit, fresh data root) and
ingests ``--memories`` memories with client vectors (384-d, unit length) into a space that
takes client vectors only (embedder ``none``), twice, each into its own fresh space:

* ``single``   POST /api/v1/memories/remember, one memory per request, ``--clients`` aiohttp
               workers in flight (the server's group commit batches their fsyncs);
* ``batched``  POST /api/v1/memories/batch, ``--batch`` memories per request (one durable
               commit each), ``--batch-clients`` requests in flight.

Bodies are serialised before the clock starts, so the figures are the server's (parsing,
validation, the durable commit) plus loopback HTTP. Reports memories/s of each and the ratio.
Not a test: client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "src"))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

from engram.testing import EngramProcess  # noqa: E402

DIM = 384


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    out: np.ndarray = np.round(v / np.linalg.norm(v, axis=1, keepdims=True), 6)
    return out


def item(i: int, vec: np.ndarray) -> dict[str, Any]:
    return {"id": f"m{i}", "content": f"memory {i} about lantern {i % 97}", "embedding": vec.tolist()}


async def run_bodies(url: str, path: str, space: str, bodies: list[bytes], clients: int,
                     per_body: int) -> dict[str, Any]:
    headers = {"X-Memory-Space": space, "content-type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            async with session.post(url + path, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 201:
                    failures += 1
            latencies.append(time.perf_counter() - t0)

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(bodies), "memories": len(bodies) * per_body, "seconds": round(elapsed, 3),
        "memories_per_second": round(len(bodies) * per_body / elapsed, 1), "failures": failures,
        "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "request_p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 2),
        "clients": clients,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--clients", type=int, default=8, help="single-item requests in flight")
    ap.add_argument("--batch-clients", type=int, default=2, help="batch requests in flight")
    ap.add_argument("--quick", action="store_true", help="a smoke run (4,096 memories)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch.json"))
    args = ap.parse_args()
    n = 4096 if args.quick else args.memories
    vecs = vectors(n, 7)
    items = [item(i, vecs[i]) for i in range(n)]
    singles = [json.dumps(it).encode() for it in items]
    batches = [json.dumps({"memories": items[i : i + args.batch]}).encode() for i in range(0, n, args.batch)]
    with tempfile.TemporaryDirectory(prefix="engram-bench-batch-") as tmp:
        srv = EngramProcess.start(Path(tmp), (), {"embedder": "none", "durability": "fsync"})
        try:
            import httpx

            with httpx.Client(base_url=srv.http_url, timeout=30) as c:
                for space in ("single", "batched"):
                    assert c.post("/api/v1/spaces", json={"id": space}).status_code == 201
            single = asyncio.run(run_bodies(srv.http_url, "/api/v1/memories/remember", "single", singles,
                                            args.clients, 1))
            batched = asyncio.run(run_bodies(srv.http_url, "/api/v1/memories/batch", "batched", batches,
                                             args.batch_clients, args.batch))
            batched["memories"] = n
            batched["memories_per_second"] = round(n / batched["seconds"], 1)
        finally:
            srv.stop()
    ratio = batched["memories_per_second"] / single["memories_per_second"]
    result = {
        "benchmark": "batch", "dimension": DIM, "memories": n, "batch_size": args.batch,
        "single": single, "batched": batched, "batched_over_single": round(ratio, 2),
        "durability": "fsync", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"REST ingest of {n} x {DIM}-d memories (fsync):")
    print(f"  single  ({args.clients} clients, 1 per request):   "
          f"{single['memories_per_second']:>9.0f} memories/s  (P50 {single['request_p50_ms']} ms)")
    print(f"  batched ({args.batch_clients} clients, {args.batch} per request): "
          f"{batched['memories_per_second']:>9.0f} memories/s  (P50 {batched['request_p50_ms']} ms a batch)")
    print(f"  batched / single: {ratio:.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if not (single["failures"] or batched["failures"]) else 1


if __name__ == "__main__":
    sys.exit(main())
