"""Read worker processes (``read_workers``, engram.readpool): real worker processes answer
recalls from their read-only copies of a space, and every answer is the server's own.

The service runs in the test process (its clock frozen, so the two paths score the same
instant) and starts real ``python -m engram.readpool`` processes; the space is a real SQLite
file that the worker reads beside the service's writer.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import psutil
import pytest

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.cognition.recall import recall as in_process_recall
from engram.core.events import Event
from engram.core.models import (
    Cue,
    DeleteByFilter,
    ForgetMode,
    MemoryInput,
    MemoryPatch,
    RankMode,
    RecallMode,
    RecallResult,
)
from engram.service import EngramService
from engram.testing import EngramProcess, FakeClock, make_service

SPACE = "readers"
OTHER = "others"
DIM = 32


def _strip_times(value: Any) -> Any:
    """An answer without its wall-clock timings (``*_ms``), which differ between any two runs."""
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if not (k == "ms" or k.endswith("_ms"))}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _plain(result: RecallResult) -> Any:
    return _strip_times(result.model_dump(mode="json"))


def _service(tmp_path: Path, clock: FakeClock, **settings: Any) -> EngramService:
    # Reinforcement never written during a comparison: both paths see the same activations.
    base: dict[str, Any] = {"read_workers": 1, "embedder": "hash", "hash_dimension": DIM,
                             "reinforce_linger_ms": 3_600_000.0}
    base.update(settings)
    svc = make_service(tmp_path, [SPACE, OTHER], clock=clock, **base)
    if svc.read_pool is not None:
        svc.read_pool.spill = False  # a worker answers even a lone recall: what these tests compare
    return svc


async def _fill(svc: EngramService, space: str, n: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, DIM))
    vectors: list[list[float]] = []
    for i in range(n):
        v = centres[i % 6] + 0.35 * rng.standard_normal(DIM)
        vectors.append(v.tolist())
        place = ["river", "garden", "market", "harbour", "school", "bakery"][i % 6]
        await svc.remember(space, MemoryInput(
            content=f"note {i} about topic {i % 6}: the {place} where {'ABC'[i % 3]}da met on day {i % 11}",
            embedding=v.tolist() if i % 4 else None,  # every fourth text embedded by the server
            tags=[f"t{i % 3}"], metadata={"kind": "ab"[i % 2], "n": i}, auto_link=True,
        ))
    return vectors


def _drive(svc: EngramService, work: Awaitable[None]) -> None:
    """Run ``work``, then stop the workers on its loop (as the server does before closing), then
    close the service."""

    async def closing() -> None:
        try:
            await work
        finally:
            if svc.read_pool is not None:
                await svc.read_pool.aclose()

    try:
        asyncio.run(closing())
    finally:
        svc.close()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _served(svc: EngramService, space: str, cue: Cue) -> RecallResult:
    """``cue`` recalled until a worker answers it (the copy loads once the space is still)."""
    pool = svc.read_pool
    assert pool is not None
    got: list[RecallResult] = []

    async def once() -> bool:
        before = pool.served
        got.append(await svc.recall(space, cue))
        return pool.served > before

    await _until(once)
    return got[-1]


async def _settled(svc: EngramService, space: str) -> None:
    """Every text embedded and every fan measured (the space's state stops moving)."""
    sp = await svc._space(space)
    await asyncio.to_thread(sp.wait_embedded, 30.0)
    last: list[Any] = [None]

    async def still() -> bool:
        token = (sp.store.epoch if sp.store else None, sp.density.version, sp.embedding_backlog)
        same, last[0] = token == last[0], token
        await asyncio.sleep(0.2)
        return same

    await _until(still)


def test_worker_answers_equal_the_servers_own(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock)

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 160, seed=1)
        await _settled(svc, SPACE)
        v = vectors[5]
        cues = [
            Cue(embedding=v),
            Cue(embedding=v, rank=RankMode.similarity, max_results=20),
            Cue(query="the market where Bda met"),
            Cue(query="garden Ada", mode=RecallMode.hybrid, trace_activation=True),
            Cue(query="harbour", mode=RecallMode.spreading, max_hops=2),
            Cue(embedding=v, query="river day 3", filter={"kind": "a"}),
            Cue(tags=["t2"], max_results=7),
            Cue(embedding=vectors[9], threshold=0.2, tags=["t1"]),
        ]
        space = await svc._space(SPACE)
        for cue in cues:
            served = await _served(svc, SPACE, cue)
            own = await asyncio.to_thread(in_process_recall, space, cue)
            assert served.results, cue
            mine, theirs = _plain(served), _plain(own)
            assert mine["metadata"] == theirs["metadata"], cue
            assert mine == theirs, cue

    _drive(svc, run())


