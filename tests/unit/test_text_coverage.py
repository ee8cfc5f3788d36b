"""core.text coverage: a candidate's words come from its content, tags and episode fields, and
``text_stems`` (the fast path) stems exactly as ``tokens`` + ``stem`` do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram.core.models import EpisodeInput, MemoryInput
from engram.core.space import MemorySpace
from engram.core.text import stem, text_candidates, text_stems, tokens
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry


@pytest.fixture
def space(tmp_path: Path) -> Iterator[MemorySpace]:
    settings = load_settings(overrides={"data_dir": tmp_path, "bootstrap_spaces": "cov", "embedder": "none"},
                             use_env=False)
    reg = SpaceRegistry(settings)
    try:
        yield reg.get("cov")
    finally:
        reg.close()


def test_words_in_tags_and_episode_fields_count_as_covered(space: MemorySpace) -> None:
    """A lone hit covering every query word scores 1.0 (0.6 coverage + 0.4 relative BM25): the
    words may sit in the content, the tags or an episode's where/who fields."""
    space.remember(MemoryInput(id="m", content="alpha", tags=["betas"]))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    space.remember(EpisodeInput(id="e", when=when, what="delta", where_location="harbour", who=["Zora"]))
    for query in ("alpha beta", "delta harbour zora"):
        found = text_candidates(space, query, limit=5)
        assert list(found.values()) == [pytest.approx(1.0)], query


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdeisnA_ -'\u017f\u00df\u0301\u00e9\u0130\u212a1"), max_size=60))
def test_text_stems_equals_stemming_each_token(text: str) -> None:
    assert text_stems(text) == {stem(w) for w in tokens(text)}


def test_long_texts_are_stemmed_but_not_remembered() -> None:
    """Only short texts are kept by text_stems's memo (a long memory must not be held in memory)."""
    from engram.core import text

    text._remembered_stems.cache_clear()
    long = "walking " * (text.STEMS_TEXT_MAX_CHARS // 8 + 1) + "breads"
    assert text_stems(long) == {"walk", "bread"}
    assert text._remembered_stems.cache_info().currsize == 0
    assert text_stems("walking breads") == {"walk", "bread"}
    assert text._remembered_stems.cache_info().currsize == 1
