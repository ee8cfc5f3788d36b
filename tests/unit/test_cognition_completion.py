"""Pattern completion: a partial cue is completed from the space's own episodes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engram.core.models import CompleteInput, EpisodeInput
from engram.errors import CueTooWeak
from engram.service import EngramService
from engram.settings import load_settings

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[EngramService]:
    service = EngramService(
        load_settings(overrides={
            "embedder": "none", "data_dir": tmp_path, "bootstrap_spaces": ("diary",),
        }, use_env=False)
    )
    space = service.space("diary")
    space.remember(
        EpisodeInput(
            id="cafe",
            what="coffee with Ana",
            where_location="Blue Bottle cafe",
            who=["Ana"],
            when=T0,
            embedding=[1.0, 0.0, 0.0, 0.0, 0.2, 0.1, 0.0, 0.0],
        )
    )
    space.remember(
        EpisodeInput(
            id="dentist",
            what="dentist checkup",
            where_location="city clinic",
            who=["Dr Lee"],
            when=T0 + timedelta(days=7),
            embedding=[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0],
        )
    )
    space.remember(
        EpisodeInput(
            id="cafe-2",
            what="coffee with Ana and Bo",
            who=["Ana", "Bo"],
            when=T0 + timedelta(days=14),
            embedding=[0.9, 0.0, 0.1, 0.0, 0.2, 0.1, 0.0, 0.0],
        )
    )
    yield service
    service.close()


def field(hyp, name):  # type: ignore[no-untyped-def]
    return next(f for f in hyp.fields if f.field == name)


def test_fills_the_missing_where_from_the_matching_episode(svc: EngramService) -> None:
    result = svc.cognition("diary").complete(CompleteInput(what="coffee with Ana", who=["Ana"]))
    best = result.best
    assert best.episode["memory_id"] == "cafe"
    where = field(best, "where_location")
    assert (where.value, where.source, where.from_memory_ids) == ("Blue Bottle cafe", "recalled", ["cafe"])
    assert field(best, "what").source == "given" and field(best, "what").confidence == 1.0
    assert 0.5 < where.confidence <= 1.0
    assert [a.episode["memory_id"] for a in result.alternatives][:1] == ["cafe-2"]


def test_reconstructs_a_field_the_match_lacks_from_similar_episodes(svc: EngramService) -> None:
    result = svc.cognition("diary").complete(CompleteInput(what="coffee with Ana and Bo"))
    assert result.best.episode["memory_id"] == "cafe-2"
    where = field(result.best, "where_location")
    assert (where.value, where.source, where.from_memory_ids) == (
        "Blue Bottle cafe",
        "reconstructed",
        ["cafe"],
    )
    assert where.confidence < result.best.confidence.value


def test_completes_from_a_partial_embedding(svc: EngramService) -> None:
    result = svc.cognition("diary").complete(CompleteInput(embedding=[0.0, 1.0, 0.0]))
    assert result.best.episode["memory_id"] == "dentist"
    assert result.best.episode["where_location"] == "city clinic"
    emb = field(result.best, "embedding")
    assert emb.source == "reconstructed" and len(emb.value) == 8 and emb.value[:3] == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "cue",
    [
        CompleteInput(),
        CompleteInput(what="quantum chromodynamics seminar"),
        CompleteInput(embedding=[1.0]),
    ],
)
def test_weak_cues_are_refused(svc: EngramService, cue: CompleteInput) -> None:
    with pytest.raises(CueTooWeak) as err:
        svc.cognition("diary").complete(cue)
    assert err.value.code == "CUE_TOO_WEAK" and err.value.http_status == 422
