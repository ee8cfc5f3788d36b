#!/usr/bin/env python3
"""Engine benchmark (in-process, no transport): prints figures and writes JSON.

    python bench/engine.py [--quick] [--out bench/results/engine.json]

Measures (issue 2 targets in brackets):
  * durable remember throughput, 32 concurrent writers          [>= 20,000/s]
  * recall P50/P99 at 10k and 100k x 768, exact and indexed,
    with recall@10 of the index against exact search           [indexed P99 <= 5 ms, exact <= 30 ms, r@10 >= 0.95]
  * resident memory per stored 768-d memory                     [<= 5 KB]
  * time to reopen a space of 100k memories                     [< 5 s]
  * recall P50 with 1, 5 and 10 loaded spaces                   [<= 5 % slower with 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from engram.core.models import Cue, MemoryInput  # noqa: E402
from engram.service import EngramService  # noqa: E402
from engram.settings import load_settings  # noqa: E402

DIM = 768


def clustered(n: int, dim: int, seed: int, clusters: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    data = centres[labels] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return data


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) if values else float("nan")


def make_service(data_dir: Path, spaces: tuple[str, ...], **overrides: Any) -> EngramService:
    settings = load_settings(overrides={"data_dir": data_dir, "bootstrap_spaces": spaces, **overrides}, use_env=False)
    return EngramService(settings)


async def _remember_all(svc: EngramService, space: str, vecs: np.ndarray, writers: int, offset: int = 0) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(vecs)):
        queue.put_nowait(i)
    items = [MemoryInput(content=f"memory {offset + i} about topic {(offset + i) % 97}", embedding=vecs[i].tolist())
             for i in range(len(vecs))]

    async def writer() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await svc.remember(space, items[i])

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - t0


def bench_write(tmp: Path, n: int) -> dict[str, Any]:
    svc = make_service(tmp / "write", ("bench-w",))
    vecs = clustered(n, DIM, 1)
    elapsed = asyncio.run(_remember_all(svc, "bench-w", vecs, 32))
    store = svc.space("bench-w").store
    assert store is not None
    out = {"memories": n, "writers": 32, "seconds": round(elapsed, 3), "per_second": round(n / elapsed),
           "commits": store.commits, "mean_batch": round(store.ops_committed / max(1, store.commits), 1),
           "durability": "fsync"}
    svc.close()
    return out


def wait_index(svc: EngramService, space: str, timeout: float) -> float:
    sp = svc.space(space)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if sp.ann is not None and sp.ann.ready and sp.ann.state().get("pending", 0) == 0:
            return time.perf_counter() - t0
        time.sleep(0.5)
    return float("nan")


def bench_recall(svc: EngramService, space: str, vecs: np.ndarray, queries: int, seed: int) -> dict[str, Any]:
    sp = svc.space(space)
    rng = np.random.default_rng(seed)
    qs = vecs[rng.integers(0, len(vecs), queries)] + 0.3 * rng.standard_normal((queries, DIM)).astype(np.float32)
    qn = qs / np.linalg.norm(qs, axis=1, keepdims=True)
    out: dict[str, Any] = {}
    exact_top = [[k for k, _ in sp.vectors.search_exact(q, 10)] for q in qn]
    # engine-level vector search (the part the index changes) ...
    for label, exact in (("exact", True), ("indexed", False)):
        if not exact and not (sp.ann is not None and sp.ann.ready):
            out[label] = {"skipped": "index not ready"}
            continue
        lat, hits = [], 0
        for i, q in enumerate(qn):
            t0 = time.perf_counter()
            res = sp.vectors.search(q, 10, exact=exact)
            lat.append((time.perf_counter() - t0) * 1000)
            hits += len({k for k, _ in res} & set(exact_top[i]))
        out[label] = {"p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
                      "recall_at_10": round(hits / (10 * len(qn)), 4)}
    # ... and the full recall() path (fetch rows, score, bucket) on top of it.
    lat = []
    for q in qs[: min(200, queries)]:
        cue = Cue(embedding=q.tolist(), max_results=10)
        t0 = time.perf_counter()
        asyncio.run(svc.recall(space, cue))
        lat.append((time.perf_counter() - t0) * 1000)
    out["full_recall"] = {"p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
                          "index": "indexed" if sp.ann is not None and sp.ann.ready else "exact"}
    return out


def bench_scale(tmp: Path, n: int, queries: int, index_timeout: float) -> dict[str, Any]:
    data_dir = tmp / f"scale{n}"
    svc = make_service(data_dir, ("s",))
    vecs = clustered(n, DIM, 2)
    t_ingest = asyncio.run(_remember_all(svc, "s", vecs, 32))
    index_wait = wait_index(svc, "s", index_timeout) if n >= svc.settings.exact_search_max else 0.0
    res = {"memories": n, "ingest_per_second": round(n / t_ingest), "index_build_wait_s": round(index_wait, 1)}
    res.update(bench_recall(svc, "s", vecs, queries, 3))
    svc.close()
    res["reopen"] = measure_reopen(data_dir, "s", n)
    return res


REOPEN_CHILD = r"""
import json, os, sys, time, resource
sys.path.insert(0, sys.argv[3])
import psutil
proc = psutil.Process()
base = proc.memory_info().rss
from engram.settings import load_settings
from engram.service import EngramService
import numpy, usearch.index  # imported before the baseline is taken
base = proc.memory_info().rss
t0 = time.perf_counter()
svc = EngramService(load_settings(overrides={"data_dir": sys.argv[1]}, use_env=False))
sp = svc.space(sys.argv[2])
opened = time.perf_counter() - t0
deadline = time.time() + 600
while sp.ann is not None and not (sp.ann.ready and sp.ann.state().get("pending", 0) == 0) and len(sp.vectors) >= svc.settings.exact_search_max and time.time() < deadline:
    time.sleep(0.2)