def test_a_write_is_recalled_at_once_and_the_copy_catches_up(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 40, seed=2)
        probe = Cue(embedding=vectors[0], rank=RankMode.similarity, max_results=3)
        await _served(svc, SPACE, probe)
        pool = svc.read_pool
        assert pool is not None
        # A new memory exactly at the query: the very next recall (no wait) returns it first,
        # answered by the worker, its copy brought forward with the write (no reload).
        reloads = pool.reloads
        receipt = await svc.remember(SPACE, MemoryInput(content="the newest", embedding=vectors[0]))
        before = pool.served
        first = await svc.recall(SPACE, probe)
        assert first.results[0].memory.id == receipt.memory_id
        assert pool.served == before + 1
        # A forgotten memory is gone from the next recall, the worker's too.
        await svc.forget(SPACE, receipt.memory_id)
        after = await svc.recall(SPACE, probe)
        assert receipt.memory_id not in {r.memory.id for r in after.results}
        assert pool.served == before + 2
        assert pool.reloads == reloads and pool.caught_up >= 2

    _drive(svc, run())


async def _same_as_own(svc: EngramService, space: Any, cue: Cue) -> RecallResult:
    """``cue`` answered by a worker (asserted) and equal, field by field, to the server's own."""
    pool = svc.read_pool
    assert pool is not None
    before = pool.served
    served = await svc.recall(space.id, cue)
    assert pool.served == before + 1, cue  # the worker answered
    own = await asyncio.to_thread(in_process_recall, space, cue)
    mine, theirs = _plain(served), _plain(own)
    assert mine["metadata"] == theirs["metadata"], cue
    assert mine == theirs, cue
    return served


def test_a_copy_brought_forward_answers_as_the_server_after_every_kind_of_write(tmp_path: Path) -> None:
    """Writes, PATCH and PUT updates, forgets and a delete by filter in a space whose server embeds
    text (its fans change with every vector): after each, the copy is brought forward by the
    changes alone (no reload) and its answers equal the server's own."""
    clock = FakeClock()
    svc = _service(tmp_path, clock)
    rng = np.random.default_rng(11)

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 120, seed=8)
        await _settled(svc, SPACE)
        await _served(svc, SPACE, Cue(embedding=vectors[0]))
        pool = svc.read_pool
        assert pool is not None
        space = await svc._space(SPACE)
        reloads, caught = pool.reloads, pool.caught_up
        ids = [m.id for m in (await svc.list_memories(SPACE, limit=200)).memories]
        near = (np.asarray(vectors[5]) + 0.05 * rng.standard_normal(DIM)).tolist()

        async def remember_vector() -> list[float]:
            await svc.remember(SPACE, MemoryInput(content="a client vector near five", embedding=near,
                                                  metadata={"kind": "a", "n": 1000}))
            return near

        async def remember_text() -> list[float]:
            await svc.remember(SPACE, MemoryInput(content="the market where Bda met the garden",
                                                  metadata={"kind": "b", "n": 1001}))
            return vectors[2]

        async def patch_metadata() -> list[float]:
            await svc.update_memory(SPACE, ids[7], patch=MemoryPatch(metadata={"kind": "b", "n": 7},
                                                                     tags=["t9"]))
            return vectors[7]

        async def patch_vector() -> list[float]:
            moved = (np.asarray(vectors[9]) + 0.3 * rng.standard_normal(DIM)).tolist()
            await svc.update_memory(SPACE, ids[9], patch=MemoryPatch(embedding=moved))
            return vectors[9]

        async def put_text() -> list[float]:  # the vector dropped, then embedded again by the server
            await svc.update_memory(SPACE, ids[13], put=MemoryInput(content="harbour bakery river Cda day 4"))
            return vectors[13]

        async def forget() -> list[float]:
            await svc.forget(SPACE, ids[5])
            return vectors[5]

        async def erase() -> list[float]:
            await svc.forget(SPACE, ids[6], ForgetMode.delete)
            return vectors[6]

        async def delete_filtered() -> list[float]:
            await svc.delete_memories(SPACE, DeleteByFilter(filter={"n": {"$lt": 20}}))
            return vectors[15]

        for step in (remember_vector, remember_text, patch_metadata, patch_vector, put_text, forget,
                     erase, delete_filtered):
            v = await step()
            await _settled(svc, SPACE)
            for cue in (Cue(embedding=v), Cue(embedding=v, rank=RankMode.similarity, max_results=20),
                        Cue(query="the market where Bda met", mode=RecallMode.hybrid),
                        Cue(embedding=v, query="river garden", filter={"kind": "a"}, max_results=15)):
                await _same_as_own(svc, space, cue)
        assert pool.reloads == reloads, "every copy was brought forward by the changes alone"
        assert pool.caught_up >= caught + 8

    _drive(svc, run())


