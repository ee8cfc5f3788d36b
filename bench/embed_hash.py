#!/usr/bin/env python3
"""Throughput of the ``hash`` embedder (SPEC §9), the default for servers started by tests.

    python bench/embed_hash.py [--quick] [--out bench/results/embed_hash.json]

Embeds batches of 1,000 short texts (384 dimensions) in this process and prints the
median, min and max seconds per batch and texts per second. The figure used to be a
timed assertion in tests/unit/test_embedding.py ("a thousand texts well under a
second", < 0.5 s); a unit test no longer times anything, so it lives here. The load
average is written beside it: the machine is shared.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import os
import time
from typing import Any

from benchlib import RESULTS, exit_on_sigterm, show, stamp, write_json

from engram.embedding import EmbedderSpec
from engram.embedding.hashing import HashEmbedder

TEXTS = 1000
DIM = 384


def texts(batch: int) -> list[str]:
    return [f"note {i}: call supplier {i % 37} about order {i * 7} before friday {batch}"
            for i in range(TEXTS)]


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batches", type=int, help="timed batches (default 9, quick 3)")
    ap.add_argument("--out", default=str(RESULTS / "embed_hash.json"))
    args = ap.parse_args()
    batches = args.batches or (3 if args.quick else 9)
    emb = HashEmbedder(EmbedderSpec("hash", f"hash-{DIM}"))
    emb.embed(texts(-1))  # warm-up: first-call costs are not throughput
    load_before = os.getloadavg()[0]
    seconds: list[float] = []
    for b in range(batches):
        batch = texts(b)
        t0 = time.perf_counter()
        vectors = emb.embed(batch)
        seconds.append(time.perf_counter() - t0)
        assert len(vectors) == TEXTS
    seconds.sort()
    med = seconds[len(seconds) // 2]
    result: dict[str, Any] = {
        **stamp(args.quick),
        "benchmark": "embed_hash",
        "texts_per_batch": TEXTS,
        "dim": DIM,
        "batches": batches,
        "batch_seconds_median": round(med, 4),
        "batch_seconds_min": round(seconds[0], 4),
        "batch_seconds_max": round(seconds[-1], 4),
        "texts_per_second_median": round(TEXTS / med),
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    show("embed_hash", {k: v for k, v in result.items() if k not in ("machine", "date_utc", "quick")})
    write_json(args.out, result)


if __name__ == "__main__":
    main()
