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
