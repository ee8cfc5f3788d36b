#!/usr/bin/env python3
"""Cost of the durable event log on the write path (in-process, no transport).

    python bench/eventlog.py [--n 20000] [--out bench/results/eventlog.json]

Durable remember throughput (32 concurrent writers, 384-d vectors, fsync) on this tree; run the
same script with another checkout's interpreter (e.g. main's ``.venv/bin/python``) for the
figure without the log. Also times one resume replay of the whole log (SSE/gRPC read path).
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
from benchlib import RESULTS, dataset, make_service, remember_vectors, rmtree, tmpdir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "eventlog.json"))
    args = ap.parse_args()
    import engram

    vecs = dataset(args.n, 384, seed=7).astype(np.float32)
    rates = []
    replay_s = None
    logged = 0
    for run in range(args.runs):
        root = tmpdir("eventlog-bench-")
        svc = make_service(root, ["bench"], embedder="none")
        try:
            secs = asyncio.run(remember_vectors(svc, "bench", vecs, writers=32, id_prefix=f"r{run}-"))
            rates.append(args.n / secs)
            space = svc.space("bench")
            conn = space.store.reader()
            has_log = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() is not None
            if has_log:
                from engram.storage.eventlog import read_after

                t0 = time.perf_counter()
                pos: tuple[int, int] = (0, -1)
                logged = 0
                while True:
                    events, nxt, _ = read_after(conn, pos, 256, None)
                    logged += len(events)
                    if nxt == pos:
                        break
                    pos = nxt
                replay_s = time.perf_counter() - t0
        finally:
            svc.close()
            rmtree(root)
    out = {
        "engram_src": str(Path(engram.__file__).parent),
        "n": args.n, "writers": 32, "dim": 384,
        "remember_per_s_runs": [round(r) for r in rates],
        "remember_per_s_median": round(sorted(rates)[len(rates) // 2]),
        "event_log": replay_s is not None,
        "replay_events": logged,
        "replay_events_per_s": round(logged / replay_s) if replay_s else None,
    }
    print(json.dumps(out, indent=2))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
