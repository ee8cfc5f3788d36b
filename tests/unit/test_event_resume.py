"""``Subscription.resume_from``: replay then live, with forced orderings (no server, no sleeps).

A fake log stands in for the space's event log so each interleaving of "committed", "published"
and "replayed" can be set up exactly: an event committed before the subscription (only in the
log), one committed and published while the replay runs (in both: delivered once), one after
(live only), trimming before and during the replay (reset), and events sharing one LSN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engram.core.events import Event, EventBus, Reset, Subscription
from engram.storage.eventlog import LAST_SEQ, Logged, Position, parse_position


def ev(lsn: int, seq: int = 0, mid: str = "") -> Logged:
    return Logged("stored", lsn, seq, {"memory_id": mid or f"m{lsn}.{seq}"}, 0.0)


class FakeLog:
    """The log as a list; ``on_read`` runs before each read (to commit/publish/trim "meanwhile")."""

    def __init__(self, events: list[Logged], chunk: int = 2) -> None:
        self.events = events
        self.trimmed: Position = (0, -1)
        self.chunk = chunk
        self.reads = 0
        self.on_read: list[Callable[[], None] | None] = []

    def read(self, after: Position, types: frozenset[str] | None) -> tuple[list[Logged], Position, Position]:
        if self.reads < len(self.on_read) and self.on_read[self.reads] is not None:
            self.on_read[self.reads]()
        self.reads += 1
        rest = [e for e in self.events if (e.lsn, e.seq) > after and (e.lsn, e.seq) > self.trimmed]
        out = rest[: self.chunk]
        last = (out[-1].lsn, out[-1].seq) if out else after
        return [e for e in out if types is None or e.type in types], last, self.trimmed

    def bounds(self) -> tuple[int, int]:
        kept = [e.lsn for e in self.events if (e.lsn, e.seq) > self.trimmed]
        return (min(kept) if kept else 0), max((e.lsn for e in self.events), default=0)


def commit(bus: EventBus, log: FakeLog, *events: Logged, publish: bool = True) -> None:
    log.events.extend(events)
    if publish:
        bus.publish_many(list(events))


def drain(sub: Subscription) -> list[tuple[int, int] | str]:
    out: list[tuple[int, int] | str] = []
    while True:
        item = sub.get_nowait()
        if item is None:
            return out
        out.append(item.position if isinstance(item, Event) else type(item).__name__)


def test_replay_then_live_has_no_gap_and_no_duplicate() -> None:
    bus = EventBus("s")
    log = FakeLog([ev(1), ev(2), ev(3)])  # committed (and published) before the subscription
    sub = bus.subscribe()
    # During the replay: 4 commits and is published (so it is both in the log and queued),
    # 5 commits but is published only after the replay has finished reading.
    log.on_read = [None, lambda: commit(bus, log, ev(4)), lambda: commit(bus, log, ev(5), publish=False)]
    sub.resume_from((1, 0), log)  # the client saw event 1
    got = drain(sub)
    bus.publish_many([ev(5), ev(6)])  # 5's publish arrives late; 6 is live only
    got += drain(sub)
    assert got == [(2, 0), (3, 0), (4, 0), (5, 0), (6, 0)]


def test_events_sharing_an_lsn_resume_after_the_right_one() -> None:
    bus = EventBus("s")
    log = FakeLog([ev(7, 0), ev(7, 1), ev(7, 2), ev(8)])
    for point, want in (("7", [(7, 1), (7, 2), (8, 0)]), ("7.1", [(7, 2), (8, 0)]), ("7.2", [(8, 0)])):
        sub = bus.subscribe()
        sub.resume_from(parse_position(point), log)
        assert drain(sub) == want, point
        sub.close()
    sub = bus.subscribe()
    sub.resume_from((7, LAST_SEQ), log)  # since_lsn=7: after every event of 7
    assert drain(sub) == [(8, 0)]


def test_a_trimmed_resume_point_gets_a_reset_then_live_after_last_lsn() -> None:
    bus = EventBus("s")
    log = FakeLog([ev(i) for i in range(1, 11)])
    log.trimmed = (6, 0)
    sub = bus.subscribe()
    sub.resume_from((3, LAST_SEQ), log)
    first = sub.get_nowait()
    assert isinstance(first, Reset)
    assert (first.since_lsn, first.oldest_lsn, first.last_lsn) == (3, 7, 10)
    bus.publish_many([ev(10, 0)])  # committed before the reset's last_lsn: not delivered
    bus.publish_many([ev(11)])
    assert drain(sub) == [(11, 0)]


def test_trimming_during_the_replay_is_a_reset_not_a_gap() -> None:
    bus = EventBus("s")
    log = FakeLog([ev(i) for i in range(1, 9)], chunk=2)
    sub = bus.subscribe()

    def trim() -> None:
        log.trimmed = (5, 0)

    log.on_read = [None, trim]
    sub.resume_from((0, LAST_SEQ), log)
    got = drain(sub)
    assert got[:2] == [(1, 0), (2, 0)] and got[2] == "Reset" and len(got) == 3


def test_async_consumer_and_type_filter_and_live_only_events() -> None:
    bus = EventBus("s")
    log = FakeLog([ev(1), Logged("forgotten", 2, 0, {"memory_id": "m1"}, 0.0), ev(3)])
    sub = bus.subscribe(types=["forgotten", "recalled"])
    sub.resume_from((0, LAST_SEQ), log)

    async def consume() -> list[object]:
        out: list[object] = [await sub.get(timeout=1)]
        bus.publish("recalled", 3, {"results": 0})  # live only: never deduplicated, no id
        item = await sub.get(timeout=1)
        assert isinstance(item, Event) and item.event_id is None and not item.logged
        out.append(item.type)
        return out

    first, second = asyncio.run(consume())
    assert isinstance(first, Event) and first.type == "forgotten" and first.event_id == "2"
    assert second == "recalled"
