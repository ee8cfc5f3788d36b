"""Store and recall in one space: embedding, BM25 text, context, combinations, forget."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from engram.cognition.recall import recall
from engram.core.models import Cue, EpisodeInput, ForgetMode, MemoryInput, RecallResult
from engram.core.space import MemorySpace
from engram.errors import DimensionMismatch, MemoryNotFound
from engram.spaces.registry import SpaceRegistry

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def space(registry_factory: Callable[..., SpaceRegistry]) -> MemorySpace:
    reg = registry_factory(bootstrap_spaces=("recall-test",))
    return reg.get("recall-test")


def ids(result: RecallResult) -> list[str]:
    return [it.memory.id for it in result.memories.vivid + result.memories.associated]


def unit(i: int, dim: int = 8) -> list[float]:
    v = np.zeros(dim, dtype=np.float32)
    v[i % dim] = 1.0
    v[(i + 1) % dim] = 0.1
    return v.tolist()


def test_recall_by_embedding(space: MemorySpace) -> None:
    for i in range(8):
        space.remember(MemoryInput(id=f"e{i}", content=f"vector {i}", embedding=unit(i)))
    res = recall(space, Cue(embedding=unit(3), max_results=3))
    assert ids(res)[0] == "e3"
    top = res.memories.vivid[0]
    assert top.similarity == pytest.approx(1.0, abs=1e-3) and top.source == "similarity"
    assert top.confidence.category.value in ("high", "certain") and top.confidence.reasoning
    assert res.memory_space_id == "recall-test"
    assert len(ids(res)) == 3


def test_text_recall_is_bm25_not_substring(space: MemorySpace) -> None:
    space.remember(MemoryInput(id="a", content="the espresso machine is on the third floor"))
    space.remember(MemoryInput(id="b", content="espresso espresso beans delivered on friday espresso"))
    space.remember(MemoryInput(id="c", content="the printer is broken"))
    space.remember(MemoryInput(id="d", content="compressed air for the keyboard"))
    res = recall(space, Cue(query="espresso machine floor"))
    got = ids(res)
    assert got[0] == "a" and "b" in got and "c" not in got
    assert ids(recall(space, Cue(query="press"))) == []  # no substring matching
    assert ids(recall(space, Cue(query="printers")))[:1] == ["c"]  # stemming (porter)
    weird = recall(space, Cue(query='"espresso" OR NOT (*) NEAR'))  # user text never reaches FTS5 syntax
    assert "a" in ids(weird)


def test_memories_without_embedding_found_by_text(space: MemorySpace) -> None:
    space.remember(MemoryInput(id="vec", content="unrelated", embedding=unit(1)))
    space.remember(MemoryInput(id="txt", content="the keys are under the doormat"))
    assert ids(recall(space, Cue(query="doormat keys"))) == ["txt"]
    res = recall(space, Cue(embedding=unit(1), query="doormat"))
    assert set(ids(res)) == {"vec", "txt"}


def test_context_recall(space: MemorySpace) -> None:
    space.remember(EpisodeInput(id="lunch", what="lunch with ana", when=T0, where_location="Lisbon office",
                                who=["Ana", "Bo"]))
    space.remember(EpisodeInput(id="standup", what="daily standup", when=T0 + timedelta(days=2),
                                where_location="Berlin", who=["Cy"]))
    space.remember(
        EpisodeInput(
            id="retro", what="retro", when=T0 + timedelta(days=10), where_location="lisbon hq", who=["Bo"]
        )
    )
    window = recall(space, Cue(time_start=T0 - timedelta(hours=1), time_end=T0 + timedelta(days=3)))
    assert set(ids(window)) == {"lunch", "standup"}
    assert set(ids(recall(space, Cue(location="lisbon")))) == {"lunch", "retro"}
    assert set(ids(recall(space, Cue(participants=["bo"])))) == {"lunch", "retro"}
    both = recall(space, Cue(location="lisbon", time_end=T0 + timedelta(days=1)))
    assert ids(both) == ["lunch"]
    combo = recall(space, Cue(query="retro standup", time_start=T0 + timedelta(days=1)))
    assert set(ids(combo)) == {"standup", "retro"}
    assert ids(recall(space, Cue(query="retro standup", participants=["cy"]))) == ["standup"]


def test_threshold_max_results_and_buckets(space: MemorySpace) -> None:
    for i in range(20):
        space.remember(
            MemoryInput(id=f"m{i}", content="shared words here", embedding=unit(i, 32), confidence=0.9)
        )
    res = recall(space, Cue(embedding=unit(4, 32), max_results=5))
    assert len(ids(res)) == 5
    scores = [it.score for it in res.memories.vivid + res.memories.associated]
    assert all(s > 0.7 for s in (it.score for it in res.memories.vivid))
    assert all(s <= 0.7 for s in (it.score for it in res.memories.associated))
    assert res.memories.vivid and res.memories.associated  # the exact match is vivid, the rest are not
    strict = recall(space, Cue(embedding=unit(4, 32), max_results=5, threshold=max(scores) - 1e-6))
    assert ids(strict) == [ids(res)[0]]
    assert ids(recall(space, Cue(embedding=unit(4, 32), threshold=1.0))) == []
    assert res.confidence_interval.lower <= res.confidence_interval.point <= res.confidence_interval.upper


def test_dimension_mismatch_names_expected_and_received(space: MemorySpace) -> None:
    space.remember(MemoryInput(content="first sets the dimension", embedding=unit(0)))
    with pytest.raises(DimensionMismatch) as info:
        space.remember(MemoryInput(content="wrong", embedding=[1.0, 2.0, 3.0]))
    assert "3" in info.value.message and "8" in info.value.message
    assert info.value.details == {"expected": 8, "received": 3}
    with pytest.raises(DimensionMismatch):
        recall(space, Cue(embedding=[1.0, 0.0]))


def test_get_list_and_forget(space: MemorySpace) -> None:
    for i in range(5):
        space.remember(
            MemoryInput(id=f"f{i}", content=f"forgettable item {i}", embedding=unit(i), tags=["t"])
        )
    mem = space.get("f1")
    assert mem.content == "forgettable item 1" and mem.tags == ["t"] and mem.embedding is not None
    page = space.list(limit=2)
    assert [m.id for m in page.memories] == ["f0", "f1"] and page.total == 5 and page.next_cursor
    rest = space.list(cursor=page.next_cursor, limit=10)
    assert [m.id for m in rest.memories] == ["f2", "f3", "f4"] and rest.next_cursor is None

    receipt = space.forget("f2", ForgetMode.suppress)
    assert receipt.mode is ForgetMode.suppress and receipt.lsn > 0
    assert "f2" not in ids(recall(space, Cue(embedding=unit(2), max_results=5)))
    assert "f2" not in ids(recall(space, Cue(query="forgettable", max_results=10)))
    assert space.get("f2").suppressed  # suppression is reversible: the memory is still there
    assert space.list().total == 4 and space.list(include_suppressed=True).total == 5

    space.forget("f3", ForgetMode.delete)
    with pytest.raises(MemoryNotFound):
        space.get("f3")
    assert "f3" not in ids(recall(space, Cue(embedding=unit(3), max_results=5)))
    with pytest.raises(MemoryNotFound):
        space.forget("f3", ForgetMode.delete)
    with pytest.raises(MemoryNotFound):
        space.get("never")


def test_recallable_as_soon_as_remember_returns(space: MemorySpace) -> None:
    vecs = np.random.default_rng(1).standard_normal((50, 16)).tolist()
    for i in range(50):
        space.remember(MemoryInput(id=f"r{i}", content=f"note number{i}", embedding=vecs[i]))
        assert ids(recall(space, Cue(embedding=vecs[i], max_results=1))) == [f"r{i}"]
        assert f"r{i}" in ids(recall(space, Cue(query=f"number{i}")))


def test_store_receipt(space: MemorySpace) -> None:
    r = space.remember(MemoryInput(content="receipt check", confidence=0.4))
    assert r.memory_id and r.lsn == space.last_lsn and r.durability == "fsync"
    assert r.memory_space_id == "recall-test" and r.storage_confidence.value == pytest.approx(0.4)


def test_episode_fields_round_trip(space: MemorySpace) -> None:
    space.remember(
        EpisodeInput(
            id="ep",
            what="met the team",
            when=T0,
            who=["Ana"],
            why="kickoff",
            how="video",
            emotional_valence=0.5,
            importance=0.9,
            where_location="online",
        )
    )
    mem: Any = space.get("ep")
    assert (mem.what, mem.who, mem.why, mem.how, mem.where_location) == ("met the team", ["Ana"], "kickoff",
                                                                       "video", "online")
    assert mem.when == T0 and mem.importance == 0.9 and mem.consolidation_state.value == "recent"
    assert mem.content == "met the team"
