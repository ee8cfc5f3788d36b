"""Text recall ranks inside FTS over a window; filters that thin the window still give exact answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engram.core.models import EpisodeInput, ForgetMode, MemoryInput
from engram.core.text import text_candidates
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry


def _registry(root: Path, space: str) -> SpaceRegistry:
    settings = load_settings(overrides={"data_dir": root, "bootstrap_spaces": space}, use_env=False)
    return SpaceRegistry(settings)


def test_episodes_below_a_window_of_better_ranked_memories_are_found(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "win")
    try:
        space = reg.get("win")
        for i in range(120):  # plain memories, denser in the word: they outrank the episodes
            space.remember(MemoryInput(id=f"m{i}", content="coffee coffee coffee"))
        what = "a long morning with one coffee and many other words"
        ids = []
        for i in range(3):
            when = datetime(2026, 1, 1 + i, tzinfo=UTC)
            ids.append(space.remember(EpisodeInput(id=f"e{i}", when=when, what=what)).memory_id)
        found = text_candidates(space, "coffee", limit=10, episodes_only=True)
        rows = space.rows_by_rowid(found)
        assert sorted(r[1] for r in rows.values()) == sorted(ids)
    finally:
        reg.close()


def test_suppressed_best_matches_do_not_hide_the_rest(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "sup")
    try:
        space = reg.get("sup")
        for i in range(60):
            space.remember(MemoryInput(id=f"top{i}", content="tea tea tea"))
        for i in range(5):
            space.remember(MemoryInput(id=f"low{i}", content="tea and many other unrelated words here"))
        for i in range(60):
            space.forget(f"top{i}", ForgetMode.suppress)
        found = text_candidates(space, "tea", limit=10)
        assert sorted(r[1] for r in space.rows_by_rowid(found).values()) == [f"low{i}" for i in range(5)]
    finally:
        reg.close()


def test_common_words_leave_the_fts_query_while_rarer_ones_remain(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """core.text.search_words: a word in more than COMMON_SHARE of a (large enough) space is not
    searched while a rarer one is; it still counts in the coverage of what is found. A query of
    common words only keeps them all; a small space searches every word."""
    from engram.core import text

    reg = _registry(tmp_path, "common")
    try:
        space = reg.get("common")
        for i in range(100):
            space.remember(MemoryInput(id=f"w{i}", content=f"weather talk number {i}"))
        for i in range(3):
            space.remember(MemoryInput(id=f"s{i}", content=f"sourdough weather {i}"))
        conn = space.check_healthy().reader()
        # Below PRUNE_MIN_MEMORIES every word is searched.
        assert text.search_words(space, conn, ["weather", "sourdough"]) == ["weather", "sourdough"]
        monkeypatch.setattr(text, "PRUNE_MIN_MEMORIES", 50)
        text._vocab.clear()
        assert text.search_words(space, conn, ["weather", "sourdough"]) == ["sourdough"]
        assert text.search_words(space, conn, ["weather", "talk"]) == ["weather", "talk"]  # all common
        found = text_candidates(space, "weather sourdough", limit=10)
        rows = space.rows_by_rowid(found)
        assert sorted(r[1] for r in rows.values()) == ["s0", "s1", "s2"]
        assert all(score > 0.6 for score in found.values())  # both words covered: coverage 1.0
        assert len(text_candidates(space, "weather talk", limit=10)) == 10
    finally:
        reg.close()