ready = time.perf_counter() - t0
rss = proc.memory_info().rss
print(json.dumps({"open_s": opened, "index_ready_s": ready, "rss_delta": rss - base, "count": len(sp.vectors)}))
svc.close()
"""


def measure_reopen(data_dir: Path, space: str, n: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", REOPEN_CHILD, str(data_dir), space, str(ROOT / "src")],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"open_seconds": round(data["open_s"], 3), "index_ready_seconds": round(data["index_ready_s"], 3),
            "rss_bytes_per_memory": round(data["rss_delta"] / max(1, n)), "vectors": data["count"]}


def bench_spaces(tmp: Path, total: int, queries: int) -> dict[str, Any]:
    """Same total data split over 1, 5, 10 loaded spaces; recall P50 in the first."""
    out: dict[str, Any] = {}
    vecs = clustered(total, DIM, 4)
    for k in (1, 5, 10):
        names = tuple(f"space-{i:02d}" for i in range(k))
        svc = make_service(tmp / f"spaces{k}", names)
        per = total // k
        for i, name in enumerate(names):
            asyncio.run(_remember_all(svc, name, vecs[i * per:(i + 1) * per], 32))
        lat = []
        rng = np.random.default_rng(5)
        for j in range(queries):
            name = names[j % k]
            q = vecs[rng.integers(0, per)] + 0.3 * rng.standard_normal(DIM).astype(np.float32)
            cue = Cue(embedding=q.tolist(), max_results=10)
            t0 = time.perf_counter()
            asyncio.run(svc.recall(name, cue))
            lat.append((time.perf_counter() - t0) * 1000)
        out[str(k)] = {"p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3)}
        svc.close()
    base = out["1"]["p50_ms"]
    for k in ("5", "10"):
        out[k]["overhead_pct_vs_1"] = round(100 * (out[k]["p50_ms"] - base) / base, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="engram-bench-", dir=os.environ.get("ENGRAM_BENCH_TMP")))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
    }
    try:
        n_write = 10_000 if args.quick else 30_000
        results["durable_remember"] = bench_write(tmp, n_write)
        print("durable remember:", results["durable_remember"], flush=True)
        sizes = (10_000,) if args.quick else (10_000, 100_000)
        results["scale"] = {}
        for n in sizes:
            results["scale"][str(n)] = bench_scale(tmp, n, 200 if args.quick else 500, 600)
            print(f"scale {n}:", results["scale"][str(n)], flush=True)
        results["loaded_spaces"] = bench_spaces(tmp, 10_000 if args.quick else 50_000, 300)
        print("loaded spaces:", results["loaded_spaces"], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
