"""core.bm25cache: text ranking from remembered per-word scores is FTS5's own, and writes drop it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.core import bm25cache
from engram.core.models import ForgetMode, MemoryInput, MemoryPatch
from engram.core.space import MemorySpace
from engram.core.text import quoted, text_candidates
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry

WORDS = ["walk", "walking", "walks", "bread", "sourdough", "starter", "river", "garden", "tomato",
         "violin", "lesson", "sister", "trip", "lisbon", "coffee", "rain", "summer", "market"]


@pytest.fixture
def space(tmp_path: Path) -> Iterator[MemorySpace]:
    settings = load_settings(overrides={"data_dir": tmp_path, "bootstrap_spaces": "bm25", "embedder": "none"},
                             use_env=False)
    reg = SpaceRegistry(settings)
    try:
        yield reg.get("bm25")
    finally:
        reg.close()


def _fill(space: MemorySpace, n: int, seed: int = 7) -> None:
    r = random.Random(seed)
    for i in range(n):
        words = [r.choice(WORDS) for _ in range(r.randint(1, 12))]  # repeats and lengths vary
        space.remember(MemoryInput(id=f"m{i}", content=" ".join(words), tags=[r.choice(WORDS)]))


def _ids(space: MemorySpace, found: dict[int, float]) -> set[str]:
    return {str(row[1]) for row in space.rows_by_rowid(found).values()}


def _remembered(space: MemorySpace) -> set[str]:
    known = bm25cache._cache.get(space)
    return set(known.phrases) if known is not None else set()


QUERIES = ["walk walking walks bread", "sourdough starter river", "violin lesson sister trip lisbon",
           "coffee rain summer market garden tomato", "walks", "nothing matches zzz", "tomato"]


def test_remembered_scores_rank_exactly_as_fts5(space: MemorySpace) -> None:
    """The cached ranking equals FTS5's ``ORDER BY bm25`` of the OR query: same rows, same order,
    the same floats (words that stem alike, repeated words, tags, a word found nowhere)."""
    _fill(space, 300)
    conn = space.check_healthy().reader()
    for query in QUERIES:
        phrases = [quoted(w) for w in dict.fromkeys(query.split())]
        bm25cache.ranking(space, conn, phrases)  # may be None: words new at this state
        got = bm25cache.ranking(space, conn, phrases)
        assert got is not None, "words asked for again on an unchanged index come from the cache"
        want = conn.execute(
            "SELECT rowid, bm25(memories_fts) AS r FROM memories_fts WHERE memories_fts MATCH ? ORDER BY r",
            (" OR ".join(phrases),),
        ).fetchall()
        assert list(zip(got[0].tolist(), got[1].tolist(), strict=True)) == [(r, s) for r, s in want], query
    assert _remembered(space) >= {quoted(w) for w in WORDS}


def test_text_candidates_are_the_same_with_and_without_the_cache(space: MemorySpace,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(space, 300, seed=11)
    for i in range(0, 300, 7):
        space.forget(f"m{i}", ForgetMode.suppress)  # the cached path skips suppressed rows too
    with_cache = [text_candidates(space, q, limit=20) for q in QUERIES * 2]
    assert _remembered(space), "the second round was answered from remembered scores"
    monkeypatch.setattr(bm25cache, "POSTINGS_CACHED", 0)
    without = [text_candidates(space, q, limit=20) for q in QUERIES * 2]
    assert with_cache == without
    assert any(len(found) == 20 for found in without)


def _warm(space: MemorySpace, query: str) -> dict[int, float]:
    text_candidates(space, query, limit=10)  # words new at an index state: FTS5 answers
    found = text_candidates(space, query, limit=10)
    assert _remembered(space), "the second query on an unchanged index fills the cache"
    return found


def test_a_stored_memory_is_found_after_the_cache_was_filled(space: MemorySpace) -> None:
    _fill(space, 60)
    before = _warm(space, "sourdough starter")
    space.remember(MemoryInput(id="new", content="sourdough sourdough starter starter"))
    after = text_candidates(space, "sourdough starter", limit=10)
    assert "new" in _ids(space, after) and "new" not in _ids(space, before)
    assert not _remembered(space), "the write dropped what was remembered"
    again = text_candidates(space, "sourdough starter", limit=10)
    assert _remembered(space) and again == after


def test_changed_and_deleted_memories_are_ranked_by_their_new_text(space: MemorySpace) -> None:
    _fill(space, 60)
    space.remember(MemoryInput(id="x", content="violin violin violin lesson"))
    assert "x" in _ids(space, _warm(space, "violin lesson"))
    space.update("x", patch=MemoryPatch(content="garden tomato"))
    assert "x" not in _ids(space, text_candidates(space, "violin lesson", limit=10))
    assert "x" in _ids(space, _warm(space, "garden tomato"))
    space.forget("x", ForgetMode.delete)
    assert "x" not in _ids(space, text_candidates(space, "garden tomato", limit=10))
    assert "x" not in _ids(space, text_candidates(space, "garden tomato", limit=10))


def test_suppressed_best_matches_do_not_hide_the_rest_from_the_cache(space: MemorySpace) -> None:
    """Suppression leaves the index (and the cache) as it is; the rows read after the ranking
    skip suppressed ones, window after window."""
    for i in range(60):
        space.remember(MemoryInput(id=f"top{i}", content="tea tea tea"))
    for i in range(5):
        space.remember(MemoryInput(id=f"low{i}", content="tea and many other unrelated words here"))
    _warm(space, "tea")
    for i in range(60):
        space.forget(f"top{i}", ForgetMode.suppress)
    found = text_candidates(space, "tea", limit=10)
    assert _remembered(space) == {quoted("tea")}, "suppression did not change the index"
    assert sorted(_ids(space, found)) == [f"low{i}" for i in range(5)]


def test_new_words_are_answered_by_fts5_until_they_come_back(space: MemorySpace) -> None:
    """Mostly new words at the index's state: FTS5 answers and nothing is fetched; asked again,
    they are fetched and remembered; after a write every word is new again."""
    _fill(space, 60)
    conn = space.check_healthy().reader()
    phrases = [quoted(w) for w in ("river", "garden", "tomato")]
    assert bm25cache.ranking(space, conn, phrases) is None
    assert _remembered(space) == set()
    assert bm25cache.ranking(space, conn, phrases) is not None
    assert _remembered(space) == set(phrases)
    # one new word among three known ones is fetched at once
    assert bm25cache.ranking(space, conn, [*phrases, quoted("violin")]) is not None
    assert _remembered(space) == {*phrases, quoted("violin")}
    space.remember(MemoryInput(id="w", content="river"))
    assert bm25cache.ranking(space, conn, phrases) is None
    assert _remembered(space) == set()


def test_a_batch_indexed_after_its_inserts_drops_the_cache(space: MemorySpace) -> None:
    """A batch's full text is indexed once, after its INSERTs (SpaceStore.defer_fts): the index
    changes at that commit, and the cache with it."""
    _fill(space, 60)
    _warm(space, "lisbon trip")
    pending = space.submit_remember_batch([MemoryInput(id=f"b{i}", content="lisbon lisbon trip trip")
                                           for i in range(3)])
    for entry in pending:
        assert not isinstance(entry, Exception)
        entry[1](entry[0].result())
    found = _ids(space, text_candidates(space, "lisbon trip", limit=10))
    assert {"b0", "b1", "b2"} <= found


def test_reinforcement_keeps_the_cache(space: MemorySpace) -> None:
    """What recall writes back (access counts, activation) leaves the index alone: the scores
    stay remembered across it, which is what makes them useful on a live space."""
    from engram.cognition.recall import recall
    from engram.core.models import Cue

    _fill(space, 60)
    _warm(space, "river garden")
    conn = space.check_healthy().reader()
    key = bm25cache.index_key(conn)
    res = recall(space, Cue(query="river garden", max_results=5))
    assert res.results and space.reinforcer is not None
    space.reinforcer.flush()
    space.check_healthy().write(lambda c, lsn: None, mutates=False)  # after the reinforcement's write
    assert conn.execute("SELECT sum(access_count) FROM memories").fetchone()[0] > 0
    assert bm25cache.index_key(conn) == key
    assert {quoted("river"), quoted("garden")} <= _remembered(space)


def test_filtered_and_episode_queries_walk_the_cached_ranking_to_fts5s_answer(
        space: MemorySpace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metadata filter or episodes-only query over the remembered ranking reads it window by
    window until enough rows pass: the same rows and scores as FTS5's filtered query, also for a
    filter that keeps 1 row in 50 (the walk spans several windows)."""
    from datetime import UTC, datetime

    from engram.cognition.filtered import FilterScope
    from engram.core.models import EpisodeInput

    r = random.Random(3)
    for i in range(400):
        words = " ".join(r.choice(WORDS) for _ in range(r.randint(1, 10)))
        space.remember(MemoryInput(id=f"m{i}", content=words, metadata={"b": i % 50}))
    for i in range(30):
        when = datetime(2026, 1, 1 + i % 28, tzinfo=UTC)
        space.remember(EpisodeInput(id=f"e{i}", when=when, what=" ".join(r.choice(WORDS) for _ in range(6))))
    scopes = [FilterScope.of({"b": {"$lt": 1}}), FilterScope.of({"b": {"$in": [3, 4, 5]}})]
    wheres = [s.where for s in scopes if s is not None]
    assert len(wheres) == 2

    def ask() -> list[dict[int, float]]:
        out = []
        for q in QUERIES[:4]:
            out += [text_candidates(space, q, limit=10, where=w) for w in wheres]
            out.append(text_candidates(space, q, limit=10, episodes_only=True))
        return out

    ask()
    with_cache = ask()
    assert _remembered(space), "the second round was answered from remembered scores"
    monkeypatch.setattr(bm25cache, "POSTINGS_CACHED", 0)
    assert with_cache == ask()
    assert all(with_cache[::3]) and all(with_cache[2::3])  # the 2 % filter and episodes find rows
    assert any(len(found) == 10 for found in with_cache[1::3])
