#!/usr/bin/env python3
"""In-process CPU per recall() and per serialised REST body, with a golden-answer check.

    python bench/notes/recall_cpu.py [--memories 20000] [--calls 300] [--profile]
                                     [--golden FILE [--write-golden]]

A working tool for the recall-path profile (bench/notes/recall_profile.md), not a suite
benchmark. One space of ``--memories`` clustered 384-d unit vectors with word-soup
contents, tags and metadata, kept in ``--data`` between runs (built once, fixed clock, no
reinforcement) so that two code versions answer the very same space. Cues: embedding with
rank "similarity" and "cognitive", a 12-word text question, embedding + text (hybrid), and
a 10 % metadata filter. ``--golden`` writes (or compares against) every answer's JSON
(minus timings): results must be identical before and after an optimisation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: bench/http.py must not shadow http
import benchlib
from recall_scaling import QUESTIONS, WORDS  # the scaling benchmark's words and questions

NOW = 1_800_000_000.0


def content(i: int) -> str:
    rng = np.random.default_rng(i)
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), 8)]
    return f"memory {i}: the " + " and the ".join(words)


def service(data: Path) -> Any:
    from engram.service import EngramService
    from engram.settings import load_settings

    settings = load_settings(overrides={"data_dir": data, "bootstrap_spaces": ("cpu",), "embedder": "none",
                                        "durability": "buffered", "log_level": "warning"}, use_env=False)
    clock = [NOW]
    return EngramService(settings, clock=lambda: clock[0]), clock


def build(data: Path, n: int) -> None:
    from engram.core.models import MemoryInput

    vecs = benchlib.dataset(n, 384, 21)
    svc, clock = service(data)

    async def fill() -> None:
        for start in range(0, n, 256):
            clock[0] = NOW - 86400.0 * 30 + start  # spread creation times: recency differs
            await asyncio.gather(*(svc.remember("cpu", MemoryInput(
                id=f"m{i}", content=content(i), embedding=vecs[i].tolist(), tags=[f"t{i % 5}"],
                metadata={"b": (i * 7919) % 1000})) for i in range(start, min(n, start + 256))))

    asyncio.run(fill())
    svc.close()


def cues(n: int) -> list[tuple[str, Any]]:
    from engram.core.models import Cue, RankMode, RecallMode

    vecs = benchlib.dataset(n, 384, 21)
    qs = benchlib.queries_near(vecs, 64, seed=22)
    out: list[tuple[str, Any]] = []
    for j, q in enumerate(qs):
        e = q.tolist()
        out.append(("emb_sim", Cue(embedding=e, max_results=10, rank=RankMode.similarity)))
        out.append(("emb_cog", Cue(embedding=e, max_results=10)))
        out.append(("text", Cue(query=QUESTIONS[j % 4], max_results=10)))
        out.append(("hybrid", Cue(embedding=e, query=QUESTIONS[j % 4], max_results=10, mode=RecallMode.hybrid,
                                  trace_activation=True)))
        out.append(("filter10", Cue(embedding=e, max_results=10, filter={"b": {"$lt": 100}})))
        out.append(("tags", Cue(embedding=e, max_results=10, tags=["t1"], rank=RankMode.similarity)))
    return out


def body(res: Any) -> dict[str, Any]:
    d = json.loads(res.__pydantic_serializer__.to_json(res)) if hasattr(res, "__pydantic_serializer__") \
        else json.loads(res.body)
    d["metadata"].pop("timing_ms", None)
    d["metadata"].get("spreading", {}).pop("ms", None)
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memories", type=int, default=20_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/engram-recall-cpu"))
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--kinds", default="emb_sim,emb_cog,text,hybrid,filter10,tags")
    ap.add_argument("--golden", type=Path)
    ap.add_argument("--write-golden", action="store_true")
    args = ap.parse_args()
    data = args.data.with_name(f"{args.data.name}-{args.memories}")
    if not (data / "cpu" / "space.db").exists():
        build(data, args.memories)
    from engram.cognition.recall import recall
    from engram.core.models import RecallResult

    svc, _ = service(data)
    space = svc.space("cpu")
    space.reinforcer = None  # answers must not drift between runs
    all_cues = cues(args.memories)
    if args.golden:
        got = [body(recall(space, c)) for _, c in all_cues]
        if args.write_golden:
            args.golden.write_text(json.dumps(got, sort_keys=True))
            print(f"golden written: {len(got)} answers")
        else:
            want = json.loads(args.golden.read_text())
            # compared as JSON text, not as parsed values: 1 == 1.0 in Python, but an answer
            # that changed a float to an int (or back) changed its bytes on the wire
            bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True))
                   if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)]
            print(f"golden: {len(got) - len(bad)}/{len(got)} identical" + (f"; first differing {bad[:5]}"
                                                                          if bad else ""))
            if bad:
                a, b = got[bad[0]], want[bad[0]]
                print(json.dumps(a, sort_keys=True)[:1500])
                print(json.dumps(b, sort_keys=True)[:1500])
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    for kind in args.kinds.split(","):
        sel = [c for k, c in all_cues if k == kind]
        for c in sel[:10]:
            recall(space, c)
        if prof:
            prof.enable()
        c0, t0 = time.thread_time(), time.perf_counter()
        lat = []
        ser = 0.0
        for i in range(args.calls):
            t = time.perf_counter()
            r = recall(space, sel[i % len(sel)])
            t2 = time.thread_time()
            b = r.__pydantic_serializer__.to_json(r) if isinstance(r, RecallResult) else r.body
            ser += time.thread_time() - t2
            lat.append((time.perf_counter() - t) * 1000)
            del b
        cpu = (time.thread_time() - c0) * 1000 / args.calls
        if prof:
            prof.disable()
        lat.sort()
        print(f"{kind:<9} CPU {cpu:6.2f} ms/call (serialise {ser * 1000 / args.calls:5.2f})  "
              f"P50 {lat[len(lat) // 2]:6.2f} ms  wall {(time.perf_counter() - t0) / args.calls * 1000:6.2f}"
              f"  load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    svc.close()
    if prof:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
