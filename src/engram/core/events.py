"""Per-space event bus with one bounded queue per subscriber.

Invariants (SPEC §6):

* Publishing never blocks and never fails because of a subscriber. A subscriber
  whose queue is full misses the event; once it has room again, a ``Lagged``
  notice saying how many it missed is queued in the place of those events.
* A subscriber that keeps missing events for ``max_lag_seconds`` without ever
  emptying its queue is *dropped*: its queue is freed at once, it leaves the
  bus, and its consumer reads one last ``Lagged`` then ``Closed("slow consumer
  ...")``. Writers (the group-commit thread) and every other subscriber, in
  this space or any other, are unaffected.

Fan-out cost (measured with 500 SSE subscribers on one space: the write rate of
that space fell from ~550/s to ~38/s and other spaces' recall P50 rose 25x):

* ``publish_many`` hands a whole group-commit run to each subscriber under one
  lock acquisition, not one per event.
* Waking consumers costs one ``call_soon_threadsafe`` per event loop per
  publish, not one per subscriber: the futures of every subscriber waiting on
  that loop are resolved by a single callback.
* An event is encoded once per transport (``Event.encoded``) and the bytes or
  message are shared by every subscriber.

Subscribers may be consumed from asyncio (``await sub.get()``) or from a thread
(``sub.get_blocking()``); publishing may happen from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

EVENT_TYPES = (
    "stored",
    "recalled",
    "activation",
    "association",
    "consolidation",
    "forgotten",
    "decay",
    "space",
    "updated",  # a memory changed in place (PUT, PATCH, UpdateMemory)
)

SLOW_CONSUMER = "slow consumer"
_T = TypeVar("_T")
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@dataclass(frozen=True)
class Event:
    type: str
    memory_space_id: str
    lsn: int
    data: dict[str, Any]
    timestamp: float = field(default_factory=time.time)
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "memory_space_id": self.memory_space_id,
            "lsn": self.lsn,
            "timestamp": self.timestamp,
            "data": self.data,
        }

    def encoded(self, key: str, encode: Callable[[Event], _T]) -> _T:
        """This event encoded for one transport, computed once and shared by every subscriber.

        Two threads may race to compute it; both get equal values, one of them is kept.
        """
        try:
            value: _T = self._memo[key]
        except KeyError:
            value = self._memo.setdefault(key, encode(self))
        return value


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

    def __init__(self, bus: EventBus, types: Iterable[str] | None, depth: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self.id = next(self._ids)
        self.bus = bus
        self.types = frozenset(types) if types else None
        self.depth = depth
        self.dropped = False  # ended by the bus as a slow consumer
        self._on_close = on_close  # releases the admission slot (see core.admission), once
        self._buf: collections.deque[Event | Lagged] = collections.deque()
        self._held = 0  # events in _buf (Lagged markers are not counted against depth)
        self._missed = 0  # events missed and not yet reported by a Lagged in _buf
        self._missed_last_lsn = 0
        # Lag period: from the first missed event until the consumer next finds its queue empty.
        self._lag_since: float | None = None
        self._closed: str | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # for get_blocking consumers only
        self._blocking = 0
        self._waiter: _Waiter | None = None  # the asyncio consumer waiting for an item
        self._end_waiters: list[_Waiter] = []

    # -- producer side (any thread; called by the bus) --------------------------------------------
    def _offer(self, events: Sequence[Event], now: float, max_lag: float) -> _Waiter | None:
        """Queue what this subscriber wants of ``events``; returns the waiter to wake, if any."""
        with self._lock:
            if self._closed is not None:
                return None
            added = False
            for ev in events:
                if self.types is not None and ev.type not in self.types:
                    continue
                if self._held >= self.depth:
                    self._missed += 1
                    self._missed_last_lsn = ev.lsn
                    if self._lag_since is None:
                        self._lag_since = now
                    continue
                if self._missed:  # the notice goes where the missed events would have been
                    self._buf.append(Lagged(self.bus.memory_space_id, self._missed, self._missed_last_lsn))
                    self._missed = 0
                self._buf.append(ev)
                self._held += 1
                added = True
            if self._lag_since is not None and now - self._lag_since >= max_lag:
                self._drop_locked(now)
                added = True
            if not added:
                return None
            if self._blocking:
                self._cond.notify_all()
            waiter, self._waiter = self._waiter, None
            return waiter

    def _drop_locked(self, now: float) -> None:
        """Too slow for too long: free the queue, keep only the count of what it never got."""
        missed = self._missed
        last = self._missed_last_lsn
        for item in self._buf:
            if isinstance(item, Lagged):
                missed += item.missed
                last = max(last, item.last_lsn)
            else:
                missed += 1
                last = max(last, item.lsn)
        self._buf.clear()
        self._held = 0
        self._missed, self._missed_last_lsn = missed, last
        seconds = now - (self._lag_since or now)
        self._closed = (f"{SLOW_CONSUMER}: dropped after missing events for {seconds:.1f} s "
                        f"(subscriber_max_lag_seconds = {self.bus.max_lag_seconds:g})")
        self.dropped = True

    def close(self, reason: str = "closed") -> None:
        """End this subscription (idempotent); the consumer reads what is queued, then ``Closed``."""
        self._end(reason)
        self.bus._remove(self)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _end(self, reason: str) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = reason
            if self._blocking:
                self._cond.notify_all()
            waiters = [self._waiter] if self._waiter else []
            self._waiter = None
            waiters += self._end_waiters
            self._end_waiters = []
        for loop, fut in waiters:
            _wake_on(loop, [fut])

    @property
    def closed(self) -> str | None:
        return self._closed

    # -- consumer side ----------------------------------------------------------------------------
    def _take(self) -> Event | Lagged | None:
        """Caller holds the lock."""
        if self._buf:
            item = self._buf.popleft()
            if isinstance(item, Event):
                self._held -= 1
            return item
        if self._missed:
            lag = Lagged(self.bus.memory_space_id, self._missed, self._missed_last_lsn)
            self._missed = 0
            return lag
        if self._closed is not None:
            raise Closed(self._closed)
        self._lag_since = None  # the consumer has caught up: a lag period ends here
        return None

    def get_nowait(self) -> Event | Lagged | None:
        with self._lock:
            return self._take()

    def take_many(self, limit: int) -> tuple[list[Event | Lagged], str | None]:
        """Up to ``limit`` queued items under one lock, and the close reason if the stream ended
        after them (then nothing more will come)."""
        out: list[Event | Lagged] = []
        with self._lock:
            try:
                while len(out) < limit:
                    item = self._take()
                    if item is None:
                        break
                    out.append(item)
            except Closed as closed:
                return out, closed.reason
        return out, None

    def get_blocking(self, timeout: float | None = None) -> Event | Lagged | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._blocking += 1
            try:
                while True:
                    item = self._take()
                    if item is not None:
                        return item
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            finally:
                self._blocking -= 1

    async def get(self, timeout: float | None = None) -> Event | Lagged | None:
        """Next event, a Lagged notice, or None on timeout; raises Closed at the end."""
        loop = asyncio.get_running_loop()
        with self._lock:
            item = self._take()
            if item is not None:
                return item
            fut: asyncio.Future[None] = loop.create_future()
            self._waiter = (loop, fut)
        timer = None if timeout is None else loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                if self._waiter is not None and self._waiter[1] is fut:
                    self._waiter = None
        with self._lock:
            return self._take()

    async def wait_closed(self) -> str:
        """Wait until this subscription ends (closed, or dropped by the bus); returns the reason."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed is not None:
                return self._closed
            fut: asyncio.Future[None] = loop.create_future()
            self._end_waiters.append((loop, fut))
        await fut
        return self._closed or "closed"

    def qsize(self) -> int:
        return self._held


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve_all(futs: list[asyncio.Future[None]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(None)


def _wake_on(loop: asyncio.AbstractEventLoop, futs: list[asyncio.Future[None]]) -> None:
    """Resolve ``futs`` on their loop with one callback (one self-pipe write from another thread)."""
    try:
        if asyncio._get_running_loop() is loop:
            loop.call_soon(_resolve_all, futs)
        else:
            loop.call_soon_threadsafe(_resolve_all, futs)
    except RuntimeError:  # that loop is closed, so nobody is waiting there any more
        pass


class EventBus:
    """The events of exactly one memory space."""

    def __init__(self, memory_space_id: str, depth: int = 1024, max_lag_seconds: float = 30.0) -> None:
        self.memory_space_id = memory_space_id
        self.depth = depth
        self.max_lag_seconds = max_lag_seconds
        self._subs: dict[int, Subscription] = {}
        self._snapshot: tuple[Subscription, ...] = ()  # what publish iterates, without the lock
        self._lock = threading.Lock()
        self.published = 0
        self.dropped = 0

    def subscribe(self, types: Iterable[str] | None = None, depth: int | None = None,
                  on_close: Callable[[], None] | None = None) -> Subscription:
        sub = Subscription(self, types, depth or self.depth, on_close)
        with self._lock:
            self._subs[sub.id] = sub
            self._snapshot = tuple(self._subs.values())
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if self._subs.pop(sub.id, None) is not None:
                self._snapshot = tuple(self._subs.values())

    def publish(self, type_: str, lsn: int, data: dict[str, Any]) -> None:
        self.publish_many([(type_, lsn, data)])

    def publish_many(self, items: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Publish events in order (one group-commit run): one lock per subscriber, one wake per loop."""
        events = [Event(type_, self.memory_space_id, lsn, data) for type_, lsn, data in items]
        self.published += len(events)
        subs = self._snapshot
        if not events or not subs:
            return
        now = time.monotonic()
        wakes: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        dropped: list[Subscription] = []
        for sub in subs:
            waiter = sub._offer(events, now, self.max_lag_seconds)
            if waiter is not None:
                wakes.setdefault(waiter[0], []).append(waiter[1])
            if sub.dropped:
                dropped.append(sub)
        for loop, futs in wakes.items():
            _wake_on(loop, futs)
        for sub in dropped:  # its consumer is told (Lagged, then Closed) and its transport ends it
            self.dropped += 1
            self._remove(sub)
            sub._end(sub.closed or SLOW_CONSUMER)

    @property
    def subscriber_count(self) -> int:
        return len(self._snapshot)

    def close_all(self, reason: str) -> None:
        for sub in self._snapshot:
            sub.close(reason)
