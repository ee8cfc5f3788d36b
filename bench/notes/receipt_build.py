"""StreamingRemember's answer for one message, built in process: the receipt model then protobuf
(``convert.receipt(parts.receipt())``, the path before Round 6 and PostgreSQL's today) against
``convert.receipt_fields(parts)`` (SQLite's). Checks the two give the same bytes, prints the
microseconds per message (min of 5 x 20,000) and writes them to ``--out``.

    .venv/bin/python bench/notes/receipt_build.py [--out bench/results/receipt_build.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import timeit
from pathlib import Path

from engram.api.grpc import convert as c
from engram.api.grpc.gen import service_pb2 as spb
from engram.core.models import ReceiptParts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/receipt_build.json"))
    args = ap.parse_args()
    now = time.time()
    parts = ReceiptParts(memory_id="m" * 32, confidence=0.9,
                         reasoning="durable on disk (fsync) before acknowledgement", observed_at=now,
                         stored_at=now, auto_links=[("t" * 32, 0.81234)], lsn=42, durability="fsync",
                         memory_space_id="default")

    def model() -> spb.StreamingRememberResponse:
        return spb.StreamingRememberResponse(sequence=1, receipt=c.receipt(parts.receipt()))

    def fields() -> spb.StreamingRememberResponse:
        return spb.StreamingRememberResponse(sequence=1, receipt=c.receipt_fields(parts))

    assert model().SerializeToString() == fields().SerializeToString()
    out = {"load": os.getloadavg()[0]}
    for name, build in (("model_then_protobuf_us", model), ("receipt_fields_us", fields)):
        out[name] = round(min(timeit.repeat(build, number=20_000, repeat=5)) / 20_000 * 1e6, 2)
        print(f"{name}: {out[name]} us per message (min of 5 x 20,000)")
    print(f"load {out['load']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
