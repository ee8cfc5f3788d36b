"""``streaming.coalesced``: how StreamingRemember groups a stream's messages into batches.

Pure asyncio with a request iterator and a handler the test controls (the grouping itself;
the gRPC and storage sides are in tests/integration/test_grpc_stream_coalesce.py): while a
group is being handled, what arrives forms the next group; groups run one after another, in
arrival order, split by key and size; results come back one per request, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from engram.api.grpc.streaming import coalesced


@dataclass
class Req:
    seq: int
    memory_space_id: str = "alpha"


class Feed:
    """Requests the test hands over one by one, as a stream's client sends them; the server
    reads them one per turn of the event loop, as grpc.aio delivers a stream's messages."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[Req | None] = asyncio.Queue()
        self.taken = 0

    def send(self, *reqs: Req) -> None:
        for r in reqs:
            self.q.put_nowait(r)

    def close(self) -> None:
        self.q.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Req]:
        while (r := await self.q.get()) is not None:
            self.taken += 1
            yield r
            await asyncio.sleep(0)  # as gRPC: one message per turn of the loop, even when more wait


class Handler:
    """Records each group; a group waits for ``release`` when ``hold`` is set."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self, reqs: list[Req]) -> list[Any]:
        self.groups.append([r.seq for r in reqs])
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        return [("ack", r.seq) for r in reqs]


async def until(cond: Any) -> None:
    for _ in range(10_000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_messages_arriving_during_a_group_form_the_next_group() -> None:
    async def go() -> tuple[list[Any], list[list[int]]]:
        feed, handle = Feed(), Handler()
        handle.hold = asyncio.Event()
        out: list[Any] = []

        async def consume() -> None:
            async for r in coalesced(feed, handle):
                out.append(r)

        task = asyncio.ensure_future(consume())
        feed.send(Req(1))
        await handle.started.wait()  # group 1 = [1], held (its commit in progress)
        feed.send(*(Req(i) for i in range(2, 12)))
        await until(lambda: feed.taken == 11)
        handle.hold.set()
        await until(lambda: len(out) == 11)
        feed.send(Req(12))  # an idle stream again: starts at once, alone
        await until(lambda: len(out) == 12)
        feed.close()
        await task
        return out, handle.groups

    out, groups = run(go())
    assert groups == [[1], list(range(2, 12)), [12]]
    assert out == [("ack", i) for i in range(1, 13)]


def test_groups_split_by_key_and_size_and_keep_order() -> None:
    async def go() -> tuple[list[Any], list[list[int]]]:
        feed, handle = Feed(), Handler()
        handle.hold = asyncio.Event()
        out: list[Any] = []

        async def consume() -> None:
            async for r in coalesced(feed, handle, most=4):
                out.append(r)

        task = asyncio.ensure_future(consume())
        feed.send(Req(0))
        await handle.started.wait()
        spaces = ["alpha"] * 6 + ["beta"] * 2 + ["alpha"]
        feed.send(*(Req(i, s) for i, s in enumerate(spaces, start=1)))
        feed.close()
        await until(lambda: feed.taken == 10)
        handle.hold.set()
        await task
        return out, handle.groups

    out, groups = run(go())
    assert groups == [[0], [1, 2, 3, 4], [5, 6], [7, 8], [9]]
    assert out == [("ack", i) for i in range(10)]


def test_window_bounds_requests_in_flight() -> None:
    async def go() -> tuple[int, list[list[int]]]:
        feed, handle = Feed(), Handler()
        handle.hold = asyncio.Event()

        async def consume() -> list[Any]:
            return [r async for r in coalesced(feed, handle, window=5)]

        task = asyncio.ensure_future(consume())
        feed.send(*(Req(i) for i in range(1, 21)))
        feed.close()
        await handle.started.wait()
        for _ in range(200):
            await asyncio.sleep(0)
        read_while_held = feed.taken
        handle.hold.set()
        out = await task
        assert out == [("ack", i) for i in range(1, 21)]
        return read_while_held, handle.groups

    read_while_held, groups = run(go())
    assert read_while_held <= 6  # 5 in flight; the reader may hold one more, waiting for room
    assert [s for g in groups for s in g] == list(range(1, 21)) and max(len(g) for g in groups) <= 5


def test_a_failing_request_side_ends_the_stream_after_what_was_read() -> None:
    async def requests() -> AsyncIterator[Req]:
        yield Req(1)
        yield Req(2)
        raise RuntimeError("client went away")

    async def go() -> list[Any]:
        out: list[Any] = []
        with pytest.raises(RuntimeError, match="client went away"):
            async for r in coalesced(requests(), Handler()):
                out.append(r)
        return out

    assert run(go()) == [("ack", 1), ("ack", 2)]
