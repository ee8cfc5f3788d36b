"""The fan of a memory (index.density) and recall's discount of crowded neighbourhoods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engram.cognition.recall import COSINE_SCALE, W_TEXT, recall
from engram.core.models import Cue, MemoryInput
from engram.index.density import LocalDensity
from engram.service import EngramService
from engram.settings import load_settings


def test_observe_keeps_the_k_nearest_of_both_ends() -> None:
    d = LocalDensity(k=2)
    d.observe(1, [])
    d.observe(2, [(1, 0.9)])
    d.observe(3, [(1, 0.2), (2, 0.1)])
    assert 1 in d and len(d) == 3
    # 1 took 2 (0.9) and 3 (0.2) into its list; 2 took 3 (0.1) beside 1 (0.9).
    d.observe(4, [(1, 0.5)])  # 1 keeps its two best: 0.9 and 0.5
    mean = (0.7 + 0.5 + 0.15 + 0.5) / 4
    assert d.excess(1) == pytest.approx(0.7 - mean, abs=1e-6)
    assert d.excess(99) == 0.0
    d.remove(4)
    assert 4 not in d and d.excess(1) == pytest.approx(0.7 - (0.7 + 0.5 + 0.15) / 3, abs=1e-6)


def test_recall_discounts_a_memory_in_a_crowd(tmp_path: Path) -> None:
    svc = EngramService(load_settings(overrides={
        "data_dir": tmp_path, "embedder": "hash", "bootstrap_spaces": ("chat",),
    }, use_env=False))
    try:
        space = svc.space("chat")
        for i in range(8):  # small talk: one crowded neighbourhood
            space.remember(MemoryInput(id=f"filler{i}", content=f"so how are you doing today friend {i}"))
        space.remember(MemoryInput(id="fact", content="the marathon went well today, friend"))
        space.remember(MemoryInput(id="other", content="quarterly tax forms are due in april"))
        assert space.wait_embedded(10.0) == 0
        while space.embed_pending(64):  # measure every fan now (the worker would, soon)
            pass
        cue = Cue(query="how are you doing at the marathon today", max_results=10)
        res = recall(space, cue)
        items = {it.memory.id: it for it in res.memories.vivid + res.memories.associated}
        filler, fact = items["filler0"], items["fact"]
        assert filler.signals["fan"] > 0 > fact.signals["fan"]
        lo, hi = COSINE_SCALE["hash"]

        def plain(it: Any) -> float:  # the relevance its cosine and words alone would give
            v = min(1.0, max(0.0, (it.signals["vector"] - lo) / (hi - lo)))
            return 1 - (1 - v) * (1 - W_TEXT * it.signals.get("text", 0.0))

        assert filler.signals["relevance"] < plain(filler) - 0.1  # a crowd discounts
        assert fact.signals["relevance"] > plain(fact)  # distinctive: lifted
    finally:
        svc.close()
