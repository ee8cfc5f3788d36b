"""Recall's vectorised ranking (cognition.recall.rank) gives what the scalar formulas give.

The score of every answer is recomputed here from core.decay's scalar functions and the
fusion documented in docs/cognition.md "Ranking", from the stored rows and a fixed clock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from engram.cognition.recall import W_ACTIVATION, W_CONFIDENCE, W_RECENCY, W_RELEVANCE, W_TEXT, recall
from engram.core.decay import current_activation, recency
from engram.core.models import Cue, MemoryInput, RankMode, RecallMode, to_epoch
from engram.testing import make_service

NOW = 1_800_000_000.0


def test_scores_match_the_scalar_formulas(tmp_path: Path) -> None:
    clock = [NOW - 30 * 86400.0]
    svc = make_service(tmp_path, ["rank"], clock=lambda: clock[0])

    async def fill() -> None:
        for i in range(40):
            clock[0] = NOW - (40 - i) * 3 * 3600.0  # hours to weeks old: both decay regimes
            await svc.remember("rank", MemoryInput(
                id=f"m{i}", content=f"harbour lantern {i}" if i % 3 == 0 else f"orchard item {i}",
                embedding=[1.0, 0.1 * i, (i % 7) / 7.0, 0.5], confidence=0.2 + (i % 5) * 0.15,
                decay_rate=0.05 + (i % 4) * 0.3))

    try:
        asyncio.run(fill())
        clock[0] = NOW
        space = svc.space("rank")
        space.reinforcer = None  # the stored activation stays what was written
        cues = [
            Cue(embedding=[1.0, 0.5, 0.2, 0.5], max_results=15),
            Cue(query="harbour lantern", max_results=15),
            Cue(embedding=[1.0, 2.0, 0.1, 0.5], query="harbour", max_results=15, mode=RecallMode.hybrid),
            Cue(embedding=[1.0, 0.5, 0.2, 0.5], max_results=15, rank=RankMode.similarity),
        ]
        checked = 0
        for cue in cues:
            res = recall(space, cue)
            assert res.results, cue
            for it in res.results:
                m = it.memory
                last = to_epoch(m.last_access)
                row = space.row_by_id(m.id)
                act = current_activation(row[9], row[7], row[10], NOW)
                rec = recency(last, NOW)
                assert it.signals["activation"] == round(act, 6)
                assert it.signals["recency"] == round(rec, 6)
                s = it.signals
                if cue.rank is RankMode.similarity:
                    assert it.score == round(s["vector"], 6)
                    continue
                v = max(0.0, s.get("vector", 0.0))
                t = s.get("text", 0.0) * (W_TEXT if cue.embedding is not None else 1.0)
                direct = 1.0 - (1.0 - v) * (1.0 - t)
                assert abs(s["relevance"] - direct) < 2e-6 or cue.mode is RecallMode.hybrid
                expected = (W_RELEVANCE * s["relevance"] + W_ACTIVATION * act + W_CONFIDENCE * m.confidence
                            + W_RECENCY * rec)
                assert abs(it.score - min(1.0, max(0.0, expected))) < 2e-6, (cue, m.id)
                checked += 1
            scores = [it.score for it in res.results]
            assert scores == sorted(scores, reverse=True)
        assert checked >= 30
    finally:
        svc.close()


def test_the_servers_own_vector_without_evidence_returns_nothing(tmp_path: Path) -> None:
    """With the space's embedder (hash here), nearest neighbours with no evidence at all
    (calibrated cosine 0, no word shared) are not answers; a client's vector keeps its top k."""
    svc = make_service(tmp_path, ["evidence"], embedder="hash")

    async def fill() -> None:
        for i in range(10):
            item = MemoryInput(id=f"e{i}", content=f"espresso machine descaling step {i}")
            await svc.remember("evidence", item)

    try:
        asyncio.run(fill())
        space = svc.space("evidence")
        assert space.wait_embedded(30) == 0
        assert recall(space, Cue(query="espresso descaling", max_results=5)).results
        assert recall(space, Cue(query="zygote quorum", max_results=5)).results == []
        assert recall(space, Cue(embedding=space.vectors.vector(1).tolist(), max_results=5)).results
    finally:
        svc.close()