def test_a_worker_serves_under_a_steady_stream_of_writes(tmp_path: Path) -> None:
    """Writes every ~10 ms (client vectors, in a space whose server measures their fans) while a
    caller recalls the latest acknowledged one: it is always found, and the worker answers most
    recalls (its copy is brought forward, not reloaded)."""
    clock = FakeClock()
    svc = _service(tmp_path, clock)
    rng = np.random.default_rng(12)

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 60, seed=9)
        await _settled(svc, SPACE)
        await _served(svc, SPACE, Cue(embedding=vectors[0]))
        pool = svc.read_pool
        assert pool is not None
        acked: list[tuple[str, list[float]]] = []
        done = asyncio.Event()

        async def writer() -> None:
            try:
                for i in range(150):
                    v = rng.standard_normal(DIM).tolist()
                    got = await svc.remember(SPACE, MemoryInput(content=f"stream {i}", embedding=v))
                    acked.append((got.memory_id, v))
                    await asyncio.sleep(0.01)
            finally:
                done.set()

        task = asyncio.create_task(writer())
        served, reloads, caught = pool.served, pool.reloads, pool.caught_up
        recalls = 0
        while not done.is_set():
            if not acked:
                await asyncio.sleep(0.005)
                continue
            latest, v = acked[-1]
            res = await svc.recall(SPACE, Cue(embedding=v, rank=RankMode.similarity, max_results=1))
            assert res.results[0].memory.id == latest  # read-your-writes, whoever answered
            recalls += 1
        await task
        served = pool.served - served
        assert recalls >= 20
        assert served >= recalls // 2, (served, recalls, pool.caught_up - caught, pool.reloads - reloads)
        assert pool.caught_up - caught >= 50  # of 150 writes (a copy is brought forward when asked)
        assert pool.reloads - reloads <= 1

    _drive(svc, run())


def _hold_embedder(space: Any) -> threading.Event:
    """The server's background embedder held before its next batch until the event is set: the
    backlog stays as it is, every text stored meanwhile waiting for its vector (the real
    embedder runs once let go)."""
    gate = threading.Event()
    real = space.embed_pending

    def held(limit: int) -> bool:
        gate.wait(60.0)
        return bool(real(limit))

    space.embed_pending = held
    return gate


