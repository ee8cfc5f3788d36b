"""Consolidation: two clearly separate groups of episodes become two beliefs citing them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engram.core.models import ConsolidateInput, ConsolidationState, EpisodeInput, ForgetMode
from engram.errors import BeliefNotFound, ShuttingDown
from engram.service import EngramService
from engram.testing import make_service

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
COFFEE = [1.0, 0.1, 0.0, 0.0]
GYM = [0.0, 0.0, 0.1, 1.0]


def service(root: Path, space: str = "dreams", **settings: Any) -> EngramService:
    return make_service(root, [space], **settings)


def episodes() -> list[EpisodeInput]:
    out = []
    for i in range(3):
        out.append(
            EpisodeInput(
                id=f"coffee-{i}",
                what=f"espresso at the corner cafe, day {i}",
                when=T0 + timedelta(days=i),
                embedding=[v + 0.01 * i for v in COFFEE],
            )
        )
        out.append(
            EpisodeInput(
                id=f"gym-{i}",
                what=f"evening run at the gym, day {i}",
                when=T0 + timedelta(days=i, hours=10),
                embedding=[v + 0.01 * i for v in GYM],
            )
        )
    out.append(EpisodeInput(id="odd", what="lost an umbrella", when=T0, embedding=[0.0, 1.0, 0.0, 0.0]))
    return out


def load(svc: EngramService, space: str, items: list[EpisodeInput]) -> None:
    for ep in items:
        svc.space(space).remember(ep)


def citations(report: Any) -> list[list[str]]:
    return sorted(sorted(c.episode_id for c in b.citations) for b in report.beliefs)


def test_two_groups_make_two_beliefs_and_episodes_move_to_consolidated(tmp_path: Path) -> None:
    svc = service(tmp_path)
    load(svc, "dreams", episodes())
    sub = svc.space("dreams").events.subscribe(["consolidation"])
    report = svc.cognition("dreams").consolidate(ConsolidateInput())
    assert citations(report) == [["coffee-0", "coffee-1", "coffee-2"], ["gym-0", "gym-1", "gym-2"]]
    assert report.episodes_considered == 7 and report.episodes_consolidated == 6 and report.clusters == 2
    for belief in report.beliefs:
        assert 0.0 < belief.strength <= 1.0 and 0.0 < belief.schema_confidence <= 1.0
        assert all(c.preview and 0.9 < c.similarity <= 1.0 for c in belief.citations)
    coffee = next(b for b in report.beliefs if b.citations[0].episode_id.startswith("coffee"))
    assert "espresso" in coffee.content and "cafe" in coffee.content
    full = svc.cognition("dreams").get_belief(coffee.id)
    assert full.centroid is not None and full.centroid[0] > 0.9
    space = svc.space("dreams")
    assert space.get("coffee-1").consolidation_state is ConsolidationState.consolidated
    assert space.get("odd").consolidation_state is ConsolidationState.recent
    event = sub.get_nowait()
    assert event is not None and event.data["run_id"] == report.run_id and event.data["beliefs"] == 2
    svc.close()

    svc = service(tmp_path)  # beliefs and states are durable
    page = svc.cognition("dreams").list_beliefs()
    assert sorted(b.id for b in page.beliefs) == sorted(b.id for b in report.beliefs)
    assert page.last_consolidation is not None
    assert svc.space("dreams").get("gym-2").consolidation_state is ConsolidationState.consolidated
    with pytest.raises(BeliefNotFound):
        svc.cognition("dreams").get_belief("belief-nope")
    svc.close()


def test_same_input_in_any_order_gives_the_same_beliefs(tmp_path: Path) -> None:
    items = episodes()
    reports = []
    for n in range(2):
        svc = service(tmp_path / str(n))
        shuffled = items[:]
        random.Random(n).shuffle(shuffled)
        load(svc, "dreams", shuffled)
        reports.append(svc.cognition("dreams").consolidate(ConsolidateInput()))
        svc.close()

    def essence(r: Any) -> list[Any]:
        return [
            (b.id, b.content, b.strength, b.schema_confidence, [c.model_dump() for c in b.citations])
            for b in r.beliefs
        ]

    assert essence(reports[0]) == essence(reports[1]) and reports[0].run_id == reports[1].run_id


def test_recomputes_when_the_space_changes(tmp_path: Path) -> None:
    svc = service(tmp_path)
    load(svc, "dreams", episodes())
    cog = svc.cognition("dreams")
    first = cog.consolidate(ConsolidateInput())
    svc.space("dreams").forget("gym-0", ForgetMode.delete)
    svc.space("dreams").forget("gym-1", ForgetMode.suppress)
    second = cog.consolidate(ConsolidateInput())
    assert citations(second) == [["coffee-0", "coffee-1", "coffee-2"]]
    assert second.run_id != first.run_id
    assert len(cog.list_beliefs().beliefs) == 1
    svc.close()


def test_dream_streams_progress_replay_insight_done(tmp_path: Path) -> None:
    svc = service(tmp_path)
    load(svc, "dreams", episodes())
    steps = list(svc.cognition("dreams").dream(ConsolidateInput()))
    kinds = [s.kind for s in steps]
    assert kinds[0] == "progress" and kinds[-1] == "done"
    assert kinds.count("replay") == 2 and kinds.count("insight") == 2
    assert kinds.index("replay") < kinds.index("insight")
    assert [s.progress for s in steps] == sorted(s.progress for s in steps)
    assert all(s.belief is not None for s in steps if s.kind == "insight")
    svc.close()


def test_schedule_consolidates_in_the_background_and_stops_on_close(tmp_path: Path) -> None:
    svc = service(tmp_path, consolidation_interval_seconds=0.02)
    cog = svc.cognition("dreams")
    assert cog.scheduler.running
    sub = svc.space("dreams").events.subscribe(["consolidation"])
    load(svc, "dreams", episodes())
    event = None
    while event is None or event.data["episodes_considered"] < 7:  # waits on events, not on time
        event = sub.get_blocking(timeout=30)
        assert event is not None, "the schedule never consolidated"
    assert event.data["beliefs"] == 2
    assert cog.scheduled_consolidation() is None  # nothing changed since: skipped
    svc.close()
    assert not cog.scheduler.running


def test_a_run_in_progress_blocks_neither_this_space_nor_another(tmp_path: Path) -> None:
    """Pause a dream after clustering: the space's writer is free, so stores and recalls go on."""
    from engram.cognition.recall import recall
    from engram.core.models import Cue, MemoryInput

    svc = make_service(tmp_path, ["dreams", "awake"])
    load(svc, "dreams", episodes())
    steps = svc.cognition("dreams").dream(ConsolidateInput())
    step = next(steps)
    while step.kind != "replay":  # clustered, nothing written yet
        step = next(steps)
    for space in ("dreams", "awake"):
        svc.space(space).remember(MemoryInput(id="fresh", content="a thought while dreaming"))
        res = recall(svc.space(space), Cue(query="thought while dreaming"))
        assert [i.memory.id for i in res.memories.vivid + res.memories.associated] == ["fresh"]
    rest = list(steps)
    assert rest[-1].kind == "done" and sum(s.kind == "insight" for s in rest) == 2
    svc.close()


