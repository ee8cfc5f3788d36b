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
from engram.core.models import Cue, MemoryInput, RankMode, RecallMode, RecallResult
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
        # A new memory exactly at the query: the very next recall (no wait) returns it first.
        receipt = await svc.remember(SPACE, MemoryInput(content="the newest", embedding=vectors[0]))
        before = pool.served
        first = await svc.recall(SPACE, probe)
        assert first.results[0].memory.id == receipt.memory_id
        assert pool.served == before  # the worker's copy was behind: the server answered
        # Once the space is still, the worker answers again, with the new memory.
        again = await _served(svc, SPACE, probe)
        assert again.results[0].memory.id == receipt.memory_id
        # A forgotten memory is gone from the next recall.
        await svc.forget(SPACE, receipt.memory_id)
        after = await svc.recall(SPACE, probe)
        assert receipt.memory_id not in {r.memory.id for r in after.results}
        gone = await _served(svc, SPACE, probe)
        assert receipt.memory_id not in {r.memory.id for r in gone.results}

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
    try:
        assert svc.read_pool is None
    finally:
        svc.close()


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
        workers = psutil.Process(srv.pid).children(recursive=True)
        assert any("engram.readpool" in " ".join(p.cmdline()) for p in workers)
    # kill -9 the server: its worker sees its input close and leaves (no orphan holding the files).
    srv.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
