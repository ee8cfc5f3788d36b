"""A broad filter (too many matches to score them all exactly) whose matches lie far from the
query: the search must keep looking inside the filter until it has k results, never answer with
what a post-filter of the first nearest neighbours happened to keep (SPEC §11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.cognition import filtered
from engram.cognition.recall import recall
from engram.core.models import Cue, ForgetMode, MemoryInput, MemoryPatch, RankMode
from engram.testing import make_service

DIM = 8


@pytest.mark.parametrize("far_share", [0.05, 0.10])
def test_broad_filter_far_from_the_query_still_returns_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         far_share: float) -> None:
    monkeypatch.setattr(filtered, "EXACT_SET_MAX", 8)  # 30-60 matches count as "broad": the ANN path
    svc = make_service(tmp_path, ["broad"], exact_search_max=3)
    space = svc.space("broad")
    rng = np.random.default_rng(7)
    query = np.zeros(DIM)
    query[0] = 1.0
    total = 600
    far = int(total * far_share)
    for i in range(total):
        noise = rng.normal(0, 0.05, DIM)
        # the matching memories point away from the query, every other one toward it
        base = -query if i < far else query
        space.remember(MemoryInput(id=f"m{i}", content=f"memory {i}", embedding=(base + noise).tolist(),
                                   metadata={"group": "far" if i < far else "near"}))
    res = recall(space, Cue(embedding=query.tolist(), max_results=10, filter={"group": "far"}))
    got = [it.memory for it in res.memories.vivid + res.memories.associated]
    assert len(got) == 10
    assert all(m.metadata == {"group": "far"} for m in got)
    svc.close()



def _mixed_space(tmp_path: Path, total: int) -> tuple[Any, np.ndarray]:
    """Group "a" is one memory in ten; all but one in ten of them lie near -query, every other
    memory near +query: near -query "a" abounds, near +query it is rare."""
    svc = make_service(tmp_path, ["hint"], exact_search_max=3)
    space = svc.space("hint")
    rng = np.random.default_rng(11)
    query = np.zeros(DIM)
    query[0] = 1.0
    for i in range(total):
        group = "a" if i % 10 == 0 else "b"
        base = -query if group == "a" and i % 100 != 0 else query
        space.remember(MemoryInput(id=f"m{i}", content=f"memory {i}",
                                   embedding=(base + rng.normal(0, 0.05, DIM)).tolist(),
                                   metadata={"group": group, "i": i}))
    return svc, query


def test_share_hint_sizes_the_next_first_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second recall with the same broad filter asks the ANN search for enough neighbours at once."""
    monkeypatch.setattr(filtered, "EXACT_SET_MAX", 8)
    svc, query = _mixed_space(tmp_path, 2000)
    space = svc.space("hint")
    # 198 "b" memories, all near +query among the ~1800 there: about one neighbour in nine
    flt = {"group": "b", "i": {"$lt": 220}}
    cue = Cue(embedding=query.tolist(), max_results=10, filter=flt)
    first = recall(space, cue).metadata["filter"]
    second = recall(space, cue).metadata["filter"]
    assert first["strategy"] == second["strategy"] == "ann"
    assert first["rounds"] > 1
    assert second["rounds"] == 1
    svc.close()


def test_a_stale_share_hint_never_shortens_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hint learnt where the filter's matches abound, then a query where they are rare: the search
    still keeps looking until it has k matches (the hint sizes the first request, never the answer)."""
    monkeypatch.setattr(filtered, "EXACT_SET_MAX", 8)
    svc, query = _mixed_space(tmp_path, 600)
    space = svc.space("hint")
    flt = {"group": "a"}
    recall(space, Cue(embedding=(-query).tolist(), max_results=10, filter=flt))  # matches abound: hint high
    scope = filtered.FilterScope.of(flt)
    assert scope is not None
    assert (filtered.share_hint(space, scope.node) or 0) > 0.5
    res = recall(space, Cue(embedding=query.tolist(), max_results=10, filter=flt))  # matches rare here
    got = [it.memory for it in res.memories.vivid + res.memories.associated]
    assert len(got) == 10
    assert all(m.metadata["group"] == "a" for m in got)
    svc.close()


def test_the_matching_mask_follows_every_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second recall of a broad filter reads its matching rowids once (a mask, per store LSN):
    a memory remembered, updated out of the filter or deleted afterwards is seen so by the next recall."""
    monkeypatch.setattr(filtered, "EXACT_SET_MAX", 8)
    svc, query = _mixed_space(tmp_path, 2000)
    space = svc.space("hint")
    flt = {"group": "b", "i": {"$lt": 220}}  # 198 memories, one neighbour of +query in nine
    cue = Cue(embedding=query.tolist(), max_results=10, filter=flt, rank=RankMode.similarity)

    def ids() -> list[str]:
        res = recall(space, cue)
        assert res.metadata["filter"]["mask"] is True
        assert res.metadata["filter"]["strategy"] == "ann"
        return [it.memory.id for it in res.memories.vivid + res.memories.associated]

    recall(space, cue)  # first use at this LSN: no mask yet
    before = ids()
    assert len(before) == 10
    assert ids() == before  # the cached mask
    space.remember(MemoryInput(id="new", content="new", embedding=query.tolist(),
                               metadata={"group": "b", "i": 7}))
    recall(space, cue)
    after = ids()
    assert after[0] == "new"
    space.update("new", patch=MemoryPatch(metadata={"group": "a", "i": 7}))
    recall(space, cue)
    assert "new" not in ids()
    top = ids()[0]
    space.forget(top, ForgetMode.delete)
    recall(space, cue)
    got = ids()
    assert top not in got
    assert len(got) == 10
    svc.close()