def test_answers_equal_the_servers_own_with_an_embedding_backlog(tmp_path: Path) -> None:
    """Texts stored and not yet embedded by the server: the worker answers text, hybrid and
    embedding cues, finds the pending texts by their words, and every answer (its metadata's
    backlog included) equals the server's own. A recall that waits for embeddings waits in the
    server, then goes to the worker: with the rows still pending when the wait ran out, or, once
    the embedder has caught up meanwhile, with their vectors."""
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedding_wait_seconds=1.0)

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 120, seed=13)
        await _settled(svc, SPACE)
        await _served(svc, SPACE, Cue(embedding=vectors[0]))
        pool = svc.read_pool
        assert pool is not None
        space = await svc._space(SPACE)
        gate = _hold_embedder(space)
        try:
            for i in range(12):
                await svc.remember(SPACE, MemoryInput(
                    content=f"pending {i}: the market where Bda met by the river, kite{i}",
                    metadata={"kind": "ab"[i % 2], "n": 500 + i}))
            assert space.embedding_backlog == 12
            for cue in (Cue(query="market Bda river"),
                        Cue(query="kite3 market garden", mode=RecallMode.hybrid, trace_activation=True),
                        Cue(query="pending market", rank=RankMode.similarity, max_results=20),
                        Cue(embedding=vectors[2]),
                        Cue(embedding=vectors[2], query="river garden", filter={"kind": "a"},
                            max_results=15)):
                got = await _same_as_own(svc, space, cue)
                assert got.metadata["embedding_backlog"] == 12, cue
            found = await _same_as_own(svc, space, Cue(query="kite7"))
            assert any(r.memory.content.startswith("pending 7:") and r.text_score > 0
                       for r in found.results)  # found by its words, with no vector yet
            # The wait runs out (the embedder is held): the answer says what is still pending.
            waited = await _same_as_own(svc, space, Cue(query="kite7", wait_for_embeddings=True))
            assert waited.metadata["embeddings_pending"] == 12
            assert waited.metadata["embedding_wait_ms"] >= 900  # the server's wait, not the copy's
            # The embedder let go while a recall waits: it ends once the texts have their vectors.
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, gate.set)
            before = pool.served
            done = await svc.recall(SPACE, Cue(query="kite7", wait_for_embeddings=True))
            assert pool.served == before + 1 and "embeddings_pending" not in done.metadata
            assert done.metadata["embedding_backlog"] == 0
            hit = next(r for r in done.results if r.memory.content.startswith("pending 7:"))
            assert hit.similarity > 0  # found by its vector too now
        finally:
            gate.set()
        await _settled(svc, SPACE)
        assert space.embedding_backlog == 0
        await _same_as_own(svc, space, Cue(query="kite7", wait_for_embeddings=True))

    _drive(svc, run())


def test_a_worker_serves_under_a_steady_stream_of_text_writes(tmp_path: Path) -> None:
    """Texts stored every ~10 ms, embedded by the server in the background (so its backlog is
    seldom empty), while a caller recalls the latest acknowledged one by its words: always
    found at once, and the worker answers most recalls, with a backlog too."""
    clock = FakeClock()
    svc = _service(tmp_path, clock, hash_dimension=256)  # unrelated texts' cosines stay near 0
    rng = np.random.default_rng(14)

    async def run() -> None:
        await svc.remember_batch(SPACE, [MemoryInput(content=f"note {i} about the harbour {i % 7}")
                                         for i in range(60)])
        await _settled(svc, SPACE)
        await _served(svc, SPACE, Cue(query="harbour note"))
        pool = svc.read_pool
        assert pool is not None
        acked: list[str] = []
        marks = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 9)) for _ in range(150)]
        done = asyncio.Event()

        async def writer() -> None:
            try:
                for i in range(150):  # words of its own each: the query's vector is near none of them
                    got = await svc.remember(SPACE, MemoryInput(content=f"{marks[i]} noted at tide {i}"))
                    acked.append(got.memory_id)
                    await asyncio.sleep(0.01)
            finally:
                done.set()

        task = asyncio.create_task(writer())
        served, reloads = pool.served, pool.reloads
        recalls = with_backlog = 0
        while not done.is_set():
            if not acked:
                await asyncio.sleep(0.005)
                continue
            i = len(acked) - 1
            before = pool.served
            # (A memory not embedded yet is found by its words alone: it can rank below memories
            # near the query's vector, so the answer is ten long.)
            res = await svc.recall(SPACE, Cue(query=marks[i], max_results=10))
            found = {r.memory.id: r.text_score for r in res.results}
            assert found.get(acked[i], 0.0) > 0, (i, res.results)  # read-your-writes, by its words
            recalls += 1
            if pool.served > before and res.metadata["embedding_backlog"] > 0:
                with_backlog += 1
        await task
        served = pool.served - served
        assert recalls >= 20
        assert served >= recalls // 2, (served, recalls, with_backlog, pool.reloads - reloads)
        assert with_backlog >= 5, (served, recalls, with_backlog)
        assert pool.reloads - reloads <= 1

    _drive(svc, run())


