"""Quota admission when the committed count is read before the check (auth.quotas.Quotas.admit).

The count is read off the event loop, so a write can commit and release its reservation between
that read and the check. Such a write is then in neither figure; admission must count again
(or count it conservatively), never admit past ``max_memories``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from engram.auth.quotas import RECOUNTS, Quotas
from engram.core.models import MemoryInput
from engram.errors import QuotaExceeded, StorageUnavailable
from engram.service import EngramService
from engram.settings import Settings


def item(n: int) -> MemoryInput:
    return MemoryInput(content=f"memory {n}")


class Space:
    """Committed memories, and a count that lets other writes finish while it is being read."""

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.during_count: list[Callable[[], Awaitable[None]]] = []

    async def count(self) -> int:
        seen = self.committed
        if self.during_count:  # a write that commits and releases while this count is read
            await self.during_count.pop(0)()
        return seen

    async def fresh_count(self) -> int:
        return self.committed


async def write(quotas: Quotas, space: Space, n: int, *, gate: asyncio.Event | None = None) -> bool:
    try:
        async with quotas.admit("s", [item(n)], space.count, lambda: 0):
            if gate is not None:
                await gate.wait()
            space.committed += 1
    except QuotaExceeded:
        return False
    return True


def test_a_write_released_while_another_counts_is_counted() -> None:
    async def main() -> tuple[bool, bool, int]:
        quotas = Quotas(10, 0)
        space = Space(committed=9)
        first_may_commit = asyncio.Event()
        first = asyncio.create_task(write(quotas, space, 1, gate=first_may_commit))
        await asyncio.sleep(0)  # the first write is admitted (9 + 1 <= 10) and waits to commit

        async def first_commits() -> None:
            first_may_commit.set()
            await first

        # The second write reads the count (9) while the first commits and releases its hold.
        space.during_count.append(first_commits)
        second = await write(quotas, space, 2)
        return await first, second, space.committed

    first, second, committed = asyncio.run(main())
    assert first is True
    assert second is False, "a write released during the count was in neither figure: admitted past the limit"
    assert committed == 10


def test_a_write_counted_and_then_released_is_not_counted_twice() -> None:
    """The first write has committed (the count sees it) and releases while the second counts:
    counting again admits the second into the last free place instead of refusing it early."""
    async def main() -> tuple[bool, int]:
        quotas = Quotas(10, 0)
        space = Space(committed=8)
        may_release = asyncio.Event()

        async def first() -> None:
            async with quotas.admit("s", [item(1)], space.fresh_count, lambda: 0):
                space.committed += 1
                await may_release.wait()

        held = asyncio.create_task(first())
        await asyncio.sleep(0)  # committed (9), not yet released

        async def release() -> None:
            may_release.set()
            await held

        space.during_count.append(release)
        return await write(quotas, space, 2), space.committed

    assert asyncio.run(main()) == (True, 10)


def test_a_fresh_count_admits_up_to_the_limit_exactly() -> None:
    async def main() -> list[bool]:
        quotas = Quotas(10, 0)
        space = Space(committed=0)
        return [await write(quotas, space, n) for n in range(15)]

    assert asyncio.run(main()) == [True] * 10 + [False] * 5


def test_counts_that_keep_going_stale_refuse_early_not_late() -> None:
    """When every count is overtaken by a release, the last check adds the released writes."""
    async def main() -> tuple[bool, int, int]:
        quotas = Quotas(10, 0)
        space = Space(committed=10 - (RECOUNTS + 1))

        async def overtake() -> None:  # another write admitted, committed and released meanwhile
            async with quotas.admit("s", [item(0)], space.fresh_count, lambda: 0):
                space.committed += 1

        space.during_count.extend([overtake] * (RECOUNTS + 1))
        return await write(quotas, space, 1), quotas.mark("s")[0], space.committed

    admitted, releases, committed = asyncio.run(main())
    # Every count was overtaken; the last one saw 9 and one more was released meanwhile: 10 held.
    assert releases == RECOUNTS + 1 and committed == 10
    assert admitted is False


def test_an_update_replacing_a_memory_does_not_count() -> None:
    async def main() -> bool:
        quotas = Quotas(1, 0)
        counted: list[int] = []

        async def count() -> int:
            counted.append(1)
            return 1

        async with quotas.admit("s", [item(1)], count, lambda: 0, new=0):
            pass
        return not counted

    assert asyncio.run(main()) is True


def test_a_count_that_cannot_be_read_refuses_the_write(tmp_path: Path) -> None:
    """A quota check whose count fails (no reader: too many open files...) must not count 0 and
    admit past the limit: the write gets the retriable storage error and nothing is stored."""
    service = EngramService(Settings(data_dir=tmp_path / "data", embedder="none", max_memories=1))
    try:
        async def main() -> None:
            await service.remember("default", MemoryInput(content="the one allowed"))
            space = await service._space("default")
            store = space.store
            assert store is not None
            reader = store.reader

            def no_reader() -> sqlite3.Connection:
                raise StorageUnavailable("no file descriptor for a reader (test)")

            store.reader = no_reader  # type: ignore[method-assign]
            try:
                with pytest.raises(StorageUnavailable):
                    await service.remember("default", MemoryInput(content="one too many"))
            finally:
                store.reader = reader  # type: ignore[method-assign]
            assert space.count() == 1
            with pytest.raises(QuotaExceeded):
                await service.remember("default", MemoryInput(content="one too many"))

        asyncio.run(main())
    finally:
        service.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
