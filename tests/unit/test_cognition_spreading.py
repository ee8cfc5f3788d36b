"""Spreading activation: "coffee" -> "morning routine" -> "alarm clock" is found only by spreading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.cognition.recall import recall
from engram.core.models import AssociateInput, Cue, MemoryInput, RecallMode
from engram.core.space import MemorySpace
from engram.service import EngramService
from engram.settings import load_settings


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[EngramService]:
    service = EngramService(
        load_settings(overrides={
            "embedder": "none", "data_dir": tmp_path, "bootstrap_spaces": ("home",),
        }, use_env=False)
    )
    yield service
    service.close()


def chain(svc: EngramService) -> MemorySpace:
    space = svc.space("home")
    cog = svc.cognition("home")
    space.remember(MemoryInput(id="coffee", content="I drink coffee every day"))
    space.remember(MemoryInput(id="routine", content="my morning routine starts at six"))
    space.remember(MemoryInput(id="alarm", content="the alarm clock rings loudly"))
    space.remember(MemoryInput(id="stranger", content="tax forms are due in april"))
    cog.associate(AssociateInput(source_id="coffee", target_id="routine", strength=0.9))
    cog.associate(AssociateInput(source_id="routine", target_id="alarm", strength=0.9))
    return space


def ids(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [i.memory.id for i in result.memories.vivid + result.memories.associated]


def test_similarity_finds_only_the_direct_match(svc: EngramService) -> None:
    space = chain(svc)
    assert ids(recall(space, Cue(query="coffee"))) == ["coffee"]


@pytest.mark.parametrize("mode", [RecallMode.spreading, RecallMode.hybrid])
def test_spreading_reaches_the_alarm_clock_through_the_routine(svc: EngramService, mode: RecallMode) -> None:
    space = chain(svc)
    res = recall(space, Cue(query="coffee", mode=mode, trace_activation=True))
    found = ids(res)
    assert found[:3] == ["coffee", "routine", "alarm"]
    assert "stranger" not in found
    alarm = next(i for i in res.memories.vivid + res.memories.associated if i.memory.id == "alarm")
    assert alarm.source == "spreading"
    assert [s.memory_id for s in alarm.activation_path or []] == ["coffee", "routine", "alarm"]
    acts = [s.activation for s in alarm.activation_path or []]
    assert all(0.0 <= a <= 1.0 for a in acts)
    assert acts == sorted(acts, reverse=True)  # activation decays with every hop
    assert res.metadata["activation_paths"]["alarm"][-1]["memory_id"] == "alarm"


def test_max_hops_bounds_the_spread(svc: EngramService) -> None:
    space = chain(svc)
    assert ids(recall(space, Cue(query="coffee", mode=RecallMode.spreading, max_hops=1))) == [
        "coffee",
        "routine",
    ]


def test_spreading_crosses_vector_neighbourhoods(svc: EngramService) -> None:
    """Orthogonal embeddings: the target shares neither words nor direction with the cue."""
    space = svc.space("home")
    space.remember(MemoryInput(id="seed", content="espresso", embedding=[1.0, 0.0, 0.0, 0.0]))
    space.remember(MemoryInput(id="far", content="sunrise", embedding=[0.0, 0.0, 0.0, 1.0]))
    space.remember(MemoryInput(id="other", content="tax", embedding=[0.0, 1.0, 0.0, 0.0]))
    svc.cognition("home").associate(AssociateInput(source_id="seed", target_id="far", strength=0.8))
    cue = Cue(embedding=[1.0, 0.0, 0.0, 0.0], threshold=0.3, max_results=5)
    assert "far" not in ids(recall(space, cue))
    found = ids(recall(space, cue.model_copy(update={"mode": RecallMode.hybrid})))
    assert found[:2] == ["seed", "far"] and "other" not in found


def test_suppressed_memory_is_not_reached_nor_passed_through(svc: EngramService) -> None:
    space = chain(svc)
    space.forget("routine")
    found = ids(recall(space, Cue(query="coffee", mode=RecallMode.spreading)))
    assert found == ["coffee"]


def test_every_result_has_a_confidence_and_the_interval_contains_the_point(svc: EngramService) -> None:
    space = chain(svc)
    res = recall(space, Cue(query="coffee", mode=RecallMode.spreading))
    ci = res.confidence_interval
    assert 0.0 <= ci.lower <= ci.point <= ci.upper <= 1.0
    for item in res.memories.vivid + res.memories.associated:
        assert 0.0 <= item.confidence.value <= 1.0 and item.confidence.reasoning
        assert 0.0 <= item.activation <= 1.0 and 0.0 <= item.score <= 1.0
    empty = recall(space, Cue(query="zebra"))
    assert empty.confidence_interval.point == 0.0 and empty.recall_confidence.category.value == "none"


def test_spread_returns_what_it_has_when_the_time_budget_runs_out() -> None:
    from engram.cognition.spreading import spread

    ring = {i: [((i + 1) % 6, 1.0)] for i in range(6)}  # a cycle
    ticks = iter([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # the budget is gone before the third hop

    res = spread(
        {0: 1.0},
        lambda nodes: {n: ring[n] for n in nodes},
        max_hops=10,
        decay=0.9,
        threshold=0.01,
        budget_seconds=0.5,
        clock=lambda: next(ticks),
    )
    assert res.truncated and res.hops_done == 2
    assert sorted(res.hits) == [0, 1, 2]
    assert res.hits[2].activation == pytest.approx(0.81)
