"""Input rules shared by every transport (core/models.py): vector components are numbers, numeric
times are plausible Unix seconds, a reminisce window runs forwards; errors carry suggestions; a
vector with components large enough to overflow a float32 norm is still found by its direction."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from engram.cognition.recall import recall
from engram.core.models import (
    CompleteInput,
    Cue,
    EpisodeInput,
    MemoryInput,
    RecognizeInput,
    ReminisceQuery,
)
from engram.errors import EngramError, StorageError, _all_subclasses
from engram.service import EngramService
from engram.settings import load_settings


@pytest.mark.parametrize("model,extra", [
    (MemoryInput, {}), (Cue, {}), (RecognizeInput, {}), (ReminisceQuery, {}), (CompleteInput, {}),
    (EpisodeInput, {"when": "2026-01-01T00:00:00Z"}),
])
@pytest.mark.parametrize("bad", [[True, 0.5], [0.5, False], ["0.5", 1.0]])
def test_embedding_components_are_numbers_not_booleans_or_strings(model: Any, extra: dict[str, Any],
                                                                   bad: list[Any]) -> None:
    with pytest.raises(ValidationError) as ei:
        model(embedding=bad, **extra)
    assert ei.value.errors()[0]["loc"][0] == "embedding"
    assert model(embedding=[1, 0.5], **extra).embedding == [1.0, 0.5]  # ints are numbers


@pytest.mark.parametrize("when", [-1, 0, 0.5, 99_999_999_999_999, 1e300, "-1", "0.5", "nan", "inf", True])
def test_implausible_numeric_times_are_rejected_with_the_rule(when: Any) -> None:
    with pytest.raises(ValidationError) as ei:
        EpisodeInput(what="a", when=when)
    msg = str(ei.value)
    assert "Unix seconds" in msg
    for model, field, other in ((Cue, "time_start", "query"), (ReminisceQuery, "time_end", "topic"),
                                (CompleteInput, "when", "what")):
        with pytest.raises(ValidationError):
            model(**{field: when, other: "a"})


@pytest.mark.parametrize("when,expected", [
    (1, datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
    (1_700_000_000.5, datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC)),
    ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    (253_402_300_799, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("1969-07-20T20:17:00Z", datetime(1969, 7, 20, 20, 17, tzinfo=UTC)),  # ISO-8601: any real date
])
def test_plausible_times_are_accepted(when: Any, expected: datetime) -> None:
    assert EpisodeInput(what="a", when=when).when == expected


def test_a_reminisce_window_must_run_forwards() -> None:
    with pytest.raises(ValidationError, match="time_start must not be after time_end"):
        ReminisceQuery(time_start="2026-01-02T00:00:00Z", time_end="2026-01-01T00:00:00Z")
    ReminisceQuery(time_start="2026-01-01T00:00:00Z", time_end="2026-01-01T00:00:00Z")  # an instant is fine


def test_every_server_side_error_has_a_suggestion() -> None:
    assert StorageError("disk said no").to_envelope()["error"]["suggestion"]
    for cls in _all_subclasses(EngramError):
        if cls.http_status >= 500 and cls is not EngramError and cls.__module__ == "engram.errors":
            assert cls.default_suggestion, f"{cls.__name__} has no suggestion"


def test_a_vector_whose_float32_norm_overflows_is_found_by_its_direction() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        opts = {"embedder": "none", "data_dir": Path(tmp), "bootstrap_spaces": ("big",)}
        svc = EngramService(load_settings(overrides=opts, use_env=False))
        space = svc.space("big")
        space.remember(MemoryInput(id="huge", content="huge", embedding=[1e20, 1e20, 0.0, 0.0]))
        space.remember(MemoryInput(id="side", content="side", embedding=[0.0, 0.0, 1.0, 0.0]))
        _found_by_direction(space)
        svc.close()
        svc = EngramService(load_settings(overrides=opts, use_env=False))  # vectors loaded from disk
        try:
            _found_by_direction(svc.space("big"))
        finally:
            svc.close()


def _found_by_direction(space: Any) -> None:
    # the index holds unit vectors (not the raw huge ones, whose float16 copy is inf)
    for _keys, vecs in space.vectors.iter_live():
        norms = np.linalg.norm(vecs.astype(np.float64), axis=1)
        assert np.isfinite(norms).all() and np.allclose(norms, 1.0, atol=1e-2), norms
    for probe in ([1.0, 1.0, 0.0, 0.0], [3e38, 3e38, 0.0, 0.0]):
        res = recall(space, Cue(embedding=probe))
        items = [i for b in (res.memories.vivid, res.memories.associated) for i in b]
        assert items[0].memory.id == "huge" and items[0].similarity == pytest.approx(1.0, abs=1e-3)
