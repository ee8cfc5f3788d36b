"""Per-space event bus with one bounded queue per subscriber.

Invariant: publishing never blocks and never fails because of a subscriber.
A subscriber whose queue is full loses the event, and the next thing it reads
is a ``lagged`` notice saying how many events it missed; after
``max_lag_events`` consecutive drops it is closed. Writers (the group-commit
thread) and every other subscriber, in this space or any other, are unaffected.

Subscribers may be consumed from asyncio (``await sub.get()``) or from a
thread (``sub.get_blocking()``); publishing may happen from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = (
    "stored",
    "recalled",
    "activation",
    "association",
    "consolidation",
    "forgotten",
    "decay",
    "space",
)


@dataclass(frozen=True)
class Event:
    type: str
    memory_space_id: str
    lsn: int
    data: dict[str, Any]
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "memory_space_id": self.memory_space_id,
            "lsn": self.lsn,
            "timestamp": self.timestamp,
            "data": self.data,
        }


@dataclass(frozen=True)
class Lagged:
    """Delivered in place of the events a slow subscriber missed."""

    memory_space_id: str
    missed: int
    last_lsn: int


class Closed(Exception):
    """The subscription ended (space deleted, server shutting down, or too slow)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    _ids = itertools.count(1)

    def __init__(
        self,
        bus: EventBus,
        types: Iterable[str] | None,
        depth: int,
        max_lag_events: int,
    ) -> None:
        self.id = next(self._ids)
        self.bus = bus
        self.types = frozenset(types) if types else None
        self.depth = depth
        self.max_lag_events = max_lag_events
        self._buf: collections.deque[Event] = collections.deque()
        self._missed = 0
        self._missed_last_lsn = 0
        self._consecutive_drops = 0
        self._closed: str | None = None
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- producer side (any thread) -------------------------------------------
    def _offer(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        with self._cond:
            if self._closed:
                return
            if len(self._buf) >= self.depth:
                self._missed += 1
                self._missed_last_lsn = event.lsn
                self._consecutive_drops += 1
                if self._consecutive_drops >= self.max_lag_events:
                    self._closed = "slow consumer: dropped after missing too many events"
            else:
                self._buf.append(event)
                self._consecutive_drops = 0
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        _wake_all(waiters)

    def close(self, reason: str = "closed") -> None:
        with self._cond:
            if self._closed is None:
                self._closed = reason
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        _wake_all(waiters)
        self.bus._remove(self)

    @property
    def closed(self) -> str | None:
        return self._closed

    # -- consumer side --------------------------------------------------------
    def _take(self) -> Event | Lagged | None:
        """Caller holds the condition."""
        if self._missed:
            lag = Lagged(self.bus.memory_space_id, self._missed, self._missed_last_lsn)
            self._missed = 0
            return lag
        if self._buf:
            return self._buf.popleft()
        if self._closed:
            raise Closed(self._closed)
        return None

    def get_nowait(self) -> Event | Lagged | None:
        with self._cond:
            return self._take()

    def get_blocking(self, timeout: float | None = None) -> Event | Lagged | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                item = self._take()
                if item is not None:
                    return item
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    async def get(self, timeout: float | None = None) -> Event | Lagged | None:
        """Next event, a Lagged notice, or None on timeout; raises Closed at the end."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._cond:
                item = self._take()
                if item is not None:
                    return item
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return None

    def qsize(self) -> int:
        return len(self._buf)


def _wake_all(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, fut in waiters:
        # RuntimeError: that loop is closed, so nobody is waiting there any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_wake, fut)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class EventBus:
    """The events of exactly one memory space."""

    def __init__(self, memory_space_id: str, depth: int = 1024, max_lag_events: int = 100_000) -> None:
        self.memory_space_id = memory_space_id
        self.depth = depth
        self.max_lag_events = max_lag_events
        self._subs: dict[int, Subscription] = {}
        self._lock = threading.Lock()
        self.published = 0

    def subscribe(self, types: Iterable[str] | None = None, depth: int | None = None) -> Subscription:
        sub = Subscription(self, types, depth or self.depth, self.max_lag_events)
        with self._lock:
            self._subs[sub.id] = sub
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(sub.id, None)

    def publish(self, type_: str, lsn: int, data: dict[str, Any]) -> None:
        event = Event(type_, self.memory_space_id, lsn, data)
        self.published += 1
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            sub._offer(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def close_all(self, reason: str) -> None:
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            sub.close(reason)
