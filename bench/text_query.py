#!/usr/bin/env python3
"""Recall by a natural-language question (text only) at 10k memories, in-process: speed and answers.

    python bench/text_query.py [--quick] [--memories 10000] [--questions 300]
                               [--out bench/results/text_query.json]

Memories are the turns of the quality benchmark's conversations (bench/quality_data.py,
seeded), "speaker: text", all in one space with the embedder ``none``, so recall ranks
by full text alone (FTS5 BM25, core.text). Questions are that data set's questions
wrapped in conversational framing to 10-20 words ("Sorry to ask again, but do you
remember ...?"): the framing's words are the ones that match many memories and make
a text query slow. Reported: P50/P99 and CPU per recall() (the engine call every
transport makes), the full-text stage alone, and recall@10 of each question's
evidence turns, so speed is never bought with worse answers unnoticed.

Target (issue 15): P50 < 3 ms for a 10-20 word question at 10k memories, in-process.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import random
import time
from typing import Any

import numpy as np
from benchlib import (
    RESULTS,
    exit_on_sigterm,
    latency_summary,
    make_service,
    rmtree,
    show,
    stamp,
    tmpdir,
    write_json,
)
from quality_data import generate

TARGET_P50_MS = 3.0
SPACE = "text-query"
FRAMES = (
    "Sorry to ask again, but do you remember {q} I think we talked about it a while ago.",
    "Quick question for you before I forget: {q} It came up in one of our chats.",
    "I was trying to recall this earlier today and could not: {q}",
    "Can you help me remember something from our conversations? {q} Thanks a lot.",
)


def framed(question: str, r: random.Random) -> str:
    q = question.strip()
    for frame in r.sample(FRAMES, len(FRAMES)):
        text = frame.format(q=q)
        if 10 <= len(text.split()) <= 20:
            return text
    return " ".join(FRAMES[0].format(q=q).split()[:20])


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memories", type=int, help="memories (default 10,000; quick 2,000)")
    ap.add_argument("--questions", type=int, help="questions asked (default 300; quick 100)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the recall loop")
    ap.add_argument("--out", default=str(RESULTS / "text_query.json"))
    args = ap.parse_args()
    n = args.memories or (2_000 if args.quick else 10_000)
    nq = args.questions or (100 if args.quick else 300)

    from engram.cognition.recall import recall
    from engram.core.models import Cue, MemoryInput
    from engram.core.text import text_candidates

    ds = generate(max(2, n // 190 + 1), 0)
    turns = [t for c in ds["conversations"] for s in c["sessions"] for t in s["turns"]][:n]
    known = {t["id"] for t in turns}
    r = random.Random(5)
    pool = [q for c in ds["conversations"] for q in c["questions"] if set(q["evidence"]) <= known]
    questions = [(framed(q["question"], r), q["evidence"]) for q in r.sample(pool, min(nq, len(pool)))]
    tmp = tmpdir("engram-text-query-")
    try:
        svc = make_service(tmp, [SPACE], embedder="none")

        async def fill() -> float:
            t0 = time.perf_counter()
            items = iter(turns)

            async def writer() -> None:
                for t in items:
                    await svc.remember(SPACE, MemoryInput(id=t["id"], content=f"{t['speaker']}: {t['text']}"))

            await asyncio.gather(*(writer() for _ in range(32)))
            return time.perf_counter() - t0

        fill_s = asyncio.run(fill())
        space = svc.space(SPACE)
        for q, _ in questions[:20]:
            recall(space, Cue(query=q, max_results=10))
        lat, fts, hits = [], [], 0.0
        prof = None
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        c0 = time.process_time()
        for q, evidence in questions:
            t0 = time.perf_counter()
            res = recall(space, Cue(query=q, max_results=10))
            lat.append((time.perf_counter() - t0) * 1000)
            got = [it.memory.id for it in res.memories.vivid + res.memories.associated]
            hits += len(set(got[:10]) & set(evidence)) / len(evidence)
        cpu_ms = 1000 * (time.process_time() - c0) / len(questions)
        if prof is not None:
            import pstats

            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        c0 = time.process_time()
        for q, _ in questions:
            t0 = time.perf_counter()
            text_candidates(space, q, 50)
            fts.append((time.perf_counter() - t0) * 1000)
        fts_cpu_ms = 1000 * (time.process_time() - c0) / len(questions)
        words = [len(q.split()) for q, _ in questions]
        svc.close()
    finally:
        rmtree(tmp)
    rec = latency_summary(lat)
    results: dict[str, Any] = {
        **stamp(args.quick),
        "benchmark": "text_query",
        "memories": len(turns),
        "questions": len(questions),
        "words_per_question": {"min": min(words), "mean": round(float(np.mean(words)), 1), "max": max(words)},
        "fill_seconds": round(fill_s, 1),
        "recall": {**rec, "cpu_ms_per_call": round(cpu_ms, 3)},
        "text_stage": {**latency_summary(fts), "cpu_ms_per_call": round(fts_cpu_ms, 3)},
        "recall_at_10": round(hits / len(questions), 4),
        "target": {"p50_ms": TARGET_P50_MS, "met": bool(rec["p50_ms"] < TARGET_P50_MS)},
        "example_question": questions[0][0],
    }
    show("text query", results)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
