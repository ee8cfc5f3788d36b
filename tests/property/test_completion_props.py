"""Pattern completion over any episode set and any partial cue (Hypothesis): it either completes or
says the cue is too weak (CueTooWeak / DimensionMismatch), never raises anything else, and every
confidence it reports is finite and within [0, 1].

The episode sets include the shapes that once divided by zero (every voter scoring 0), equal and
extreme timestamps, empty fields, a single episode, identical episodes, and embedding components
large enough to overflow a float32 norm.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.core.models import CompleteInput, Completion, EpisodeInput
from engram.errors import CueTooWeak, DimensionMismatch
from engram.service import EngramService
from engram.settings import load_settings

DIM = 4
TIMES = [
    datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC),
    datetime(2030, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
]
WORDS = ["x", "other", "coffee", "Ana", "office", "café", ""]
PLACES = [None, "", "office", "home", "Office"]
PEOPLE = ["Ana", "Bo", "ana", ""]

texts = st.lists(st.sampled_from(WORDS), max_size=3).map(" ".join)
components = st.one_of(st.floats(-1.0, 1.0, allow_nan=False),
                       st.sampled_from([0.0, 1e-30, 1e20, -3e38, 3e38]))
vectors = st.lists(components, min_size=DIM, max_size=DIM).filter(lambda v: any(v))


@st.composite
def episodes(draw: Any) -> dict[str, Any]:
    ep: dict[str, Any] = {
        "what": draw(texts),
        "when": draw(st.sampled_from(TIMES)),
        "where_location": draw(st.sampled_from(PLACES)),
        "who": draw(st.lists(st.sampled_from(PEOPLE).filter(bool), max_size=3)),
        "why": draw(st.one_of(st.none(), texts)),
        "how": draw(st.one_of(st.none(), texts)),
    }
    if draw(st.booleans()) or not ep["what"].strip():
        ep["embedding"] = draw(vectors)
    return ep


episode_sets = st.one_of(
    st.lists(episodes(), min_size=1, max_size=8),
    episodes().flatmap(lambda ep: st.integers(1, 5).map(lambda n: [ep] * n)),  # all identical
)


@st.composite
def cues(draw: Any) -> dict[str, Any]:
    cue: dict[str, Any] = {}
    if draw(st.booleans()):
        cue["what"] = draw(texts)
    if draw(st.booleans()):
        cue["when"] = draw(st.sampled_from(TIMES))
    if draw(st.booleans()):
        cue["where_location"] = draw(st.sampled_from(PLACES))
    if draw(st.booleans()):
        cue["who"] = draw(st.lists(st.sampled_from(PEOPLE), max_size=3))
    if draw(st.booleans()):
        cue["why"] = draw(texts)
    if draw(st.booleans()):
        cue["embedding"] = draw(vectors)[: draw(st.integers(1, DIM))]
        if not any(cue["embedding"]):
            del cue["embedding"]
    cue["min_confidence"] = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    cue["max_hypotheses"] = draw(st.integers(1, 5))
    return cue


@pytest.fixture(scope="module")
def svc() -> Iterator[EngramService]:
    with tempfile.TemporaryDirectory() as tmp:
        service = EngramService(load_settings(overrides={
            "embedder": "none", "data_dir": Path(tmp), "durability": "buffered",
        }, use_env=False))
        yield service
        service.close()


def _unit(value: float, what: str) -> None:
    assert math.isfinite(value) and 0.0 <= value <= 1.0, f"{what} = {value!r}"


def _check(result: Completion) -> None:
    for hyp in (result.best, *result.alternatives):
        _unit(hyp.confidence.value, "hypothesis confidence")
        assert hyp.source_memory_ids
        for f in hyp.fields:
            _unit(f.confidence, f"confidence of field {f.field} ({f.source})")
            if f.field == "embedding":
                assert all(math.isfinite(v) for v in f.value)


_ids = itertools.count()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(eps=episode_sets, cue=cues())
def test_complete_never_raises_and_reports_unit_confidences(svc: EngramService, eps: list[dict[str, Any]],
                                                            cue: dict[str, Any]) -> None:
    sid = f"cp-{next(_ids):05d}"
    svc.registry.create(sid)
    try:
        space = svc.space(sid)
        for ep in eps:
            space.remember(EpisodeInput(**ep))
        try:
            item = CompleteInput(**cue)
        except ValueError:
            return  # the cue itself is invalid input (a 400 on every transport)
        try:
            result = svc.cognition(sid).complete(item)
        except (CueTooWeak, DimensionMismatch):
            return
        _check(result)
    finally:
        svc.registry.delete(sid)


def test_the_reported_repro_completes(svc: EngramService) -> None:
    """Issue 11: two episodes, a cue matching one on `what` only -> ZeroDivisionError before."""
    svc.registry.create("repro")
    try:
        space = svc.space("repro")
        space.remember(EpisodeInput(what="x", when=datetime(2026, 11, 1, tzinfo=UTC)))
        space.remember(EpisodeInput(what="other", where_location="office",
                                    when=datetime(2020, 1, 1, tzinfo=UTC)))
        cue = CompleteInput(what="x", when=datetime(2030, 1, 1, tzinfo=UTC))
        result = svc.cognition("repro").complete(cue)
        _check(result)
        assert result.best.episode["what"] == "x"
        # the other episode matches nothing, so it cannot vote a place into this one
        assert "where_location" not in {f.field for f in result.best.fields}
    finally:
        svc.registry.delete("repro")
