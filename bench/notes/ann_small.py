#!/usr/bin/env python3
"""HNSW against the exact scan for a small space (issue 15, Round 6): CPU per search and recall.

    python bench/notes/ann_small.py [--memories 20000] [--dim 384] [--queries 400]

Builds, in this process, a ``VectorSet`` and an ``AnnIndex`` over ``--memories`` vectors with
the server's default settings (except ``exact_search_max``, set low so the graph is built),
for two data sets: bench.benchlib's clustered unit vectors and uniform random unit vectors.
Queries: stored vectors (as bench/recall_scaling.py asks) and perturbed copies
(``queries_near``). For each: thread CPU per search of the 100 candidates a
``rank: "similarity"`` recall asks for, exact (``VectorSet.search_exact``) and through the
graph (``AnnIndex.search``), and recall@10 / recall@100 of the graph's answer against the
exact one (both float32-rescored as the recall path does). Prints JSON; notes ``uptime``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from benchlib import dataset, queries_near  # noqa: E402

from engram.index.ann import AnnIndex  # noqa: E402
from engram.index.vector import VectorSet  # noqa: E402
from engram.settings import Settings  # noqa: E402


def rescore(data: np.ndarray, q: np.ndarray, found: list[tuple[int, float]], k: int) -> list[int]:
    keys = [key for key, _ in found]
    sims = data[np.asarray(keys) - 1] @ q
    order = sorted(zip(keys, sims.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
    return [key for key, _ in order[:k]]


def run(name: str, data: np.ndarray, queries: np.ndarray, settings: Settings, wide: int) -> dict[str, object]:
    vs = VectorSet(data.shape[1], settings.vector_float32_max)
    vs.add_many(np.arange(1, len(data) + 1), data, np.arange(1, len(data) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        ann = AnnIndex(vs, Path(tmp), settings)
        vs.ann = ann
        t0 = time.perf_counter()
        ann.start()
        ann.wait_caught_up(600)
        build = time.perf_counter() - t0
        assert ann.ready, ann.state()
        out: dict[str, object] = {"data": name, "build_seconds": round(build, 2)}
        exact_cpu = ann_cpu = 0.0
        r10 = r100 = 0.0
        for q in queries:
            c0 = time.thread_time()
            ex = vs.search_exact(q, wide)
            c1 = time.thread_time()
            an = ann.search(q, wide)
            c2 = time.thread_time()
            exact_cpu += c1 - c0
            ann_cpu += c2 - c1
            e10, a10 = set(rescore(data, q, ex, 10)), set(rescore(data, q, an, 10))
            r10 += len(e10 & a10) / 10
            r100 += len({k for k, _ in ex} & {k for k, _ in an}) / len(ex)
        n = len(queries)
        out.update(exact_ms=round(1000 * exact_cpu / n, 3), ann_ms=round(1000 * ann_cpu / n, 3),
                   recall_at_10=round(r10 / n, 4), overlap_at_100=round(r100 / n, 4))
        ann.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memories", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--ef", type=int, default=0, help="hnsw_expansion_search (0: the default)")
    ap.add_argument("--wide", type=int, default=100)
    args = ap.parse_args()
    kw = {"exact_search_max": 1000}
    if args.ef:
        kw["hnsw_expansion_search"] = args.ef
    settings = Settings(**kw)
    rng = np.random.default_rng(5)
    clustered = dataset(args.memories, args.dim, 21)
    uniform = rng.standard_normal((args.memories, args.dim)).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    results = [{"load": os.getloadavg(), "settings": kw, "wide": args.wide}]
    for name, data in (("clustered", clustered), ("uniform", uniform)):
        stored = data[np.random.default_rng(22).integers(0, len(data), args.queries)]
        near = queries_near(data, args.queries, 23)
        for qname, qs in (("stored", stored), ("near", near)):
            results.append({**run(name, data, qs, settings, args.wide), "queries": qname})
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
