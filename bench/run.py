#!/usr/bin/env python3
"""Run every Engram benchmark, then write the report.

    python3 run.py bench            # the full suite (< 35 min on the reference 2-core machine)
    python3 run.py bench --quick    # a smoke run of everything (< 7 min)
    python3 run.py bench --only multispace,peer_chroma    # a subset; the report uses what is there
    python3 run.py bench --report-only                    # rebuild docs/benchmarks.md from the JSON

Each benchmark is its own script under bench/ (run alone with ``--help``) and is
run here as a subprocess with a time limit. Results go to bench/results/*.json
(quick runs: bench/results/quick/), one log per step to <results>/logs/, the run
manifest to <results>/run.json, and the report to docs/benchmarks.md (quick:
docs/benchmarks-quick.md) with its plots under docs/img/. A step that is missing,
fails or times out is reported as such; no figure is ever carried over from an
earlier run.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT, machine_info, versions, write_json


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    what: str
    timeout: float  # seconds, full run
    quick_timeout: float
    extra: tuple[str, ...] = ()
    quick_fallback: tuple[str, ...] = ()  # arguments for scripts that have no --quick
    owner: str = "performance"


STEPS: tuple[Step, ...] = (
    Step(
        "engine",
        "engine.py",
        "in-process engine: durable remember, recall at 10k/100k, RSS, reopen, loaded spaces",
        330,
        60,
        owner="engine",
    ),
    Step(
        "cognition",
        "cognition.py",
        "spreading/hybrid recall at 100k, consolidation of 10k episodes",
        240,
        50,
        owner="cognition",
    ),
    Step(
        "http",
        "http.py",
        "REST remember/recall vs echo route, 1 and 32 aiohttp clients",
        120,
        30,
        quick_fallback=("--seconds", "1"),
        owner="REST",
    ),
    Step(
        "batch",
        "batch.py",
        "REST ingest of 384-d memories: one per request vs batches of 256 (POST /api/v1/memories/batch)",
        180,
        45,
        owner="data plane",
    ),
    Step(
        "grpc",
        "grpc.py",
        "gRPC unary Remember/Recall vs Echo, StreamingRemember vs EchoStream",
        120,
        30,
        quick_fallback=("--seconds", "1"),
        owner="gRPC",
    ),
    Step(
        "grpc_1client",
        "grpc.py",
        "the same gRPC benchmark with one client (bench/grpc.py --clients 1)",
        60,
        20,
        extra=("--clients", "1", "--seconds", "3"),
        quick_fallback=("--seconds", "1"),
        owner="gRPC",
    ),
    Step("multispace", "multispace.py", "recall with 1/5/10 active spaces and 1,000 idle spaces", 150, 40),
    Step(
        "spaces",
        "spaces.py",
        "10,000 spaces created, written and read once under ulimit -n 1024; hot-space recall P99",
        1200,
        240,
        owner="spaces",
    ),
    Step("startup", "startup.py", "server start-up and RSS with 10 / 1,000 / 10,000 spaces on disk", 120, 25),
    Step(
        "scale", "scale.py", "end-to-end recall at 10k/100k x 768 through a server; SIGKILL recovery", 300, 30
    ),
    Step(
        "peer_chroma",
        "peer_chroma.py",
        "Engram beside Chroma 1.5.9: ingest, query, recall@10, RSS, fsyncs",
        180,
        40,
    ),
    Step(
        "quality",
        "quality.py",
        "recall@5/10/25 on multi-session conversations: Engram's modes vs BM25, dense, RRF, per embedder",
        900,
        120,
    ),
    Step(
        "semantic",
        "semantic.py",
        "text remember -> vector-searchable at 100/500 writes/s, remember cost of embedding, recall by text "
        "at 10k (local, int8, hash)",
        900,
        180,
        owner="embedding",
    ),
    Step(
        "rank_exact",
        "rank_exact.py",
        'rank "similarity" recall@10 against exact float32 search, 20k x 384 clustered vectors',
        300,
        60,
        owner="embedding",
    ),
    Step(
        "peer_chroma_server",
        "peer_chroma_server.py",
        "Engram's server beside `chroma run`, one aiohttp client: ingest, recall at 1/16 clients, "
        "recall@10, RSS",
        900,
        150,
    ),
    Step(
        "recall_scaling",
        "recall_scaling.py",
        "recall QPS with 1 and 16 callers, REST and gRPC, embedding and text cues, interleaved rounds",
        600,
        120,
    ),
    Step(
        "text_query",
        "text_query.py",
        "10-20 word questions by full text at 10k memories, in-process: P50, CPU, recall@10",
        300,
        60,
    ),
    Step(
        "subscribers",
        "subscribers.py",
        "SSE fan-out: another space's recall P50 with 0 / 500 idle subscribers on one space, that space's "
        "write rate with 0 / 500 consuming subscribers",
        240,
        90,
        owner="streams",
    ),
)


@dataclass
class Outcome:
    name: str
    status: str  # ok | failed | timeout | missing | no-results | skipped
    seconds: float = 0.0
    returncode: int | None = None
    command: list[str] = field(default_factory=list)
    note: str = ""
    results: str | None = None


def _supports(source: str, flag: str) -> bool:
    return re.search(r"""["']""" + re.escape(flag) + r"""["']""", source) is not None


def _last_error_line(log_text: str) -> str:
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit|Interrupt)\b", ln) or "Error:" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else ""


