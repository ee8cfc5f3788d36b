"""Server-sent events for one space's event stream.

Wire format (one frame per event, blank-line terminated):

    id: 42                       <- the space's LSN of the event
    event: stored                <- the event type
    data: {"type": ..., "memory_space_id": ..., "lsn": 42, "timestamp": ..., "data": {...}}

plus ``: heartbeat`` comment lines every ``stream_heartbeat_seconds`` while
idle, ``event: lagged`` (data ``{"missed", "last_lsn"}``) when this consumer
fell behind and events were dropped for it, and a final ``event: end`` (data
``{"reason"}``) when the server ends the stream (shutdown, space deleted, or
dropped as too slow). Then the response completes.

Two tasks run per stream: the pump (subscription -> socket) and a watcher
on ``receive`` for ``http.disconnect``. Whichever ends first cancels the
other, and the subscription is always closed in ``finally``: a client that
goes away is unsubscribed at once, not at the next failed write, so the bus
never keeps a queue for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ...core.events import Closed, Event, Lagged, Subscription
from ...observability import Metrics

log = logging.getLogger("engram.rest.sse")

MAX_FRAMES_PER_WRITE = 256


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
    return f"id: {event.lsn}\nevent: {event.type}\ndata: {data}\n\n".encode()


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
    ) -> None:
        self.background = None
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
            try:
                done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
                # The server ended the stream (not the client): complete the response.
                finished = pump in done and pump.exception() is None and watch not in done
            finally:
                for task in (pump, watch):
                    task.cancel()
                for task in (pump, watch):
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await task
            if finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.sub.close("client disconnected")
            gauge.dec()

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
            chunks: list[bytes] = []
            ended: str | None = None
            taken = 0
            while item is not None:
                if isinstance(item, Lagged):
                    self.metrics.lagged.labels("rest", label).inc()
                    chunks.append(lagged_frame(item))
                elif self.accept(item):
                    chunks.append(frame(item))
                taken += 1
                if taken >= MAX_FRAMES_PER_WRITE:
                    break
                try:
                    item = sub.get_nowait()
                except Closed as closed:
                    ended = closed.reason
                    break
            if chunks:
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
            if ended is not None:
                await send({"type": "http.response.body", "body": end_frame(ended), "more_body": True})
                return


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
