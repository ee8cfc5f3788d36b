#!/usr/bin/env python3
"""CPU per gRPC RecallResult conversion (engine model -> protobuf -> bytes), on real answers.

    python bench/notes/grpc_convert.py [--memories 20000] [--rounds 20] [--profile]

A working tool for the recall-path profile (bench/notes/recall_profile.md): recalls the
recall_cpu.py space (built there once, kept in ``--data``) with every cue kind, then times
``convert.recall_result(r).SerializeToString()`` over those answers and prints ms per response
and the load average. Writes the figures to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import recall_cpu  # noqa: E402  (the same space and cues)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memories", type=int, default=20_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/engram-recall-cpu"))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/engram-grpc-convert.json"))
    args = ap.parse_args()
    data = args.data.with_name(f"{args.data.name}-{args.memories}")
    if not (data / "cpu" / "space.db").exists():
        recall_cpu.build(data, args.memories)
    from engram.api.grpc import convert
    from engram.cognition.recall import recall

    svc, _ = recall_cpu.service(data)
    space = svc.space("cpu")
    space.reinforcer = None
    results = [recall(space, c) for _, c in recall_cpu.cues(args.memories)]
    size = sum(len(convert.recall_result(r).SerializeToString()) for r in results)
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    c0 = time.process_time()
    for _ in range(args.rounds):
        for r in results:
            convert.recall_result(r).SerializeToString()
    per = (time.process_time() - c0) / (args.rounds * len(results)) * 1000
    if prof:
        prof.disable()
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    load = os.getloadavg()[0]
    print(f"{len(results)} responses, {size / len(results):.0f} bytes each: {per:.3f} ms CPU per "
          f"conversion + serialisation (load {load:.2f})")
    args.out.write_text(json.dumps({"ms_per_response": per, "responses": len(results), "load": load}))
    svc.close()


if __name__ == "__main__":
    main()
