#!/usr/bin/env python3
"""Engram beside Chroma on the same workload: prints figures and writes JSON.

    python bench/peer_chroma.py [--quick] [--spaces 4] [--per-space 10000]
                                [--out bench/results/peer_chroma.json]

Chroma (chromadb 1.5.9) is installed by this script into bench/.venv-chroma (git-
ignored) and runs as a subprocess there, so its dependencies never touch Engram's.
Both sides are embedded, in-process libraries in their own child process:

* Engram: ``EngramService`` with default settings (fsync durability, group commit);
  one memory space per tenant; each memory is its own ``remember`` call, 32 in
  flight (the way a server receives them).
* Chroma: ``PersistentClient`` with one tenant + database per space, collection
  ``memories`` with cosine HNSW; ``add`` in batches of 256 (its best case), and
  separately one record per ``add`` call.

Same vectors (clustered, unit length, 768-d), same ids, same queries (10 nearest,
one query at a time). Reported per side: ingest throughput, single-writer
throughput, query P50/P99, recall@10 against exact cosine search, RSS growth,
disk; ratios are Engram/Chroma. A short probe runs each side's single writes
under ``strace`` and counts fsync/fdatasync per acknowledged write, so the
durability each side gave is measured, not assumed.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    DIM,
    RESULTS,
    ROOT,
    dataset,
    exact_topk,
    exit_on_sigterm,
    latency_summary,
    make_service,
    queries_near,
    recall_at_k,
    remember_vectors,
    rmtree,
    rss_bytes,
    show,
    stamp,
    tmpdir,
    wait_index_ready,
    write_json,
)
from peer_chroma_side import sqlite_journal

CHROMA_VERSION = "1.5.9"
VENV = ROOT / "bench" / ".venv-chroma"
SIDE = ROOT / "bench" / "peer_chroma_side.py"


# -- the Chroma environment ---------------------------------------------------------
def ensure_chroma_venv() -> tuple[Path, float]:
    """Create bench/.venv-chroma with chromadb pinned; returns (python, seconds spent installing)."""
    py = VENV / "bin" / "python"
    stamp_file = VENV / ".bench-stamp"
    want = f"chromadb=={CHROMA_VERSION} numpy==2.4.6 psutil==7.2.2"
    if py.exists() and stamp_file.exists() and stamp_file.read_text().strip() == want:
        return py, 0.0
    t0 = time.perf_counter()
    print(f"installing {want} into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *want.split()], check=True
    )
    stamp_file.write_text(want)
    return py, time.perf_counter() - t0


# -- the Engram side (runs in a child of this script, in Engram's venv) ------------
def engram_side(data: Path, out: Path, root: Path) -> None:
    from engram.core.models import Cue

    spec = json.loads((data / "spaces.json").read_text())
    base_rss = rss_bytes()
    svc = make_service(root, spec["spaces"])
    res: dict[str, Any] = {"spaces": {}}
    ingest_total = 0.0
    index_wait: dict[str, float | None] = {}

    async def run() -> None:
        nonlocal ingest_total
        for space in spec["spaces"]:
            vecs = np.load(data / f"{space}.vectors.npy")
            queries = np.load(data / f"{space}.queries.npy")
            ingest = await remember_vectors(svc, space, vecs, writers=32)
            ingest_total += ingest
            # Chroma's add() returns with its HNSW updated; Engram acknowledges first and indexes in
            # the background, so its queries wait for the index (the wait is reported, not hidden).
            t_idx = time.perf_counter()
            caught_up = await asyncio.to_thread(wait_index_ready, svc, space, 1800.0)
            index_wait[space] = round(time.perf_counter() - t_idx, 1) if caught_up is not None else None
            for q in queries[:5]:
                await svc.recall(space, Cue(embedding=q.tolist(), max_results=10))
            lat, found = [], []
            for q in queries:
                cue = Cue(embedding=q.tolist(), max_results=10)
                t0 = time.perf_counter()
                r = await svc.recall(space, cue)
                lat.append((time.perf_counter() - t0) * 1000)
                items = sorted([*r.memories.vivid, *r.memories.associated], key=lambda it: -it.score)
                found.append([int(it.memory.id[1:]) for it in items])
            res["spaces"][space] = {
                "memories": len(vecs),
                "ingest_seconds": ingest,
                "latency_ms": lat,
                "found": found,
                "search": "exact" if len(vecs) < svc.settings.exact_search_max else "indexed",
            }
        single = np.load(data / f"{spec['spaces'][0]}.vectors.npy")[: spec["single_writes"]]
        await svc.create_space("single-writes")
        t0 = time.perf_counter()
        await remember_vectors(svc, "single-writes", single, writers=1, id_prefix="s")
        res["single_writer"] = {"writes": len(single), "seconds": time.perf_counter() - t0}

    asyncio.run(run())
    res["ingest_seconds_total"] = ingest_total
    res["index_wait_seconds"] = index_wait
    res["rss_base_bytes"] = base_rss
    res["rss_bytes"] = rss_bytes()
    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    svc.close()
    res["disk_bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    res["sqlite_journal"] = sqlite_journal(root / spec["spaces"][0] / "space.db")
    out.write_text(json.dumps(res))


def engram_probe(data: Path, out: Path, root: Path, n: int) -> None:
    spec = json.loads((data / "spaces.json").read_text())
    vecs = np.load(data / f"{spec['spaces'][0]}.vectors.npy")[:n]
    svc = make_service(root, ["fsync-probe"])
    asyncio.run(remember_vectors(svc, "fsync-probe", vecs[:1], writers=1, id_prefix="w"))
    Path(str(out) + ".start").write_text("")
    t0 = time.perf_counter()
    asyncio.run(remember_vectors(svc, "fsync-probe", vecs, writers=1, id_prefix="p"))
    el = time.perf_counter() - t0
    Path(str(out) + ".end").write_text("")
    svc.close()
    out.write_text(json.dumps({"probe_writes": n, "seconds": el}))


# -- orchestration -------------------------------------------------------------------
def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def fsync_probe(cmd: list[str], out: Path, n: int, timeout: float) -> dict[str, Any] | None:
    """Run ``cmd`` under strace; count fsync-family calls between the start/end markers."""
    if shutil.which("strace") is None:
        return None
    log = out.with_suffix(".strace")
    _run(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,sync_file_range,openat", "-o", str(log), *cmd],
        timeout,
    )
    inside, syncs = False, 0
    start_mark, end_mark = f"{out.name}.start", f"{out.name}.end"
    for line in log.read_text(errors="replace").splitlines():
        if start_mark in line and "openat" in line:
            inside = True
        elif end_mark in line and "openat" in line:
            inside = False
        elif inside and ("fsync(" in line or "fdatasync(" in line or "sync_file_range(" in line):
            syncs += 1
    probe = json.loads(out.read_text())
    return {
        "writes": n,
        "fsync_calls": syncs,
        "fsyncs_per_write": round(syncs / n, 2),
        "writes_per_s_under_strace": round(n / probe["seconds"], 1),
    }


def summarize(side: dict[str, Any], truth: dict[str, np.ndarray]) -> dict[str, Any]:
    lat = [x for s in side["spaces"].values() for x in s["latency_ms"]]
    found, tru = [], []
    for space, s in side["spaces"].items():
        found += s["found"]
        tru.append(truth[space])
    total = sum(s["memories"] for s in side["spaces"].values())
    out = {
        "memories": total,
        "ingest_per_s": round(total / side["ingest_seconds_total"], 1),
        "single_writer_per_s": round(side["single_writer"]["writes"] / side["single_writer"]["seconds"], 1),
        "query": latency_summary(lat),
        "recall_at_10": round(recall_at_k(found, np.concatenate(tru)), 4),
        "rss_growth_mb": round((side["rss_bytes"] - side["rss_base_bytes"]) / 2**20, 1),
        "rss_mb": round(side["rss_bytes"] / 2**20, 1),
        "peak_rss_mb": round(side["peak_rss_bytes"] / 2**20, 1),
        "disk_mb": round(side["disk_bytes"] / 2**20, 1),
        "sqlite_journal": side.get("sqlite_journal"),
    }
    waits = [w for w in (side.get("index_wait_seconds") or {}).values() if w is not None]
    if waits:
        out["index_catch_up_after_ingest_s"] = round(sum(waits), 1)
        out["ingest_until_indexed_per_s"] = round(total / (side["ingest_seconds_total"] + sum(waits)), 1)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--spaces", type=int, help="spaces (tenants) (default 4; quick 2)")
    ap.add_argument("--per-space", type=int, help="memories per space (default 10,000; quick 2,000)")
    ap.add_argument("--queries", type=int, help="queries per space (default 300; quick 100)")
    ap.add_argument("--single-writes", type=int, default=300)
    ap.add_argument("--probe", type=int, default=100, help="writes in the strace fsync probe (0: skip)")
    ap.add_argument("--out", default=str(RESULTS / "peer_chroma.json"))
    ap.add_argument("--side", choices=("engram", "engram-probe"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "engram":
        engram_side(Path(args.data), Path(args.out), Path(args.root))
        return
    if args.side == "engram-probe":
        engram_probe(Path(args.data), Path(args.out), Path(args.root), args.probe)
        return

    spaces = args.spaces or (2 if args.quick else 4)
    per = args.per_space or (2_000 if args.quick else 10_000)
    nq = args.queries or (100 if args.quick else 300)
    results: dict[str, Any] = {
        **stamp(args.quick),
        "benchmark": "peer_chroma",
        "dim": DIM,
        "spaces": spaces,
        "per_space": per,
        "queries_per_space": nq,
    }
    chroma_py, install_s = ensure_chroma_venv()
    results["chroma_install_seconds"] = round(install_s, 1)
    tmp = tmpdir("engram-peer-")
    try:
        data = tmp / "data"
        data.mkdir()
        names = [f"tenant-{i:02d}" for i in range(spaces)]
        truth: dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            vecs = dataset(per, DIM, 100 + i)
            qs = queries_near(vecs, nq, 200 + i)
            np.save(data / f"{name}.vectors.npy", vecs)
            np.save(data / f"{name}.queries.npy", qs)
            truth[name] = exact_topk(vecs, qs, 10)
        (data / "spaces.json").write_text(json.dumps({"spaces": names, "single_writes": args.single_writes}))
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        here = str(Path(__file__).resolve())
        sides: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        _run(
            [
                sys.executable,
                here,
                "--side",
                "engram",
                "--data",
                str(data),
                "--out",
                str(tmp / "engram.json"),
                "--root",
                str(tmp / "engram-root"),
            ],
            1800,
        )
        sides["engram"] = json.loads((tmp / "engram.json").read_text())
        results["engram_side_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        _run(
            [
                str(chroma_py),
                str(SIDE),
                "--data",
                str(data),
                "--out",
                str(tmp / "chroma.json"),
                "--root",
                str(tmp / "chroma-root"),
            ],
            1800,
            env,
        )
        sides["chroma"] = json.loads((tmp / "chroma.json").read_text())
        results["chroma_side_seconds"] = round(time.perf_counter() - t0, 1)
        results["chromadb_version"] = sides["chroma"].get("chromadb")
        results["engram"] = summarize(sides["engram"], truth)
        results["chroma"] = summarize(sides["chroma"], truth)
        results["engram"]["search"] = sorted({s["search"] for s in sides["engram"]["spaces"].values()})
        results["chroma"]["search"] = ["hnsw (cosine, M=16, ef_search=100)"]
        if args.probe:
            probes: dict[str, Any] = {}
            probes["engram"] = fsync_probe(
                [
                    sys.executable,
                    here,
                    "--side",
                    "engram-probe",
                    "--data",
                    str(data),
                    "--probe",
                    str(args.probe),
                    "--out",
                    str(tmp / "probe-engram.json"),
                    "--root",
                    str(tmp / "probe-engram"),
                ],
                tmp / "probe-engram.json",
                args.probe,
                600,
            )
            probes["chroma"] = fsync_probe(
                [
                    str(chroma_py),
                    str(SIDE),
                    "--data",
                    str(data),
                    "--probe",
                    str(args.probe),
                    "--out",
                    str(tmp / "probe-chroma.json"),
                    "--root",
                    str(tmp / "probe-chroma"),
                ],
                tmp / "probe-chroma.json",
                args.probe,
                600,
            )
            results["fsync_probe"] = probes
    finally:
        rmtree(tmp)
    e, c = results["engram"], results["chroma"]
    results["ratios_engram_over_chroma"] = {
        "ingest_throughput": _ratio(e["ingest_per_s"], c["ingest_per_s"]),
        "single_writer_throughput": _ratio(e["single_writer_per_s"], c["single_writer_per_s"]),
        "ingest_until_indexed_throughput": _ratio(e.get("ingest_until_indexed_per_s"), c["ingest_per_s"]),
        "query_p50": _ratio(e["query"]["p50_ms"], c["query"]["p50_ms"]),
        "query_p99": _ratio(e["query"]["p99_ms"], c["query"]["p99_ms"]),
        "recall_at_10": _ratio(e["recall_at_10"], c["recall_at_10"]),
        "rss_growth": _ratio(e["rss_growth_mb"], c["rss_growth_mb"]),
        "disk": _ratio(e["disk_mb"], c["disk_mb"]),
    }
    results["durability"] = {
        "engram": f"each remember is acknowledged after its SQLite ({e.get('sqlite_journal')}) commit is "
        "fsynced; group commit batches concurrent writers into one fsync",
        "chroma": f"each add() commits SQLite ({c.get('sqlite_journal')}) transactions before it returns; "
        "the HNSW files are derived and flushed separately",
        "ingest_shapes": "Engram: one memory per call, 32 calls in flight; "
        "Chroma: add() of 256 records per call",
    }
    show("engram", e)
    show("chroma", c)
    show("ratios Engram/Chroma", results["ratios_engram_over_chroma"])
    write_json(args.out, results)


if __name__ == "__main__":
    main()
