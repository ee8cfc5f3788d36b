"""Decay with an injected clock (no sleeping) and reinforcement persisted in the background."""

from __future__ import annotations

from pathlib import Path

from engram.cognition.recall import recall
from engram.core.decay import FLOOR, retention
from engram.core.models import Cue, MemoryInput
from engram.testing import FakeClock, make_service

HOUR = 3600.0


def test_retention_curve_is_monotone_floored_and_continuous() -> None:
    points = [retention(h * HOUR, 1.0) for h in (0, 1, 12, 24, 48, 24 * 30, 24 * 3650)]
    assert points[0] == 1.0
    assert points == sorted(points, reverse=True)
    assert points[-1] == FLOOR
    assert abs(retention(24 * HOUR - 1, 1.0) - retention(24 * HOUR + 1, 1.0)) < 1e-4  # no jump at the knee


def test_activation_fades_with_time_and_recall_reinforces(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = make_service(tmp_path, ["decay"], clock=clock)
    space = svc.space("decay")
    space.remember(
        MemoryInput(id="m", content="the keys are in the blue bowl", confidence=0.8, decay_rate=1.0)
    )
    fresh = space.get("m").activation
    clock.now += 48 * HOUR
    faded = space.get("m").activation
    assert faded < fresh
    res = recall(space, Cue(query="keys bowl"))
    assert [i.memory.id for i in res.memories.vivid + res.memories.associated] == ["m"]
    # Reinforcement is queued behind the recall, never awaited by it; any later
    # write through the same single writer commits after it (FIFO), so a
    # barrier write proves it is durable without sleeping.
    space.store.write(lambda conn, lsn: None, mutates=False)  # type: ignore[union-attr]
    after = space.get("m")
    assert after.access_count == 1
    assert after.activation > faded
    svc.close()
