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
from typing import Any, Protocol, TypeVar

from ..storage.eventlog import Logged, Position, event_id

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
    "expired",
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
    #: Recorded in the space's event log (storage.eventlog) at position ``(lsn, seq)``: such an
    #: event can be replayed and has an SSE id. A live-only event (recalled, activation) has none.
    logged: bool = False
    seq: int = 0

    @property
    def position(self) -> tuple[int, int]:
        return self.lsn, self.seq

    @property
    def event_id(self) -> str | None:
        """The SSE ``id:`` (a resume point) of a logged event; None for a live-only one."""
        return event_id(self.lsn, self.seq) if self.logged else None

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


@dataclass(frozen=True)
class Reset:
    """Delivered first by a resumed subscription whose resume point is older than the log holds:
    the events in between cannot be replayed; the stream goes on live after ``last_lsn``."""

    memory_space_id: str
    since_lsn: int
    oldest_lsn: int
    last_lsn: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"memory_space_id": self.memory_space_id, "since_lsn": self.since_lsn,
                "oldest_lsn": self.oldest_lsn, "last_lsn": self.last_lsn, "reason": self.reason}


class ReplaySource(Protocol):
    """What a resumed subscription reads the space's event log through (``MemorySpace.replay_source``)."""

    def read(self, after: Position, types: frozenset[str] | None) -> tuple[list[Logged], Position, Position]:
        """Events after ``after`` (see ``storage.eventlog.read_after``); blocking, call off the loop."""
        ...

    def bounds(self) -> tuple[int, int]:
        """``(oldest_lsn, last_lsn)`` of the log and the space, for a reset notice."""
        ...


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
        # Resume (see resume_from): the log is replayed before the live queue is read; live
        # logged events at or before ``_skip_upto`` were replayed already and are dropped.
        self._replay: ReplaySource | None = None
        self._rpos: Position = (0, 0)
        self._rbuf: collections.deque[Event | Reset] = collections.deque()
        self._skip_upto: Position | None = None

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

    # -- resume: replay of the event log, then live -----------------------------------------------
    def resume_from(self, after: Position, source: ReplaySource) -> None:
        """Deliver the logged events after ``after`` (read from ``source``), then the live ones.

        Why no gap and no duplicate: this subscription is already on the bus (it was created
        before this call), so every event published from now on is queued; the replay reads
        the log until it finds nothing more, which includes every event committed before the
        subscription existed. A live event is then delivered only if its position is past the
        last one replayed: events committed while the replay ran were both read from the log
        and queued, and are delivered once. Positions grow in commit order (storage.eventlog).
        """
        self._rpos = after
        self._replay = source

    @property
    def replaying(self) -> bool:
        return self._replay is not None or bool(self._rbuf)

    def _replay_step(self) -> None:
        """Read the next chunk of the log into ``_rbuf``, or finish the replay (blocking)."""
        source = self._replay
        if source is None:
            return
        if self._closed is not None:  # ended meanwhile: the live side reports how
            self._replay = None
            self._rbuf.clear()
            return
        events, nxt, trimmed = source.read(self._rpos, self.types)
        if self._rpos < trimmed:
            # Events after the resume point are gone (retention): say so, then go live after
            # the space's LSN now. Events committed up to it are not delivered live either.
            oldest, last = source.bounds()
            self._rbuf.append(Reset(
                self.bus.memory_space_id, self._rpos[0], oldest, last,
                f"events after LSN {self._rpos[0]} are no longer stored (the log keeps the newest "
                f"event_log_max_events; its oldest now is LSN {oldest}); continuing live after LSN {last}"))
            self._finish_replay((last, 1 << 62))
            return
        for ev in events:
            self._rbuf.append(Event(ev.type, self.bus.memory_space_id, ev.lsn, ev.data, ev.ts,
                                    logged=True, seq=ev.seq))
        if nxt == self._rpos:  # nothing more in the log: from here on, the live queue
            self._finish_replay(nxt)
        self._rpos = nxt

    def _finish_replay(self, upto: Position) -> None:
        with self._lock:
            self._skip_upto = upto
            self._replay = None

    def _replayed(self, limit: int) -> list[Event | Reset]:
        out: list[Event | Reset] = []
        while self._rbuf and len(out) < limit:
            out.append(self._rbuf.popleft())
        return out

    async def _replay_next(self) -> Event | Reset | None:
        while not self._rbuf and self._replay is not None:
            await asyncio.to_thread(self._replay_step)
        return self._rbuf.popleft() if self._rbuf else None

    # -- consumer side ----------------------------------------------------------------------------
    def _take(self) -> Event | Lagged | None:
        """Caller holds the lock."""
        while self._buf:
            item = self._buf.popleft()
            if isinstance(item, Event):
                self._held -= 1
                skip = self._skip_upto
                if skip is not None and item.logged and item.position <= skip:
                    continue  # replayed already
            return item
        if self._missed:
            lag = Lagged(self.bus.memory_space_id, self._missed, self._missed_last_lsn)
            self._missed = 0
            return lag
        if self._closed is not None:
            raise Closed(self._closed)
        self._lag_since = None  # the consumer has caught up: a lag period ends here
        return None

    def get_nowait(self) -> Event | Lagged | Reset | None:
        if self.replaying:
            if not self._rbuf:
                self._replay_step()
            if self._rbuf:
                return self._rbuf.popleft()
        with self._lock:
            return self._take()

    def take_many(self, limit: int) -> tuple[list[Event | Lagged | Reset], str | None]:
        """Up to ``limit`` queued items under one lock, and the close reason if the stream ended
        after them (then nothing more will come). While replaying: replayed events only."""
        if self.replaying:
            return list(self._replayed(limit)), None
        out: list[Event | Lagged | Reset] = []
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

    def get_blocking(self, timeout: float | None = None) -> Event | Lagged | Reset | None:
        while self.replaying:
            if self._rbuf:
                return self._rbuf.popleft()
            self._replay_step()
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

    async def get(self, timeout: float | None = None) -> Event | Lagged | Reset | None:
        """Next event, a Lagged or Reset notice, or None on timeout; raises Closed at the end."""
        if self.replaying:
            replayed = await self._replay_next()
            if replayed is not None:
                return replayed
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

    def publish_many(self, items: Iterable[tuple[str, int, dict[str, Any]] | Logged]) -> None:
        """Publish events in order (one group-commit run): one lock per subscriber, one wake per loop.

        ``Logged`` items (``storage.eventlog.record_event``) keep their log position; plain
        ``(type, lsn, data)`` tuples are live-only events."""
        subs = self._snapshot
        if not subs:  # nobody listening: count them, build nothing (a batch publishes 1,000)
            self.published += sum(1 for _ in items)
            return
        events = [
            Event(item.type, self.memory_space_id, item.lsn, item.data, item.ts, logged=True, seq=item.seq)
            if isinstance(item, Logged)
            else Event(item[0], self.memory_space_id, item[1], item[2])
            for item in items
        ]
        self.published += len(events)
        if not events:
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
