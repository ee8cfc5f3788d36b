"""Recall reinforcement is coalesced (core.reinforce) and still exact, ordered and durable."""

from __future__ import annotations

from pathlib import Path

from engram.cognition.recall import recall
from engram.core.models import Cue, MemoryInput
from engram.testing.inprocess import FakeClock, make_service

HOUR = 3600.0


def _barrier(space: object) -> None:
    """A write through the space's single writer: it commits after everything queued before it."""
    space.store.write(lambda conn, lsn: None, mutates=False)  # type: ignore[attr-defined]


def test_many_recalls_add_up_exactly_before_a_later_write(tmp_path: Path) -> None:
    # A linger far longer than the test: only the next write can have flushed the recalls.
    svc = make_service(tmp_path, ["reinf"], clock=FakeClock(), reinforce_linger_ms=600_000)
    space = svc.space("reinf")
    space.remember(MemoryInput(id="m", content="the keys are in the blue bowl", confidence=0.5))
    base = space.get("m")
    for _ in range(3):
        res = recall(space, Cue(query="keys bowl"))
        assert [i.memory.id for i in res.memories.vivid + res.memories.associated] == ["m"]
    _barrier(space)
    after = space.get("m")
    assert after.access_count == base.access_count + 3
    assert after.activation > base.activation
    svc.close()


def test_pending_reinforcement_is_written_on_close(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = make_service(tmp_path, ["reinf"], clock=clock, reinforce_linger_ms=600_000)
    space = svc.space("reinf")
    space.remember(MemoryInput(id="m", content="the keys are in the blue bowl"))
    recall(space, Cue(query="keys bowl"))
    recall(space, Cue(query="blue keys"))
    svc.close()
    again = make_service(tmp_path, [], clock=clock)
    assert again.space("reinf").get("m").access_count == 2
    again.close()


def test_linger_zero_writes_at_once(tmp_path: Path) -> None:
    svc = make_service(tmp_path, ["reinf"], clock=FakeClock(), reinforce_linger_ms=0)
    space = svc.space("reinf")
    space.remember(MemoryInput(id="m", content="the keys are in the blue bowl"))
    recall(space, Cue(query="keys bowl"))
    # With no linger the write was submitted by the recall itself: waiting for the writer to
    # drain (a barrier submitted with the hook off) shows it, no flush by a later write needed.
    space.store.write(lambda conn, lsn: None, mutates=False, flush_first=False)  # type: ignore[union-attr]
    assert space.get("m").access_count == 1
    svc.close()
