"""Service reads: a lease keeps the space open under them; long operations bypass the read gate."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from engram.core.models import ConsolidateInput, MemoryInput
from engram.core.space import MemorySpace
from engram.service import EngramService
from engram.testing import make_service


def _service(root: Path) -> EngramService:
    return make_service(root, ["aaa"])


def _blocking_read(started: threading.Event, release: threading.Event):  # type: ignore[no-untyped-def]
    def fn(space: MemorySpace) -> int:
        started.set()
        assert release.wait(30), "the test never released the read"
        return space.count()

    return fn


def test_idle_unload_skips_a_space_under_a_read(tmp_path: Path) -> None:
    svc = _service(tmp_path)

    async def main() -> None:
        await svc.remember("aaa", MemoryInput(content="kept open"))
        started, release = threading.Event(), threading.Event()
        read = asyncio.create_task(svc._read("aaa", _blocking_read(started, release)))
        assert await asyncio.to_thread(started.wait, 30)
        assert "aaa" not in svc.registry.unload_idle(0), "unloaded under a running read"
        release.set()
        assert await read == 1
        assert "aaa" in svc.registry.unload_idle(0)

    try:
        asyncio.run(main())
    finally:
        svc.close()


def test_consolidation_is_not_held_up_by_the_read_gate(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    assert svc.settings.read_concurrency == 1

    async def main() -> None:
        started, release = threading.Event(), threading.Event()
        read = asyncio.create_task(svc._read("aaa", _blocking_read(started, release)))
        assert await asyncio.to_thread(started.wait, 30)  # the only gate slot is taken
        try:
            report = await asyncio.wait_for(svc.consolidate("aaa", ConsolidateInput()), 30)
            assert report.memory_space_id == "aaa"
        finally:
            release.set()
        await read

    try:
        asyncio.run(main())
    finally:
        svc.close()


def test_a_read_in_native_work_lets_the_gate_go_and_takes_it_back(tmp_path: Path) -> None:
    """core.readgate: a read blocked in native work (a vector scan, an FTS5 query) does not hold
    the read gate, so another short read runs meanwhile; its Python after the native stretch
    runs inside the gate again (the other read cannot enter until it is done)."""
    from engram.core import readgate

    svc = _service(tmp_path)
    assert svc.settings.read_concurrency == 1
    in_native, leave_native, after_native, finish = (threading.Event() for _ in range(4))

    def scanning(space: MemorySpace) -> int:
        with readgate.native():
            in_native.set()
            assert leave_native.wait(30), "the test never ended the native stretch"
        after_native.set()
        assert finish.wait(30), "the test never finished the read"
        return space.count()

    async def main() -> None:
        await svc.remember("aaa", MemoryInput(content="read twice"))
        first = asyncio.create_task(svc._read("aaa", scanning))
        assert await asyncio.to_thread(in_native.wait, 30)
        # The gate's only slot is free while the first read is in native work.
        assert await asyncio.wait_for(svc._read("aaa", lambda s: s.count()), 30) == 1
        leave_native.set()
        assert await asyncio.to_thread(after_native.wait, 30)
        # Back in its Python, the first read holds the gate again: a second read waits for it.
        second = asyncio.create_task(svc._read("aaa", lambda s: s.count()))
        done, _ = await asyncio.wait({second}, timeout=0.5)
        assert not done, "a read ran while the gate's only slot was taken back"
        finish.set()
        assert await first == 1
        assert await asyncio.wait_for(second, 30) == 1

    try:
        asyncio.run(main())
    finally:
        svc.close()
