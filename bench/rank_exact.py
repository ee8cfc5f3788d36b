#!/usr/bin/env python3
"""rank "similarity" against exact float32 cosine search (SPEC §9: recall@10 >= 0.99).

20k x 384 clustered unit vectors (near-ties on purpose: tight clusters), stored as client
embeddings in one space, in-process; 300 queries drawn near the clusters. For each query,
Engram's ``recall(rank="similarity", max_results=10)`` is compared with an exact numpy
float32 top-10 over the same vectors. Also reported: the default rank ("cognitive") against
the same exact answer, which is *not* meant to equal it (it orders by more than cosine).

    python3 bench/rank_exact.py [--quick] [--data clustered|random] [--out FILE]

``--data random``: uniform random unit vectors instead (no clusters: the neighbours of a
query are barely closer than the rest, the hard case for an approximate first pass), with
queries that are stored vectors perturbed by noise.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import RESULTS, machine_info, versions, write_json

from engram.cognition.recall import recall
from engram.core.models import Cue, MemoryInput, RankMode
from engram.service import EngramService
from engram.settings import load_settings


def clustered(n: int, dim: int, clusters: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--data", choices=("clustered", "random"), default="clustered")
    args = ap.parse_args()
    n, queries = (4_000, 100) if args.quick else (20_000, 300)
    dim, k = 384, 10
    rng = np.random.default_rng(7)
    if args.data == "random":
        data = rng.standard_normal((n, dim)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        qr = np.random.default_rng(8)
        qs = data[qr.integers(0, n, queries)] + 0.02 * qr.standard_normal((queries, dim)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    else:
        data = clustered(n, dim, clusters=50, spread=0.15, rng=rng)
        qs = clustered(queries, dim, clusters=50, spread=0.15, rng=np.random.default_rng(8))
    with tempfile.TemporaryDirectory() as tmp:
        svc = EngramService(load_settings(overrides={
            "data_dir": tmp, "embedder": "none", "bootstrap_spaces": ("exact",),
        }, use_env=False))
        space = svc.space("exact")
        t0 = time.perf_counter()
        for i in range(n):
            space.remember(MemoryInput(id=f"v{i}", content="", embedding=data[i].tolist()))
        load_s = time.perf_counter() - t0
        out: dict[str, list[float]] = {"similarity": [], "cognitive": []}
        lat: dict[str, list[float]] = {"similarity": [], "cognitive": []}
        for q in qs:
            exact = {f"v{i}" for i in np.argsort(-(data @ q), kind="stable")[:k]}
            for rank in (RankMode.similarity, RankMode.cognitive):
                t = time.perf_counter()
                res = recall(space, Cue(embedding=q.tolist(), rank=rank, max_results=k))
                lat[rank.value].append((time.perf_counter() - t) * 1000)
                got = {it.memory.id for it in res.memories.vivid + res.memories.associated}
                out[rank.value].append(len(got & exact) / k)
        svc.close()
    result = {
        "benchmark": "rank_exact", "quick": args.quick, "machine": machine_info(), "versions": versions(),
        "params": {"data": args.data, "vectors": n, "dim": dim, "clusters": 50, "spread": 0.15,
                   "queries": queries, "k": k},
        "load_seconds": round(load_s, 2),
        "recall_at_10_vs_exact_float32": {r: round(float(np.mean(v)), 4) for r, v in out.items()},
        "min_recall_at_10": {r: round(float(np.min(v)), 4) for r, v in out.items()},
        "latency_ms_p50": {r: round(float(np.percentile(v, 50)), 3) for r, v in lat.items()},
    }
    name = "rank_exact.json" if args.data == "clustered" else "rank_exact_random.json"
    path = args.out or (RESULTS / ("quick" if args.quick else "") / name)
    write_json(path, result)
    got = result["recall_at_10_vs_exact_float32"]
    print(f"rank similarity recall@10 vs exact float32: {got['similarity']} "
          f"(min {result['min_recall_at_10']['similarity']}); cognitive: {got['cognitive']}; "
          f"p50 ms {result['latency_ms_p50']}")


if __name__ == "__main__":
    main()
