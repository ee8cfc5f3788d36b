"""The lean similarity recall (cognition.lean) and the in-memory stored vectors it rescores
against (index.raw): the same answers as the staged path, and never a stale vector.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from engram.cognition.recall import recall, recall_staged
from engram.core.models import Cue, ForgetMode, MemoryInput, RankMode, RecallMode, RecallResult
from engram.index.vector import VectorSet
from engram.testing import make_service

NOW = 1_800_000_000.0
DIM = 8


def body(res: RecallResult) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(res.__pydantic_serializer__.to_json(res))
    d["metadata"].pop("timing_ms", None)
    return d


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, DIM))
    out: np.ndarray = centres[rng.integers(0, 4, n)] + 0.4 * rng.standard_normal((n, DIM))
    return out


def test_lean_answers_equal_the_staged_path(tmp_path: Path) -> None:
    clock = [NOW - 86400.0]
    svc = make_service(tmp_path, ["lean"], clock=lambda: clock[0])
    vecs = vectors(300, 3)

    async def fill() -> None:
        for i in range(300):
            clock[0] = NOW - 86400.0 + i * 60.0
            item = MemoryInput(id=f"m{i:03d}", content=f"memory {i}", embedding=vecs[i].tolist(),
                               decay_rate=0.1 + (i % 3) * 0.2)
            await svc.remember("lean", item)
        # Equal cosines, ids against rowid order: ties across the k-th place are broken by
        # memory id, which only the rows know (the later rows get the smaller ids).
        for j in range(6):
            await svc.remember("lean", MemoryInput(id=f"a-twin{5 - j}", content="twin",
                                                   embedding=vecs[7].tolist()))
        await svc.remember("lean", MemoryInput(id="opposite", content="opposite",
                                               embedding=(-vecs[7]).tolist()))

    try:
        asyncio.run(fill())
        clock[0] = NOW
        space = svc.space("lean")
        space.reinforcer = None  # answers must not move between the two paths
        cues: list[Cue] = []
        rng = np.random.default_rng(4)
        for j in range(40):
            q = (vecs[j * 7] + 0.05 * rng.standard_normal(DIM)).tolist()
            cues.append(Cue(embedding=q, max_results=1 + j % 12, rank=RankMode.similarity))
        twin = vecs[7].tolist()
        for k in (1, 3, 5, 6, 8, 20):  # the six twins straddle the k-th place for most k
            cues.append(Cue(embedding=twin, max_results=k, rank=RankMode.similarity))
        cues += [
            Cue(embedding=twin, max_results=10, rank=RankMode.similarity, threshold=0.9),
            Cue(embedding=(-vecs[7]).tolist(), max_results=50, rank=RankMode.similarity),  # scores at 0
            Cue(embedding=twin, max_results=10, rank=RankMode.similarity, mode=RecallMode.hybrid,
                trace_activation=True),
            Cue(embedding=(vecs[7] * 1e20).tolist(), max_results=10, rank=RankMode.similarity),
        ]
        answered = 0
        for cue in cues:
            lean, staged = body(recall(space, cue)), body(recall_staged(space, cue))
            assert lean == staged, cue
            answered += len(lean["results"])
        assert answered > 200
        assert len(space.vectors.raw) > 0  # the lean path read its vectors from memory
    finally:
        svc.close()


def _sim(res: RecallResult, memory_id: str) -> float | None:
    return next((it.similarity for it in res.results if it.memory.id == memory_id), None)


def test_stored_vectors_in_memory_follow_updates_forgets_and_restores(tmp_path: Path) -> None:
    svc = make_service(tmp_path, ["fresh"])
    vecs = vectors(60, 5)
    new, other = vectors(2, 6)

    async def run() -> None:
        for i in range(60):
            await svc.remember("fresh", MemoryInput(id=f"m{i}", content=f"m {i}", embedding=vecs[i].tolist()))

    def ask(v: np.ndarray) -> RecallResult:
        return recall(svc.space("fresh"), Cue(embedding=v.tolist(), max_results=60, rank=RankMode.similarity))

    try:
        asyncio.run(run())
        raw = svc.space("fresh").vectors.raw
        assert _sim(ask(vecs[9]), "m9") == 1.0
        assert raw.get(svc.space("fresh").vectors.keys()[9].item()) is not None  # read once, kept
        asyncio.run(svc.update_memory("fresh", "m9", put=MemoryInput(content="m 9", embedding=new.tolist())))
        assert _sim(ask(new), "m9") == 1.0  # the new vector, not the kept bytes of the old one
        asyncio.run(svc.forget("fresh", "m9", ForgetMode.suppress))
        assert _sim(ask(new), "m9") is None
        restore = MemoryInput(content="m 9", embedding=other.tolist())
        asyncio.run(svc.update_memory("fresh", "m9", put=restore))
        assert _sim(ask(other), "m9") == 1.0  # restored with another vector
        asyncio.run(svc.forget("fresh", "m9", ForgetMode.delete))
        assert _sim(ask(other), "m9") is None
    finally:
        svc.close()


def test_reopened_space_rescores_from_the_vectors_loaded_at_open(tmp_path: Path) -> None:
    svc = make_service(tmp_path, ["reopen"])
    vecs = vectors(40, 8)

    async def run() -> None:
        for i in range(40):
            item = MemoryInput(id=f"m{i}", content=f"m {i}", embedding=vecs[i].tolist())
            await svc.remember("reopen", item)

    asyncio.run(run())
    svc.close()
    svc = make_service(tmp_path, ["reopen"])
    try:
        space = svc.space("reopen")
        assert len(space.vectors.raw) == 40  # every stored vector, from the opening load
        space.reinforcer = None
        cue = Cue(embedding=vecs[3].tolist(), max_results=10, rank=RankMode.similarity)
        assert body(recall(space, cue)) == body(recall_staged(space, cue))
    finally:
        svc.close()


def test_a_fill_read_before_a_change_is_refused() -> None:
    """The read-through race (index.raw): bytes read before a change applied are not kept."""
    vs = VectorSet(2)
    vs.add_many([1, 2], np.eye(2, dtype=np.float32))
    old = np.asarray([1.0, 0.0], np.float32).tobytes()
    version = vs.raw.version  # a reader takes the version, then reads SQLite ...
    vs.add(1, np.asarray([0.0, 1.0], np.float32))  # ... while an update's effect lands
    assert not vs.raw.fill([(1, old)], version, vs)
    assert vs.raw.get(1) is None
    assert vs.raw.fill([(1, np.asarray([0.0, 1.0], np.float32).tobytes()), (7, old)], vs.raw.version, vs)
    assert vs.raw.get(1) is not None and vs.raw.get(7) is None  # 7 has no vector: not kept
    vs.remove(1)
    assert vs.raw.get(1) is None


def test_capacity_bounds_the_kept_vectors() -> None:
    vs = VectorSet(2, float32_max=3)
    vs.add_many([1, 2, 3, 4, 5], np.ones((5, 2), np.float32))
    vs.raw.put((k, b"x" * 8) for k in (1, 2, 3, 4, 5))
    assert len(vs.raw) == 3
    assert not vs._lock.locked()  # put took and gave back the set's writer lock


def test_a_space_with_an_expired_memory_is_answered_as_the_staged_path_would(tmp_path: Path) -> None:
    """An expired memory the sweep has not removed yet still has its vector: the staged path's
    row reads leave it out (and out of the candidate count); the lean path must not count it."""
    clock = [NOW]
    svc = make_service(tmp_path, ["ttl"], clock=lambda: clock[0])
    vecs = vectors(30, 9)

    async def run() -> None:
        for i in range(30):
            await svc.remember("ttl", MemoryInput(id=f"m{i}", content=f"m {i}", embedding=vecs[i].tolist(),
                                                  ttl_seconds=60 if i == 29 else None))

    try:
        asyncio.run(run())
        clock[0] = NOW + 120.0  # m29 expired; no sweep has run
        space = svc.space("ttl")
        space.reinforcer = None
        cue = Cue(embedding=vecs[0].tolist(), max_results=3, rank=RankMode.similarity)
        lean, staged = body(recall(space, cue)), body(recall_staged(space, cue))
        assert staged["metadata"]["candidates"] == 29
        assert lean == staged
    finally:
        svc.close()