def test_text_answers_equal_the_servers_own_at_2500_memories(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``PRUNE_MIN_MEMORIES`` a text search leaves out words found in more than a tenth of
    the space, judged by a per-process vocabulary refreshed by time and growth. The server's was
    read at 2,500 memories, when "alpha" was in 9 % of them; 200 more with "alpha" (less than the
    growth that refreshes it) put it at 16 %: a copy's own vocabulary would leave it out, the
    server's keeps it. The copy is sent the server's pruning: the answers are equal."""
    from engram.core import text

    monkeypatch.setattr(text, "DF_TTL_SECONDS", 3600.0)  # in the server only: a slow run changes nothing
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    def item(i: int, extra: str = "") -> MemoryInput:
        words = ["alpha" if i % 11 == 0 else "", "beta" if i % 97 == 0 else "", f"gamma{i % 40}",
                 "delta" if i % 3 == 0 else "", extra]
        return MemoryInput(content=f"record {i}: " + " ".join(w for w in words if w),
                           metadata={"kind": "ab"[i % 2]})

    async def run() -> None:
        for start in range(0, 2500, 500):
            await svc.remember_batch(SPACE, [item(i) for i in range(start, start + 500)])
        space = await svc._space(SPACE)
        query = "alpha beta gamma7"
        first = await asyncio.to_thread(in_process_recall, space, Cue(query=query))  # the server's vocabulary
        assert first.results
        assert text.pruned_words(space, query) == (("alpha", "beta", "gamma7"), ["alpha", "beta", "gamma7"])
        await svc.remember_batch(SPACE, [item(i, "alpha") for i in range(2500, 2700)])
        conn = space.check_healthy().reader()
        (alpha,) = conn.execute(
            "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'alpha'").fetchone()
        assert alpha > text.COMMON_SHARE * 2700  # a fresh vocabulary leaves "alpha" out
        assert text.pruned_words(space, query)[1] == ["alpha", "beta", "gamma7"]  # the server's keeps it
        await _served(svc, SPACE, Cue(query="beta"))
        for cue in (Cue(query=query), Cue(query=query, max_results=25, mode=RecallMode.hybrid),
                    Cue(query="alpha gamma3 delta", filter={"kind": "a"}, max_results=30),
                    Cue(query="delta alpha record gamma5", mode=RecallMode.spreading, max_results=40)):
            got = await _same_as_own(svc, space, cue)
            assert got.results, cue

    _drive(svc, run())


def test_a_copy_loaded_whole_holds_the_servers_vector_rows_bit_for_bit(tmp_path: Path) -> None:
    """The server's rows (texts its embedder embedded, client vectors of every scale, a vector
    changed by an update) and those of a copy loaded from the stored bytes are the same float16
    bits: every path rounds the stored vector to a unit float16 row the same way."""
    from engram.core.space import MemorySpace

    clock = FakeClock()
    svc = _service(tmp_path, clock, read_workers=0, hash_dimension=384)
    rng = np.random.default_rng(15)

    async def run() -> None:
        for start in range(0, 600, 200):
            await svc.remember_batch(SPACE, [MemoryInput(content=f"text {i} of the harbour {i % 17}")
                                             for i in range(start, start + 200)])
        for start in range(0, 600, 200):  # a batch's vectors
            await svc.remember_batch(SPACE, [
                MemoryInput(content=f"vector {i}",
                            embedding=(rng.standard_normal(384) * rng.uniform(0.01, 100)).tolist())
                for i in range(start, start + 200)])
        ids = []
        for i in range(150):  # one at a time
            got = await svc.remember(SPACE, MemoryInput(
                content=f"single {i}", embedding=(rng.standard_normal(384) * 7.3).tolist()))
            ids.append(got.memory_id)
        for memory_id in ids[:100]:
            await svc.update_memory(SPACE, memory_id, patch=MemoryPatch(
                embedding=(rng.standard_normal(384) * 0.37).tolist()))
        await _settled(svc, SPACE)
        space = await svc._space(SPACE)
        copy = MemorySpace("copy", space.dir, space.settings, replica=True)
        try:
            keys = np.sort(space.vectors.keys())
            assert len(keys) == 1350 and np.array_equal(np.sort(copy.vectors.keys()), keys)
            differ = [int(k) for k in keys
                      if space.vectors.vector(int(k)).tobytes() != copy.vectors.vector(int(k)).tobytes()]
            assert differ == []
        finally:
            copy.close("test")

    _drive(svc, run())


def test_a_copy_the_change_log_no_longer_reaches_is_reloaded(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import engram.index.changes as changes
    import engram.readpool as readpool

    monkeypatch.setattr(changes, "MAX_EPOCHS", 3)
    monkeypatch.setattr(readpool, "RELOAD_SECONDS", 0.0)  # no pause after the first copy's load
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 30, seed=10)
        probe = Cue(embedding=vectors[1], rank=RankMode.similarity, max_results=5)
        await _served(svc, SPACE, probe)
        pool = svc.read_pool
        assert pool is not None
        space = await svc._space(SPACE)
        # Five commits: the ring keeps three. The copy cannot be brought forward: the server
        # answers, and the copy is reloaded whole (at once: the log reaches the new copy's state).
        far = (-np.asarray(vectors[1])).tolist()  # nearer the new five than any stored memory
        probe = Cue(embedding=far, rank=RankMode.similarity, max_results=5)
        new = [(await svc.remember(SPACE, MemoryInput(content=f"late {i}", embedding=far))).memory_id
               for i in range(5)]
        reloads, caught, served = pool.reloads, pool.caught_up, pool.served
        first = await svc.recall(SPACE, probe)
        assert {r.memory.id for r in first.results} == set(new)
        assert pool.served == served and pool.caught_up == caught
        assert pool.reloads == reloads + 1
        again = await _served(svc, SPACE, probe)
        assert {r.memory.id for r in again.results} == set(new)
        # From the reloaded copy on, one commit is a catch-up again.
        await svc.forget(SPACE, new[0])
        after = await _same_as_own(svc, space, probe)
        assert new[0] not in {r.memory.id for r in after.results}
        assert pool.caught_up == caught + 1 and pool.reloads == reloads + 1

    _drive(svc, run())


def test_what_a_worker_recall_changes_is_applied_by_the_server(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none", reinforce_linger_ms=0.0)

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 30, seed=3)
        probe = Cue(embedding=vectors[3], rank=RankMode.similarity, max_results=1)
        top = (await _served(svc, SPACE, probe)).results[0].memory
        pool = svc.read_pool
        assert pool is not None
        # One more recall, answered by the worker: its "recalled" event reaches the subscribers.
        sub = svc.subscribe(SPACE, ["recalled"])
        before = pool.served
        assert (await svc.recall(SPACE, probe)).results[0].memory.id == top.id
        assert pool.served == before + 1
        event = await sub.get(timeout=10.0)
        assert isinstance(event, Event) and event.type == "recalled" and event.data["top"][0] == top.id

        # ... and what it reinforced is written by the server's writer.
        async def reinforced() -> bool:
            return (await svc.get_memory(SPACE, top.id)).access_count > top.access_count

        await _until(reinforced)
        sub.close()

    _drive(svc, run())


def test_a_lone_recall_stays_in_the_server_and_concurrent_ones_spill_to_the_worker(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 60, seed=4)
        probe = Cue(embedding=vectors[7], rank=RankMode.similarity, max_results=5)
        expected = _plain(await _served(svc, SPACE, probe))  # the worker's copy is loaded
        pool = svc.read_pool
        assert pool is not None
        pool.spill = True  # the default
        before = pool.served
        for _ in range(5):  # one at a time: the server is idle each time, so it answers
            assert _plain(await svc.recall(SPACE, probe)) == expected
        assert pool.served == before
        answers = await asyncio.gather(*(svc.recall(SPACE, probe) for _ in range(8)))
        assert [_plain(a) for a in answers] == [expected] * 8
        assert before < pool.served < before + 8  # both the worker and the server answered
        assert pool.running == 0

    _drive(svc, run())


def test_copies_are_per_space(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    async def run() -> None:
        mine = await _fill(svc, SPACE, 20, seed=4)
        await _fill(svc, OTHER, 20, seed=5)
        probe = Cue(embedding=mine[0], rank=RankMode.similarity, max_results=20)
        a = await _served(svc, SPACE, probe)
        b = await _served(svc, OTHER, probe)
        ids_a = {(await svc.get_memory(SPACE, r.memory.id)).id for r in a.results}
        assert all(r.memory_space_id == SPACE for r in [a])
        assert b.memory_space_id == OTHER
        assert not ids_a & {r.memory.id for r in b.results}
        assert all(r.memory.content.startswith("note") for r in b.results)

    _drive(svc, run())


def test_a_killed_worker_costs_no_recall_and_is_replaced(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    async def run() -> None:
        vectors = await _fill(svc, SPACE, 30, seed=6)
        probe = Cue(embedding=vectors[1], rank=RankMode.similarity, max_results=5)
        expected = [r.memory.id for r in (await _served(svc, SPACE, probe)).results]
        pool = svc.read_pool
        assert pool is not None
        old = pool.workers[0].proc.pid
        os.kill(old, signal.SIGKILL)
        for _ in range(20):  # every recall answered, by the server while no worker runs
            assert [r.memory.id for r in (await svc.recall(SPACE, probe)).results] == expected
            await asyncio.sleep(0.02)
        again = await _served(svc, SPACE, probe)  # a new worker, started after the restart pause
        assert [r.memory.id for r in again.results] == expected
        assert pool.workers[0].proc.pid != old

    import engram.readpool as readpool

    saved = readpool.RESTART_SECONDS
    readpool.RESTART_SECONDS = 0.5
    try:
        _drive(svc, run())
    finally:
        readpool.RESTART_SECONDS = saved


@pytest.mark.parametrize("workers", [0])
def test_without_workers_nothing_is_started(tmp_path: Path, workers: int) -> None:
    svc = _service(tmp_path, FakeClock(), read_workers=workers, embedder="none")

    async def run() -> None:
        assert svc.read_pool is None
        vectors = await _fill(svc, SPACE, 10, seed=13)
        await svc.recall(SPACE, Cue(embedding=vectors[0]))
        space = await svc._space(SPACE)
        assert space.store is not None
        # Nothing recorded for copies: no change log, no epoch hook, no fans log.
        assert space.vectors.changes is None and space.store.on_epoch is None
        assert space.density.changes_since(space.density.version) is None

    _drive(svc, run())


def test_a_copy_of_an_empty_space_takes_its_first_vector_and_dimension(tmp_path: Path) -> None:
    clock = FakeClock()
    svc = _service(tmp_path, clock, embedder="none")

    async def run() -> None:
        rng = np.random.default_rng(14)
        v = rng.standard_normal(DIM).tolist()
        empty = await _served(svc, OTHER, Cue(embedding=v))  # a copy with no dimension yet
        assert not empty.results
        pool = svc.read_pool
        assert pool is not None
        space = await svc._space(OTHER)
        reloads = pool.reloads
        got = await svc.remember(OTHER, MemoryInput(content="the first one", embedding=v))
        first = await _same_as_own(svc, space, Cue(embedding=v))
        assert [r.memory.id for r in first.results] == [got.memory_id]
        assert pool.reloads == reloads

    _drive(svc, run())


def _served_count(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    found = re.search(r'^engram_recall_worker_total\{outcome="served"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_real_server_answers_rest_and_grpc_recalls_from_its_worker(
        engram_server_factory: Callable[..., EngramProcess]) -> None:
    srv = engram_server_factory(spaces=[SPACE], settings={"read_workers": 1, "embedder": "none"})
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((40, DIM))
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        ids = []
        for i, v in enumerate(vectors):
            body = {"content": f"fact {i}", "embedding": v.tolist()}
            got = http.post("/api/v1/memories/remember", json=body, headers={"X-Memory-Space-Id": SPACE})
            assert got.status_code == 201, got.text
            ids.append(got.json()["memory_id"])
        cue = {"embedding": vectors[11].tolist(), "rank": "similarity", "max_results": 3}

        def rest_recall(_: int) -> str:
            got = http.post("/api/v1/memories/recall", json=cue, headers={"X-Memory-Space-Id": SPACE})
            assert got.status_code == 200, got.text
            return str(got.json()["results"][0]["memory"]["id"])

        # Concurrent callers spill over to the worker once its copy has loaded (after the space
        # has been still); a lone caller is then still answered by the server itself (no hop).
        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(8) as callers:
            while _served_count(http) < 5:
                assert time.monotonic() < deadline, srv.logs()[-2000:]
                assert set(callers.map(rest_recall, range(16))) == {ids[11]}
            before = _served_count(http)
            for _ in range(10):
                assert rest_recall(0) == ids[11]
            assert _served_count(http) == before
            with grpc.insecure_channel(srv.grpc_target) as ch:
                stub = spb_grpc.EngramServiceStub(ch)

                def grpc_recall(_: int) -> str:
                    grpc_cue = pb.Cue(embedding=vectors[11].tolist(), max_results=3,
                                      rank=pb.RANK_MODE_SIMILARITY)
                    res = stub.Recall(spb.RecallRequest(cue=grpc_cue, memory_space_id=SPACE), timeout=30)
                    return str(res.result.results[0].memory.id)

                while _served_count(http) < before + 5:
                    assert time.monotonic() < deadline, srv.logs()[-2000:]
                    assert set(callers.map(grpc_recall, range(16))) == {ids[11]}
            # A write, then at once concurrent recalls of it: every answer has it, and the worker
            # answers some of them, its copy brought forward with the write (no reload).
            fresh = (-vectors[11]).tolist()
            got = http.post("/api/v1/memories/remember", json={"content": "fresh", "embedding": fresh},
                            headers={"X-Memory-Space-Id": SPACE})
            assert got.status_code == 201, got.text
            before = _served_count(http)

            def fresh_recall(_: int) -> str:
                res = http.post("/api/v1/memories/recall", headers={"X-Memory-Space-Id": SPACE},
                                json={"embedding": fresh, "rank": "similarity", "max_results": 1})
                return str(res.json()["results"][0]["memory"]["id"])

            while _served_count(http) <= before:  # until concurrent callers spill to the worker
                assert time.monotonic() < deadline + 30, srv.logs()[-2000:]
                assert set(callers.map(fresh_recall, range(16))) == {got.json()["memory_id"]}
            caught = re.search(r'^engram_read_worker_copies_total\{how="caught_up"\} ([0-9.e+]+)$',
                               http.get("/metrics").text, re.M)
            assert caught is not None and float(caught.group(1)) >= 1
        workers = psutil.Process(srv.pid).children(recursive=True)
        assert any("engram.readpool" in " ".join(p.cmdline()) for p in workers)
    # kill -9 the server: its worker sees its input close and leaves (no orphan holding the files).
    srv.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
