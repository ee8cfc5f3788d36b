#!/usr/bin/env python3
"""REST ingest of 384-d memories: one per request vs batches of 256, beside Chroma's server.

    python bench/batch.py [--memories 20000] [--single 5000] [--batch 256] [--clients 32]
                          [--no-chroma] [--out bench/results/batch.json]

Starts one ``engram start`` process (fsync durability, group commit, fresh data root) and
ingests memories with client vectors (384-d, unit length, sent as base64 little-endian
float32, the cheap spelling SPEC §9 accepts) into spaces that take client vectors only
(embedder ``none``), each phase into its own fresh space:

* ``single``   POST /api/v1/memories/remember, one memory per request (``--single`` of
               them), ``--clients`` aiohttp workers in flight (the group commit batches
               their fsyncs);
* ``batched``  POST /api/v1/memories/batch, ``--batch`` memories per request (one durable
               commit each), ``--batch-clients`` requests in flight;
* ``chroma_batched`` the same vectors, in the same batches, with the same client and the same
               requests in flight, into Chroma's own server (``chroma run``, chromadb from
               bench/.venv-chroma, installed by bench/peer_chroma.py's ``ensure_chroma_venv``):
               ``add`` with ``--batch`` ids, embeddings (JSON arrays: Chroma takes no other
               spelling) and documents. Side by side in one run: ``batched_over_chroma`` is
               the ratio issue 13 sets at 5x. ``--no-chroma`` skips it.

Bodies are serialised before the clock starts, so the figures are the servers' (parsing,
validation, the durable commit) plus loopback HTTP. Reports memories/s of each and the ratios.
Not a test: client and servers share the machine's cores (the load average is recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

sys.path.append(str(ROOT / "bench"))  # last: bench/http.py and bench/grpc.py must not shadow

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

from engram.testing import EngramProcess  # noqa: E402

DIM = 384
LOAD0 = os.getloadavg()


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    out: np.ndarray = np.round(v / np.linalg.norm(v, axis=1, keepdims=True), 6)
    return out


def b64(vec: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


def item(i: int, vec: np.ndarray) -> dict[str, Any]:
    return {"id": f"m{i}", "content": f"memory {i} about lantern {i % 97}", "embedding": b64(vec)}


def chroma_body(lo: int, hi: int, vecs: np.ndarray) -> bytes:
    return json.dumps({"ids": [f"m{i}" for i in range(lo, hi)], "embeddings": vecs[lo:hi].tolist(),
                       "documents": [f"memory {i} about lantern {i % 97}" for i in range(lo, hi)]}).encode()


def run_chroma(vecs: np.ndarray, batch: int, clients: int, root: Path) -> dict[str, Any]:
    """Chroma's server (``chroma run``) taking the same batches: one collection, cosine HNSW."""
    from peer_chroma import CHROMA_VERSION, ensure_chroma_venv
    from peer_chroma_server import ChromaSide

    chroma_py, _ = ensure_chroma_venv()
    (root / "chroma").mkdir()
    side = ChromaSide(chroma_py.parent / "chroma", root / "chroma" / "data")
    try:
        asyncio.run(side.wait_ready())
        asyncio.run(side.setup(DIM))
        bodies = [chroma_body(lo, min(len(vecs), lo + batch), vecs) for lo in range(0, len(vecs), batch)]
        path = f"{side.prefix}/{side.ids['peer']}/add"
        out = asyncio.run(run_bodies(side.base, path, "", bodies, clients, batch, ok=(200, 201)))
    finally:
        side.stop()
    out["memories"] = len(vecs)
    out["memories_per_second"] = round(len(vecs) / out["seconds"], 1)
    out["chromadb"] = CHROMA_VERSION
    return out


