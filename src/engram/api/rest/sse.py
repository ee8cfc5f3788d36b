"""Server-sent events for one space's event stream.

Wire format (one frame per event, blank-line terminated):

    id: 42                       <- the event's position in the space's event log: its LSN,
                                    or "42.1", "42.2" for the 2nd, 3rd event of one LSN
    event: stored                <- the event type
    data: {"type": ..., "memory_space_id": ..., "lsn": 42, "timestamp": ..., "data": {...}}

Only logged events (stored writes: stored, forgotten, association, consolidation, updated,
expired) carry an ``id:``; live-only events (recalled, activation) carry none, so the client's
last event id (the resume point it sends as ``Last-Event-ID``) is always a logged event.
A resumed stream (``Last-Event-ID`` or ``?since_lsn=``) replays the log after that point first;
if that point is older than the log holds, it starts with ``event: reset`` (data
``{"since_lsn", "oldest_lsn", "last_lsn", "reason"}``) and goes on live.

plus ``: heartbeat`` comment lines every ``stream_heartbeat_seconds`` while
idle, ``event: lagged`` (data ``{"missed", "last_lsn"}``) when this consumer
fell behind and events were dropped for it, and a final ``event: end`` (data
``{"reason"}``) when the server ends the stream (shutdown, space deleted, or
dropped as too slow). Then the response completes.

Three tasks run per stream: the pump (subscription -> socket), a watcher on
``receive`` for ``http.disconnect``, and a watcher for the subscription's end.
Whichever of pump and disconnect ends first cancels the other, and the
subscription is always closed in ``finally``: a client that goes away is
unsubscribed at once, not at the next failed write, so the bus never keeps a
queue for nobody (and its subscriber slot is given back).

A client that stops reading fills its socket; the pump then waits in ``send``
and the subscription overflows until the bus drops it as a slow consumer
(``subscriber_max_lag_seconds``). The pump cannot write ``end`` into a full
socket, so when the subscription has ended and the pump is still stuck
``DROP_GRACE_SECONDS`` later, the connection is aborted (reset): a graceful
close would wait forever for a reader that never reads, holding the socket.

Each event is encoded once (``Event.encoded``) and the same bytes go to every
subscriber of the space.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ...core.events import Closed, Event, Lagged, Reset, Subscription
from ...observability import Metrics

log = logging.getLogger("engram.rest.sse")

MAX_FRAMES_PER_WRITE = 256
#: How long a stream whose subscription has ended may take to write its last frames before the
#: connection is aborted (the client stopped reading: its socket is full).
DROP_GRACE_SECONDS = 2.0
#: Kernel send buffer of an SSE socket (see ``_limit_send_buffer``).
SEND_BUFFER_BYTES = 256 * 1024


class EventFilter:
    __slots__ = ("min_confidence", "min_importance")

    def __init__(self, min_importance: float | None, min_confidence: float | None) -> None:
        self.min_importance = min_importance
        self.min_confidence = min_confidence

    def __call__(self, event: Event) -> bool:
        """A minimum passes only events that carry that field at or above it."""
        if self.min_importance is not None:
            value = event.data.get("importance")
            if value is None or value < self.min_importance:
                return False
        if self.min_confidence is not None:
            value = event.data.get("confidence")
            if value is None or value < self.min_confidence:
                return False
        return True


def frame(event: Event) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
    eid = event.event_id
    head = f"id: {eid}\n" if eid is not None else ""
    return f"{head}event: {event.type}\ndata: {data}\n\n".encode()


def reset_frame(reset: Reset) -> bytes:
    return f"event: reset\ndata: {json.dumps(reset.to_dict())}\n\n".encode()


def lagged_frame(lag: Lagged) -> bytes:
    data = json.dumps(
        {"memory_space_id": lag.memory_space_id, "missed": lag.missed, "last_lsn": lag.last_lsn}
    )
    return f"event: lagged\ndata: {data}\n\n".encode()


def end_frame(reason: str) -> bytes:
    return f"event: end\ndata: {json.dumps({'reason': reason})}\n\n".encode()


class EventStreamResponse(Response):
    """ASGI response streaming one subscription as SSE (a ``Response`` so FastAPI passes it through)."""

    media_type = "text/event-stream"
    background: BackgroundTask | None

    def __init__(
        self,
        sub: Subscription,
        *,
        space_id: str,
        stream: str,
        heartbeat: float,
        accept: EventFilter,
        metrics: Metrics,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.background = None
        self.on_end = on_end
        self.sub = sub
        self.space_id = space_id
        self.stream = stream
        self.heartbeat = heartbeat
        self.accept = accept
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        label = self.metrics.space_label(self.space_id)
        gauge = self.metrics.subscribers.labels("rest", label)
        gauge.inc()
        try:
            _limit_send_buffer(receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                        (b"x-memory-space", self.space_id.encode()),
                    ],
                }
            )
            hello = f": subscribed to {self.stream} of memory space {self.space_id}\nretry: 2000\n\n"
            await send({"type": "http.response.body", "body": hello.encode(), "more_body": True})
            pump = asyncio.ensure_future(self._pump(send, label))
            watch = asyncio.ensure_future(_wait_disconnect(receive))
            ended = asyncio.ensure_future(self.sub.wait_closed())
            stuck = False
            try:
                done, _ = await asyncio.wait({pump, watch, ended}, return_when=asyncio.FIRST_COMPLETED)
                if pump not in done and watch not in done:
                    # The subscription ended (dropped, space deleted, shutdown): the pump writes
                    # `end` and returns, unless the client stopped reading and its socket is full.
                    done, _ = await asyncio.wait({pump, watch}, timeout=DROP_GRACE_SECONDS,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    stuck = not done
                # The server ended the stream (not the client): complete the response.
                finished = pump in done and pump.exception() is None and watch not in done
            finally:
                for task in (pump, watch, ended):
                    task.cancel()
                for task in (pump, watch, ended):
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await task
            if stuck:
                log.info("stream aborted: the client stopped reading",
                         extra={"memory_space": self.space_id, "reason": self.sub.closed})
                await _abort_connection(receive)
            elif finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.sub.close("client disconnected")
            gauge.dec()
            if self.on_end is not None:
                self.on_end()

    async def _pump(self, send: Send, label: str) -> None:
        sub = self.sub
        while True:
            try:
                item = await sub.get(timeout=self.heartbeat)
            except Closed as closed:
                await send(
                    {"type": "http.response.body", "body": end_frame(closed.reason), "more_body": True}
                )
                return
            if item is None:
                await send({"type": "http.response.body", "body": b": heartbeat\n\n", "more_body": True})
                continue
            # Coalesce whatever is already queued into one write.
            items, ended = sub.take_many(MAX_FRAMES_PER_WRITE - 1)
            chunks: list[bytes] = []
            for one in (item, *items):
                if isinstance(one, Lagged):
                    self.metrics.lagged.labels("rest", label).inc()
                    chunks.append(lagged_frame(one))
                elif isinstance(one, Reset):
                    chunks.append(reset_frame(one))
                elif self.accept(one):
                    chunks.append(one.encoded("sse", frame))
            if ended is not None:
                chunks.append(end_frame(ended))
            if chunks:
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
            if ended is not None:
                return


def _transport(receive: Receive) -> Any:
    """The connection under this request, or None: ASGI has no way to reach it, but uvicorn's
    ``receive`` is a method of its request cycle, which holds the transport. Not reachable
    behind another server or a middleware that wrapped ``receive``; callers then do without."""
    return getattr(getattr(receive, "__self__", None), "transport", None)


def _limit_send_buffer(receive: Receive) -> None:
    """Bound the kernel's send buffer of this stream's socket to ``SEND_BUFFER_BYTES``.

    Linux grows a socket's send buffer up to ``tcp_wmem`` max (4 MiB here) while its peer does
    not read: per stalled subscriber, megabytes of kernel memory, and ~10,000 events it would
    seem to accept before the server could notice it lagging. A fixed buffer disables that
    growth (256 KiB still carries thousands of events per second over a 100 ms link).
    """
    transport = _transport(receive)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


async def _abort_connection(receive: Receive) -> None:
    """Reset the connection under this request. Without the transport (see ``_transport``),
    returning without completing the response makes the server close the connection itself."""
    transport = _transport(receive)
    abort = getattr(transport, "abort", None)
    if callable(abort):
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: a reset, so the kernel drops the unread backlog at once too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        abort()
        for _ in range(3):  # let the server see the connection lost before this app returns
            await asyncio.sleep(0)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