def test_closing_the_space_cancels_a_run_before_it_writes(tmp_path: Path) -> None:
    svc = service(tmp_path)
    load(svc, "dreams", episodes())
    cog = svc.cognition("dreams")
    steps = cog.dream(ConsolidateInput())
    while next(steps).kind != "replay":
        pass
    cog.close()
    rest = list(steps)
    assert rest[-1].kind == "done" and "cancelled" in rest[-1].message
    assert cog.list_beliefs().beliefs == []
    with pytest.raises(ShuttingDown):  # never a stale report from an earlier run
        cog.consolidate(ConsolidateInput())
    svc.close()


def test_episodes_lost_while_clustering_are_not_cited(tmp_path: Path) -> None:
    svc = service(tmp_path)
    load(svc, "dreams", episodes())
    steps = svc.cognition("dreams").dream(ConsolidateInput())
    while next(steps).kind != "replay":  # clustered from a snapshot that still has them
        pass
    svc.space("dreams").forget("gym-0", ForgetMode.delete)
    svc.space("dreams").forget("coffee-0", ForgetMode.suppress)
    svc.space("dreams").forget("coffee-1", ForgetMode.suppress)
    list(steps)
    beliefs = svc.cognition("dreams").list_beliefs().beliefs
    assert [sorted(c.episode_id for c in b.citations) for b in beliefs] == [["gym-1", "gym-2"]]
    svc.close()