async def run_bodies(url: str, path: str, space: str, bodies: list[bytes], clients: int,
                     per_body: int, ok: tuple[int, ...] = (201,)) -> dict[str, Any]:
    headers = {"content-type": "application/json", **({"X-Memory-Space": space} if space else {})}
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
                if resp.status not in ok:
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
    ap.add_argument("--memories", type=int, default=20_000, help="memories of the batched phases")
    ap.add_argument("--single", type=int, default=5_000, help="memories of the single phase")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--clients", type=int, default=32, help="single-item requests in flight")
    ap.add_argument("--batch-clients", type=int, default=2, help="batch requests in flight (both servers)")
    ap.add_argument("--no-chroma", action="store_true", help="skip Chroma's server")
    ap.add_argument("--quick", action="store_true", help="a smoke run (4,096 memories, 1,024 single)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch.json"))
    args = ap.parse_args()
    n = 4096 if args.quick else args.memories
    n_single = min(n, 1024 if args.quick else args.single)
    vecs = vectors(n, 7)
    items = [item(i, vecs[i]) for i in range(n)]
    singles = [json.dumps(it).encode() for it in items[:n_single]]
    batches = [json.dumps({"memories": items[i : i + args.batch]}).encode() for i in range(0, n, args.batch)]
    with tempfile.TemporaryDirectory(prefix="engram-bench-batch-") as tmp:
        srv = EngramProcess.start(Path(tmp) / "engram", (), {"embedder": "none", "durability": "fsync"})
        try:
            import httpx

            with httpx.Client(base_url=srv.http_url, timeout=30) as c:
                for space in ("single", "batched"):
                    assert c.post("/api/v1/spaces", json={"id": space}).status_code == 201
            single = asyncio.run(run_bodies(srv.http_url, "/api/v1/memories/remember", "single", singles,
                                            args.clients, 1))
            single["load_after"] = os.getloadavg()[0]
            batched = asyncio.run(run_bodies(srv.http_url, "/api/v1/memories/batch", "batched", batches,
                                             args.batch_clients, args.batch))
            batched["memories"] = n
            batched["memories_per_second"] = round(n / batched["seconds"], 1)
            batched["load_after"] = os.getloadavg()[0]
        finally:
            srv.stop()
        chroma = None if args.no_chroma else run_chroma(vecs, args.batch, args.batch_clients, Path(tmp))
        if chroma is not None:
            chroma["load_after"] = os.getloadavg()[0]
    ratio = batched["memories_per_second"] / single["memories_per_second"]
    result: dict[str, Any] = {
        "benchmark": "batch", "dimension": DIM, "memories": n, "batch_size": args.batch,
        "embedding_encoding": "base64 little-endian float32 (Engram); JSON arrays (Chroma)",
        "single": single, "batched": batched, "batched_over_single": round(ratio, 2),
        "durability": "fsync", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_at_start": LOAD0, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"REST ingest of {DIM}-d memories (fsync, base64 vectors):")
    print(f"  single  ({args.clients} clients, 1 per request, {n_single}):   "
          f"{single['memories_per_second']:>9.0f} memories/s  (P50 {single['request_p50_ms']} ms)")
    print(f"  batched ({args.batch_clients} clients, {args.batch} per request, {n}): "
          f"{batched['memories_per_second']:>9.0f} memories/s  (P50 {batched['request_p50_ms']} ms a batch)")
    print(f"  batched / single: {ratio:.1f}x")
    if chroma is not None:
        over = batched["memories_per_second"] / chroma["memories_per_second"]
        result["chroma_batched"] = chroma
        result["batched_over_chroma"] = round(over, 2)
        result["target_batched_at_least_5x_chroma"] = bool(over >= 5.0)
        print(f"  chroma run batched ({args.batch_clients} clients, {args.batch} per add): "
              f"{chroma['memories_per_second']:>9.0f} memories/s  "
              f"(P50 {chroma['request_p50_ms']} ms a batch)")
        print(f"  Engram batched / Chroma batched: {over:.2f}x (target 5x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    failed = single["failures"] or batched["failures"] or (chroma is not None and chroma["failures"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
