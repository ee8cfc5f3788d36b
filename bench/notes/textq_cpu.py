#!/usr/bin/env python3
"""In-process CPU per text recall (bench/text_query.py's space and questions), with a golden check.

    python bench/notes/textq_cpu.py [--memories 10000] [--rounds 3] [--profile]
                                    [--golden FILE [--write-golden]] [--mode steady|churn|miss|novel]

A working tool for Round 5 of bench/notes/recall_profile.md, not a suite benchmark. The
space is text_query.py's (the quality data set's turns, embedder ``none``), built once into
``--data`` with a fixed clock and no reinforcement, so two source trees answer the very same
space: run it with ``PYTHONPATH=<other tree>/src`` to measure that tree. Cues: the 300 framed
questions (mode similarity, the default) and the same questions in hybrid mode; ``--golden``
writes (or compares against) every answer's JSON minus timings. Figures: thread CPU per
recall() and per full-text stage (``text_candidates``), P50 wall, recall@10, load average.
``--mode``: ``steady`` (nothing written between questions), ``churn`` (a memory stored before
every question, in a copy of the space: core.bm25cache never holds, FTS5 answers) or ``miss``
(the remembered word scores dropped before every question, the index unchanged, the words
known as asked before: every word fetched on its own, the cache's worst case) or ``novel``
(scores and asked words dropped: every question's words are new, FTS5 answers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: bench/http.py must not shadow http
from quality_data import generate
from text_query import framed

NOW = 1_800_000_000.0


def service(data: Path) -> Any:
    from engram.service import EngramService
    from engram.settings import load_settings

    settings = load_settings(overrides={"data_dir": data, "bootstrap_spaces": ("textq",), "embedder": "none",
                                        "durability": "buffered", "log_level": "warning"}, use_env=False)
    clock = [NOW]
    return EngramService(settings, clock=lambda: clock[0]), clock


def dataset(n: int, nq: int) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]]:
    ds = generate(max(2, n // 190 + 1), 0)
    turns = [t for c in ds["conversations"] for s in c["sessions"] for t in s["turns"]][:n]
    known = {t["id"] for t in turns}
    r = random.Random(5)
    pool = [q for c in ds["conversations"] for q in c["questions"] if set(q["evidence"]) <= known]
    return turns, [(framed(q["question"], r), q["evidence"]) for q in r.sample(pool, min(nq, len(pool)))]


def build(data: Path, turns: list[dict[str, Any]]) -> None:
    from engram.core.models import MemoryInput

    svc, clock = service(data)

    async def fill() -> None:
        for start in range(0, len(turns), 256):
            clock[0] = NOW - 86400.0 * 30 + start
            await asyncio.gather(*(svc.remember(
                "textq", MemoryInput(id=t["id"], content=f"{t['speaker']}: {t['text']}"))
                                   for t in turns[start:start + 256]))

    asyncio.run(fill())
    svc.close()


def body(res: Any) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(res.__pydantic_serializer__.to_json(res))
    d["metadata"].pop("timing_ms", None)
    d["metadata"].get("spreading", {}).pop("ms", None)
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memories", type=int, default=10_000)
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--data", type=Path, default=Path("/tmp/engram-textq"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--golden", type=Path)
    ap.add_argument("--write-golden", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--mode", choices=("steady", "churn", "miss", "novel"), default="steady")
    args = ap.parse_args()
    turns, questions = dataset(args.memories, args.questions)
    data = args.data.with_name(f"{args.data.name}-{args.memories}")
    if not (data / "textq" / "space.db").exists():
        build(data, turns)
    from engram.cognition.recall import recall
    from engram.core.models import Cue, RecallMode
    from engram.core.text import text_candidates

    if args.mode == "churn":
        import shutil
        import tempfile

        copy = Path(tempfile.mkdtemp(prefix="textq-churn-")) / data.name
        shutil.copytree(data, copy)
        data = copy
    svc, _ = service(data)
    space = svc.space("textq")
    space.reinforcer = None  # answers must not drift between runs
    cues = [Cue(query=q, max_results=10) for q, _ in questions]
    hybrid = [Cue(query=q, max_results=10, mode=RecallMode.hybrid) for q, _ in questions]
    if args.golden:
        got = [body(recall(space, c)) for c in cues + hybrid]
        if args.write_golden:
            args.golden.write_text(json.dumps(got, sort_keys=True))
            print(f"golden written: {len(got)} answers")
        else:
            want = json.loads(args.golden.read_text())
            bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
            print(f"golden: {len(got) - len(bad)}/{len(got)} identical" + (f"; differing {bad[:20]}"
                                                                          if bad else ""))
            if bad:
                a, b = got[bad[0]], want[bad[0]]
                print(json.dumps(a, sort_keys=True)[:1500])
                print(json.dumps(b, sort_keys=True)[:1500])
    hits = 0.0
    for c, (_, evidence) in zip(cues, questions, strict=True):
        res = recall(space, c)
        got_ids = [it.memory.id for it in res.memories.vivid + res.memories.associated][:10]
        hits += len(set(got_ids) & set(evidence)) / len(evidence)
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    from engram.core.models import MemoryInput

    def before(rnd: int, i: int) -> None:
        if args.mode == "churn":
            note = MemoryInput(id=f"churn-{rnd}-{i}", content=f"churn note {i} {questions[i][0]}")
            svc.space("textq").remember(note)
        elif args.mode in ("miss", "novel"):
            from engram.core import bm25cache

            for known in bm25cache._cache.values():
                known.phrases = {}
                if args.mode == "novel":
                    known.seen = set()

    for rnd in range(args.rounds):
        if prof:
            prof.enable()
        lat = []
        cpu = 0.0
        for i, c in enumerate(cues):
            before(rnd, i)
            c0, t = time.thread_time(), time.perf_counter()
            recall(space, c)
            lat.append((time.perf_counter() - t) * 1000)
            cpu += time.thread_time() - c0
        cpu = cpu * 1000 / len(cues)
        fts = 0.0
        for i, (q, _) in enumerate(questions):
            before(rnd + args.rounds, i)
            c0 = time.thread_time()
            text_candidates(space, q, 50)
            fts += time.thread_time() - c0
        fts = fts * 1000 / len(questions)
        if prof:
            prof.disable()
        lat.sort()
        print(f"{args.label} {args.mode} round {rnd}: recall CPU {cpu:5.3f} ms/call  "
              f"P50 {lat[len(lat) // 2]:5.3f} ms  "
              f"text stage CPU {fts:5.3f} ms  r@10 {hits / len(cues):.4f}  "
              f"load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    svc.close()
    if args.mode == "churn":
        shutil.rmtree(data.parent)
    if prof:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