def _leftovers(token: str) -> list[int]:
    """Live processes started (directly or not) by one step: they carry its token in their environment.

    Servers started by a step run in their own session (so the step's process group does not
    reach them); a step that is stopped at its time limit would leave them running.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if token.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def run_step(step: Step, out_dir: Path, quick: bool, passthrough: list[str], budget_left: float) -> Outcome:
    script = ROOT / "bench" / step.script
    if not script.exists():
        return Outcome(step.name, "missing", note=f"bench/{step.script} does not exist")
    source = script.read_text(errors="replace")
    out_file = out_dir / f"{step.name}.json"
    default_file = RESULTS / f"{step.name}.json"
    cmd = [sys.executable, str(script), *step.extra]
    if quick:
        if _supports(source, "--quick"):
            cmd.append("--quick")
        elif step.quick_fallback and _supports(source, step.quick_fallback[0]):
            cmd += list(step.quick_fallback)
    cmd += passthrough
    uses_out = _supports(source, "--out")
    if uses_out:
        cmd += ["--out", str(out_file)]
    # Without --out the script writes its default path: keep what was there and put it back after.
    saved = default_file.read_bytes() if not uses_out and default_file.exists() else None
    if out_file.exists():
        out_file.unlink()  # never report an earlier run's figures as this run's
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{step.name}.log"
    timeout = min(step.quick_timeout if quick else step.timeout, budget_left)
    print(f"\n=== {step.name}: {step.what}\n    {' '.join(cmd)}  (limit {timeout:.0f} s)", flush=True)
    t0 = time.time()
    token = f"{step.name}-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "BENCH_STEP_TOKEN": token}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            rc: int | None = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            # SIGTERM first (the suite's scripts turn it into an exit that stops their servers), then SIGKILL
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, status = None, "timeout"
    seconds = time.time() - t0
    leftovers = _leftovers(token)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    log_text = log_path.read_text(errors="replace")
    tail = "\n".join(log_text.splitlines()[-6:])
    print(tail, flush=True)
    moved_default = not uses_out and default_file.exists() and default_file.stat().st_mtime >= t0
    if moved_default and default_file.resolve() != out_file.resolve():
        shutil.move(str(default_file), out_file)
        if saved is not None:
            default_file.write_bytes(saved)
    outcome = Outcome(step.name, status, round(seconds, 1), rc, cmd, results=None)
    if leftovers:
        outcome.note = f"killed {len(leftovers)} leftover process(es) of this step. "
    if out_file.exists() and out_file.stat().st_mtime >= t0:
        outcome.results = str(out_file.relative_to(ROOT))
        if status == "ok":
            pass
        else:
            outcome.note += f"exited {rc} after writing results: {_last_error_line(log_text)}"
    else:
        if status == "ok":
            outcome.status = "no-results"
            outcome.note += "exited 0 but wrote no JSON"
        elif status == "timeout":
            outcome.note += f"stopped after the {timeout:.0f} s limit; no results written"
        else:
            outcome.note += _last_error_line(log_text)
    print(f"--- {step.name}: {outcome.status} in {outcome.seconds:.0f} s {outcome.note}", flush=True)
    return outcome


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes everywhere (< 7 min)")
    ap.add_argument("--only", help="comma-separated steps: " + ",".join(s.name for s in STEPS))
    ap.add_argument("--skip", help="comma-separated steps to leave out")
    ap.add_argument("--with-1m", action="store_true", help="scale: add 1M memories (128-d); adds ~10 min")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from existing JSON")
    ap.add_argument(
        "--budget",
        type=float,
        help="seconds for the whole run (default 870; quick 170): a step "
        "is stopped at its own limit or when the budget runs out, and later steps are skipped",
    )
    args = ap.parse_args()
    out_dir = RESULTS / "quick" if args.quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {s.name for s in STEPS}
    only = set(args.only.split(",")) if args.only else names
    skip = set(args.skip.split(",")) if args.skip else set()
    unknown = (only | skip) - names
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; choose from {sorted(names)}")

    if not args.report_only:
        started = time.time()
        manifest: dict[str, Any] = {
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": args.quick,
            "machine": machine_info(),
            "versions": versions(),
            "git": _git_commit(),
            "steps": {},
        }
        previous = out_dir / "run.json"
        if previous.exists() and (args.only or args.skip):
            # a partial run keeps the other steps' outcomes from the last run, marked as such
            try:
                old = json.loads(previous.read_text())
                for name, st in old.get("steps", {}).items():
                    if name not in only or name in skip:
                        manifest["steps"][name] = {**st, "from_earlier_run": old.get("date_utc")}
            except ValueError:
                pass
        budget = args.budget or (400.0 if args.quick else 3000.0)
        if args.with_1m:
            budget += 1800.0
        deadline = started + budget
        manifest["budget_seconds"] = budget
        for step in STEPS:
            if step.name not in only or step.name in skip:
                continue
            passthrough = ["--with-1m"] if (step.name == "scale" and args.with_1m) else []
            left = deadline - time.time()
            if left < 5:
                outcome = Outcome(
                    step.name, "skipped", note=f"the run's time budget ({budget:.0f} s) was used up"
                )
            else:
                outcome = run_step(step, out_dir, args.quick, passthrough, left)
            manifest["steps"][step.name] = {k: v for k, v in outcome.__dict__.items() if k != "name"}
            manifest["steps"][step.name]["what"] = step.what
            manifest["steps"][step.name]["owner"] = step.owner
        order = [s.name for s in STEPS]
        manifest["steps"] = dict(sorted(manifest["steps"].items(), key=lambda kv: order.index(kv[0])))
        manifest["seconds_total"] = round(time.time() - started, 1)
        manifest["loadavg_end"] = machine_info()["loadavg"]
        write_json(out_dir / "run.json", manifest)
        print(f"\nall steps done in {manifest['seconds_total']:.0f} s", flush=True)

    from report import build_report

    md = build_report(out_dir, quick=args.quick)
    print(f"report: {md.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
