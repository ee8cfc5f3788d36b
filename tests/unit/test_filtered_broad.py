"""A broad filter (too many matches to score them all exactly) whose matches lie far from the
query: the search must keep looking inside the filter until it has k results, never answer with
what a post-filter of the first nearest neighbours happened to keep (SPEC §11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram.cognition import filtered
from engram.cognition.recall import recall
from engram.core.models import Cue, MemoryInput
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
