"""The event bus (core/events.py): bounded queues, lag notices in place, the drop bound, caps,
one encoding per event and one wake per event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from engram.core.admission import StreamAdmission, client_key
from engram.core.events import Closed, Event, EventBus, Lagged
from engram.errors import TooManySubscribers


def _stored(bus: EventBus, first: int, last: int) -> None:
    bus.publish_many(("stored", lsn, {"memory_id": f"m{lsn}"}) for lsn in range(first, last + 1))


def test_lagged_notice_sits_where_the_missed_events_were() -> None:
    bus = EventBus("alpha", depth=3, max_lag_seconds=60)
    sub = bus.subscribe()
    _stored(bus, 1, 5)  # 1-3 queued, 4-5 missed
    assert sub.get_nowait().lsn == 1  # type: ignore[union-attr]
    _stored(bus, 6, 6)  # room again: the notice goes first, then 6
    items = [sub.get_nowait() for _ in range(4)]
    assert [getattr(i, "lsn", None) for i in items] == [2, 3, None, 6]
    assert items[2] == Lagged("alpha", missed=2, last_lsn=5)
    assert sub.get_nowait() is None and not sub.closed


def test_a_subscriber_lagging_past_the_bound_is_dropped_and_told() -> None:
    bus = EventBus("alpha", depth=2, max_lag_seconds=0.2)
    slow, ok = bus.subscribe(), bus.subscribe()
    _stored(bus, 1, 3)  # slow lags from here on (3 missed)
    assert ok.take_many(10)[0] and slow.closed is None
    time.sleep(0.25)  # the bound itself: continuously behind for longer than max_lag_seconds
    _stored(bus, 4, 4)
    assert slow.dropped and slow.closed is not None and slow.closed.startswith("slow consumer")
    assert bus.subscriber_count == 1 and slow.qsize() == 0  # its queue is freed at once
    lag = slow.get_nowait()
    assert lag == Lagged("alpha", missed=4, last_lsn=4)  # everything it never got, queued ones included
    with pytest.raises(Closed, match="slow consumer"):
        slow.get_nowait()
    assert [i.lsn for i in ok.take_many(10)[0]] == [4]  # type: ignore[union-attr]
    assert ok.closed is None


def test_catching_up_ends_the_lag_period() -> None:
    bus = EventBus("alpha", depth=2, max_lag_seconds=0.2)
    sub = bus.subscribe()
    _stored(bus, 1, 3)
    sub.take_many(10)  # drained (notice included): no longer behind
    assert sub.get_nowait() is None
    time.sleep(0.25)
    _stored(bus, 4, 6)  # behind again, but only just now
    assert sub.closed is None


def test_one_wake_per_loop_and_one_encoding_per_event() -> None:
    bus = EventBus("alpha", depth=100, max_lag_seconds=60)
    encodings = []

    def encode(ev: Event) -> bytes:
        encodings.append(ev.lsn)
        return str(ev.lsn).encode()

    async def scenario() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        subs = [bus.subscribe() for _ in range(50)]
        waiting = [asyncio.ensure_future(s.get()) for s in subs]
        await asyncio.sleep(0)  # every consumer is now waiting
        calls = []
        original = loop.call_soon_threadsafe

        def counting(*args: object, **kwargs: object) -> object:
            calls.append(args)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        publisher = threading.Thread(target=_stored, args=(bus, 1, 3))
        publisher.start()
        publisher.join()
        firsts = await asyncio.gather(*waiting)
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        assert len(calls) == 1  # 50 subscribers, 3 events, one loop: one wake
        out = []
        for sub, first in zip(subs, firsts, strict=True):
            rest, _ = sub.take_many(10)
            out.append([e.encoded("t", encode) for e in (first, *rest) if isinstance(e, Event)])
        return out

    frames = asyncio.run(scenario())
    assert frames == [[b"1", b"2", b"3"]] * 50
    assert sorted(encodings) == [1, 2, 3]


def test_admission_caps_and_release() -> None:
    caps = StreamAdmission(per_space=2, per_client=3, total=4)
    a, b = client_key("10.0.0.1"), client_key("10.0.0.2")
    releases = [caps.admit("s1", a), caps.admit("s1", a), caps.admit("s2", a)]
    with pytest.raises(TooManySubscribers, match="max_subscribers_per_client"):
        caps.admit("s3", a)
    with pytest.raises(TooManySubscribers, match="max_subscribers_per_space"):
        caps.admit("s1", b)
    releases.append(caps.admit("s2", b))
    with pytest.raises(TooManySubscribers, match=r"max_subscribers\)"):
        caps.admit("s3", b)
    releases[0]()
    releases[0]()  # twice is once
    assert caps.open_count() == 3 and caps.open_count(space_id="s1") == 1
    caps.admit("s1", b)
    assert client_key("1.2.3.4", key_id="k1") == "key:k1"
