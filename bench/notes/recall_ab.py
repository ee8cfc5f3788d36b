#!/usr/bin/env python3
"""Two Engram servers side by side (A: another source tree, B: this one), recall interleaved.

    python bench/notes/recall_ab.py --a-src /tmp/engram-before/src [--memories 20000]
                                    [--seconds 3] [--rounds 3] [--cues embedding,text]
                                    [--transports rest,grpc] [--a-settings K=V,...]

A working tool for bench/notes/recall_profile.md: the machine is shared and its load moves
by the minute, so a before/after comparison is only fair when both run in the same minutes.
Each server gets the same space (bench/recall_scaling.py's data), then the phases (REST,
each cue, 1 and 16 callers) alternate A, B, A, B... for ``--rounds``. ``--a-settings``
gives server A extra settings (a tree that does not know them must not get them).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: bench/http.py must not shadow http

import argparse
import asyncio
import json
import statistics

import numpy as np
import recall_scaling as rs
from benchlib import dataset, rmtree, tmpdir

from engram.testing import EngramProcess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a-src", required=True, type=Path)
    ap.add_argument("--memories", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cues", default="embedding,text")
    ap.add_argument("--transports", default="rest")
    ap.add_argument("--a-settings", default="")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    a_settings = dict(p.split("=", 1) for p in args.a_settings.split(",") if p)
    vecs = dataset(args.memories, 384, 21)
    queries = vecs[np.random.default_rng(22).integers(0, len(vecs), 256)]
    dirs = {n: tmpdir(f"engram-ab-{n}-") for n in "AB"}
    srv: dict[str, EngramProcess] = {}
    settings = {"durability": "fsync", "log_level": "warning", "embedder": "none"}
    out: dict[str, list[dict[str, object]]] = {}
    try:
        srv["A"] = EngramProcess.start(dirs["A"], spaces=(rs.SPACE,), settings={**settings, **a_settings},
                                       env={"PYTHONPATH": str(args.a_src.resolve())})
        srv["B"] = EngramProcess.start(dirs["B"], spaces=(rs.SPACE,), settings=settings)
        for n in "AB":
            asyncio.run(rs.fill(srv[n].http_url, vecs))
        for r in range(args.rounds):
            for tr, cue in ((t, c) for t in args.transports.split(",") for c in args.cues.split(",")):
                for callers in (1, 16):
                    for n in ("AB" if r % 2 == 0 else "BA"):
                        load = Path("/proc/loadavg").read_text().split()[0]
                        g = asyncio.run(rs.phase(srv[n], tr, cue, callers, args.seconds, queries))
                        g["load"] = float(load)
                        out.setdefault(f"{n}_{tr}_{cue}_{callers}", []).append(g)
                        print(f"round {r} {n} {tr} {cue:<9} {callers:>2}: {g['per_s']:7.1f}/s"
                              f"  P50 {g['p50_ms']:7.2f} ms  P99 {g['p99_ms']:7.2f} ms"
                              f"  server CPU {g['server_cpu_ms_per_call']:.2f} ms  load {load}", flush=True)
    finally:
        for s in srv.values():
            s.stop()
        for d in dirs.values():
            rmtree(d)
    summary = {k: {"per_s": statistics.median(g["per_s"] for g in v),  # type: ignore[misc]
                   "p50_ms": statistics.median(g["p50_ms"] for g in v),  # type: ignore[misc]
                   "server_cpu_ms": statistics.median(g["server_cpu_ms_per_call"] for g in v),  # type: ignore[misc]
                   "load": statistics.median(g["load"] for g in v)}  # type: ignore[misc]
               for k, v in out.items()}
    for tr, cue in ((t, c) for t in args.transports.split(",") for c in args.cues.split(",")):
        for n in "AB":
            one, many = summary[f"{n}_{tr}_{cue}_1"], summary[f"{n}_{tr}_{cue}_16"]
            print(f"{n} {tr} {cue:<9}: 1 caller {one['per_s']:.1f}/s P50 {one['p50_ms']:.2f} ms"
                  f" CPU {one['server_cpu_ms']:.2f}"
                  f" | 16 callers {many['per_s']:.1f}/s P50 {many['p50_ms']:.2f} ms"
                  f" CPU {many['server_cpu_ms']:.2f}"
                  f" | 16/1 {many['per_s'] / one['per_s']:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "phases": out}, indent=1))


if __name__ == "__main__":
    main()
