"""Recognition (known/unknown), reminiscence (time order) and introspection (counts)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engram.core.models import (
    AssociateInput,
    ConsolidateInput,
    EpisodeInput,
    MemoryInput,
    MemoryType,
    RecognizeInput,
    ReminisceQuery,
)
from engram.service import EngramService
from engram.settings import load_settings

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[EngramService]:
    service = EngramService(
        load_settings(
            overrides={"embedder": "none",
                "data_dir": tmp_path,
                "bootstrap_spaces": ("life",),
                "episodic_adjacency_seconds": 0.0,
            },
            use_env=False,
        )
    )
    space = service.space("life")
    space.remember(
        MemoryInput(id="fact", content="the capital of France is Paris", embedding=[1.0, 0.0, 0.0])
    )
    space.remember(
        MemoryInput(
            id="howto",
            content="tie a bowline knot",
            memory_type=MemoryType.procedural,
            embedding=[0.0, 1.0, 0.0],
        )
    )
    # stored out of time order on purpose
    space.remember(
        EpisodeInput(
            id="trip-3", what="Paris trip: flew home", when=T0 + timedelta(days=3), embedding=[0.7, 0.0, 0.7]
        )
    )
    space.remember(
        EpisodeInput(id="trip-1", what="Paris trip: landed at CDG", when=T0, embedding=[0.7, 0.1, 0.7])
    )
    space.remember(
        EpisodeInput(
            id="trip-2",
            what="Paris trip: visited the Louvre",
            when=T0 + timedelta(days=1),
            embedding=[0.7, 0.05, 0.7],
        )
    )
    space.remember(
        EpisodeInput(
            id="work", what="quarterly review meeting", when=T0 + timedelta(days=2), embedding=[0.0, 0.0, 1.0]
        )
    )
    yield service
    service.close()


def test_recognize_known_and_unknown(svc: EngramService) -> None:
    cog = svc.cognition("life")
    known = cog.recognize(RecognizeInput(content="The capital of France is Paris"))
    assert known.recognized and known.familiarity == 1.0 and known.matches[0].memory_id == "fact"
    assert known.confidence.category.value in ("high", "certain")
    by_vector = cog.recognize(RecognizeInput(embedding=[0.99, 0.01, 0.0]))
    assert by_vector.recognized and by_vector.matches[0].memory_id == "fact"
    unknown = cog.recognize(RecognizeInput(content="how to bake sourdough bread"))
    assert not unknown.recognized and unknown.familiarity < 0.8
    svc.space("life").forget("fact")
    assert not cog.recognize(RecognizeInput(content="the capital of France is Paris")).recognized


def test_reminisce_tells_episodes_in_time_order(svc: EngramService) -> None:
    cog = svc.cognition("life")
    about = cog.reminisce(ReminisceQuery(topic="Paris trip"))
    assert [e.id for e in about.episodes] == ["trip-1", "trip-2", "trip-3"]  # episodes only, no "fact"
    window = cog.reminisce(
        ReminisceQuery(time_start=T0 + timedelta(hours=1), time_end=T0 + timedelta(days=2))
    )
    assert [e.id for e in window.episodes] == ["trip-2", "work"]
    both = cog.reminisce(ReminisceQuery(embedding=[0.7, 0.05, 0.7], time_end=T0 + timedelta(days=2)))
    assert [e.id for e in both.episodes] == ["trip-1", "trip-2", "work"]


def test_introspect_counts(svc: EngramService) -> None:
    cog = svc.cognition("life")
    cog.associate(AssociateInput(source_id="fact", target_id="trip-1"))
    cog.consolidate(ConsolidateInput(similarity=0.95))
    svc.space("life").forget("howto")
    stats = cog.introspect()
    assert stats.memory_space_id == "life" and stats.memories == 6 and stats.suppressed == 1
    assert stats.by_type == {"episodic": 4, "semantic": 1}
    assert stats.by_consolidation_state == {"consolidated": 3, "recent": 1}
    assert stats.associations == 2 and stats.beliefs == 1
    assert 0.0 < stats.average_activation <= 1.0
    assert stats.last_consolidation is not None and stats.dimension == 3 and stats.storage_bytes > 0
    assert "ready" in stats.index
