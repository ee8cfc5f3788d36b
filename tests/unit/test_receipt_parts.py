"""``remember_batch(receipts="parts")``: the plain values StreamingRemember encodes itself are
the very receipt a full batch gives (``ReceiptParts.receipt()``), auto-links included."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engram.core.models import MemoryInput, ReceiptParts, StoreReceipt
from engram.testing import FakeClock, make_service

VEC = [1.0, 0.0, 0.0, 0.0]
NEAR = [0.9, 0.1, 0.0, 0.0]


def test_parts_are_the_full_receipt(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.25)
    svc = make_service(tmp_path, ["parts"], clock=clock)

    async def run() -> tuple[list[object], list[object]]:
        items = [MemoryInput(id="a1", content="first", embedding=VEC, confidence=0.97, auto_link=True),
                 MemoryInput(id="a2", content="second", embedding=NEAR, confidence=0.3, auto_link=True)]
        full = (await svc.remember_batch("parts", items)).results
        again = [MemoryInput(id="b1", content="first", embedding=VEC, confidence=0.97, auto_link=True),
                 MemoryInput(id="b2", content="second", embedding=NEAR, confidence=0.3, auto_link=True)]
        parts = (await svc.remember_batch("parts", again, receipts="parts")).results
        return full, parts

    try:
        full, parts = asyncio.run(run())
    finally:
        svc.close()
    assert all(isinstance(r, StoreReceipt) for r in full)
    assert all(isinstance(p, ReceiptParts) for p in parts)
    for f, p in zip(full, parts, strict=True):
        assert isinstance(f, StoreReceipt) and isinstance(p, ReceiptParts)
        built = p.receipt()
        assert built.memory_id == p.memory_id and built.lsn == p.lsn > f.lsn
        same = {"memory_id", "lsn", "auto_links"}
        assert built.model_dump(exclude=same) == f.model_dump(exclude=same)
        # b1 and b2 link to the first batch's memories: by id, not rowid, strengths rounded.
        assert built.auto_links and {a.target_id for a in built.auto_links} <= {"a1", "a2"}
        assert all(a.strength == round(a.strength, 6) for a in built.auto_links)
