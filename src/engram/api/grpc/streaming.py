"""Streaming RPCs: Stream, Dream, StreamingRemember, StreamingRecall, EchoStream.

(MemoryFlow has its own module, ``flow.py``.)

Backpressure is per stream, and nothing a stream does can block a writer or
another stream:

* ``Stream`` reads from its own ``Subscription``, a bounded queue filled by the
  space's event bus without ever blocking the publisher. When the client stops
  reading, HTTP/2 flow control suspends *this* stream's writer task in
  ``context.write``; the subscription then overflows, the missed events are
  counted and reported as a ``LagNotice`` when the client reads again, and a
  subscriber that keeps missing events for ``subscriber_max_lag_seconds`` is
  dropped by the bus: the stream ends with ``RESOURCE_EXHAUSTED`` "slow
  consumer". A writer still stuck ``DROP_GRACE_SECONDS`` after the drop is
  cancelled and the status is queued behind what the client has not read, so
  the handler and its subscriber slot are released even if it never reads again.
* Subscriptions are admitted against the subscriber caps under the peer's IP
  (``core.admission``); beyond them the call fails with ``RESOURCE_EXHAUSTED``.
* ``StreamingRemember`` / ``StreamingRecall`` pipeline: a reader task submits
  each request as soon as it arrives (so concurrent writes from one stream land
  in the same group commit), while the handler yields the answers strictly in
  request order. At most ``PIPELINE_WINDOW`` requests are in flight per stream;
  beyond that the reader stops reading and gRPC flow control pushes back on the
  client - memory per stream is bounded.
* ``service.begin_shutdown()`` closes every subscription, so open ``Stream``
  calls end promptly with ``UNAVAILABLE`` and the server can stop within its
  grace period. Deleting a space closes its subscriptions too: those streams
  end with ``NOT_FOUND`` "memory space deleted".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast

import grpc
from opentelemetry.trace import INVALID_SPAN

from ...auth.keys import Action
from ...core.admission import client_key
from ...core.events import SLOW_CONSUMER, Closed, Event, Lagged, Reset, Subscription
from ...core.models import MemoryInput, ReceiptParts, StoreReceipt
from ...errors import InvalidInput, MemorySpaceNotFound, ShuttingDown, SlowConsumer
from ...storage.eventlog import LAST_SEQ
from . import convert as c
from .base import Adapter, StreamTrace
from .errors import map_error
from .gen import service_pb2 as spb
from .metadata import SPACE_ECHO_KEY
from .space import CallSpace

log = logging.getLogger("engram.grpc")

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_R = TypeVar("_R")
_RememberReq: TypeAlias = spb.StreamingRememberRequest
_RememberResp: TypeAlias = spb.StreamingRememberResponse

#: Requests in flight per StreamingRemember / StreamingRecall stream.
PIPELINE_WINDOW = 256
#: Most StreamingRemember messages stored as one batch (one commit, one fsync).
COALESCE_MAX = 128
#: How long a stream whose subscription has ended may take to deliver its end before it is cut off.
DROP_GRACE_SECONDS = 2.0


def peer_ip(peer: str) -> str:
    """The address of a gRPC peer string: ``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``,
    ``ipv6:[::1]:5000`` -> ``::1``, anything else (``unix:...``) as its scheme."""
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        return rest.rpartition(":")[0] or rest
    if scheme == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return host.strip("[]")
    return scheme or "unknown"


_NO_MESSAGES: list[spb.StreamResponse] = []


def stream_response(event: Event) -> spb.StreamResponse:
    """One event as a Stream message; built once per event and shared by every subscriber."""
    return spb.StreamResponse(event=c.event(event))


def closed_error(closed: Closed, service_shutting_down: bool, space: str) -> Exception:
    """The status a subscription's end becomes."""
    if closed.reason.startswith("slow consumer"):
        return SlowConsumer(f"stream of memory space {space!r} ended: {closed.reason}",
                            details={"memory_space_id": space})
    if "deleted" in closed.reason and not service_shutting_down:
        return MemorySpaceNotFound(f"memory space deleted: {space!r} no longer exists, so its stream ended",
                                   details={"memory_space_id": space})
    if service_shutting_down or "shutting down" in closed.reason:
        return ShuttingDown("the server is shutting down; reconnect to the restarted server",
                            details={"memory_space_id": space})
    return ShuttingDown(f"stream of memory space {space!r} ended: {closed.reason}",
                        details={"memory_space_id": space})


class StreamingHandlers(Adapter):
    # -- Stream: the events of one space ---------------------------------------------
    async def Stream(self, request: spb.StreamRequest, context: Ctx) -> AsyncIterator[spb.StreamResponse]:
        """An async generator, as the servicer declares, that yields nothing itself: a separate task
        writes the messages with ``context.write`` (see ``_deliver``), so that a write stuck on a
        client that stopped reading can be cancelled when the subscription is dropped."""
        await self._stream(request, context)
        for message in _NO_MESSAGES:
            yield message

    async def _stream(self, request: spb.StreamRequest, context: Ctx) -> None:
        rpc = "Stream"
        t0 = time.perf_counter()
        calls = CallSpace(self.service, context, rpc)
        span = self.call_span(rpc, context)
        space: str | None = None
        status = "OK"
        sub = None
        try:
            space = calls.resolve(request.memory_space_id).space_id
            types = c.event_types(request.event_types)
            # Resume (revision 5): every logged event with an LSN above since_lsn, then live.
            since = (request.since_lsn, LAST_SEQ) if request.HasField("since_lsn") else None
            sub = self.service.subscribe(space, types, self.settings.subscriber_queue_depth,
                                         client=client_key(peer_ip(calls.peer)), since=since)
            self.metrics.subscribers.labels("grpc", self.metrics.space_label(space)).inc()
            # Headers go out once the subscription exists: a client that waits for
            # the initial metadata knows every later event reaches it.
            await context.send_initial_metadata(((SPACE_ECHO_KEY, space),))
            log.info("stream opened", extra={"memory_space": space, "rpc": rpc, "peer": calls.peer,
                                             "event_types": types or "all"})
            await self._deliver(sub, space, context)
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as exc:
            mapped = map_error(exc, rpc=rpc, space=space)
            status = mapped.status.name
            self.log_failure(rpc, space, mapped, calls.peer, request.memory_space_id or calls.metadata_value,
                             span=span, exc=exc)
            # A client that stopped reading gets the status behind what it has not read;
            # the handler does not wait for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.abort(context, mapped, calls.trailing()), DROP_GRACE_SECONDS)
        finally:
            if sub is not None:
                sub.close("stream ended")
                self.metrics.subscribers.labels("grpc", self.metrics.space_label(space)).dec()
                log.info("stream closed", extra={"memory_space": space, "rpc": rpc, "status": status,
                                                 "seconds": round(time.perf_counter() - t0, 3)})
            self.observe(rpc, space, status, t0, span, calls)

    async def _deliver(self, sub: Subscription, space: str, context: Ctx) -> None:
        """Write the subscription's events until it ends; raise the status that ends the call."""
        writer = asyncio.ensure_future(self._write_events(sub, space, context))
        ended = asyncio.ensure_future(sub.wait_closed())
        try:
            done, _ = await asyncio.wait({writer, ended}, return_when=asyncio.FIRST_COMPLETED)
            if writer not in done:  # ended by the server: the writer reports it, unless it is stuck
                done, _ = await asyncio.wait({writer}, timeout=DROP_GRACE_SECONDS)
            if writer in done:
                writer.result()
                return
            log.info("stream cut off: the client stopped reading",
                     extra={"memory_space": space, "rpc": "Stream", "reason": sub.closed})
            raise closed_error(Closed(sub.closed or SLOW_CONSUMER), self.service.shutting_down, space)
        finally:
            for task in (writer, ended):
                task.cancel()
            for task in (writer, ended):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _write_events(self, sub: Subscription, space: str, context: Ctx) -> None:
        heartbeat = self.settings.stream_heartbeat_seconds
        lagged = self.metrics.lagged.labels("grpc", self.metrics.space_label(space))
        while True:
            try:
                item = await sub.get(timeout=heartbeat)
            except Closed as closed:
                raise closed_error(closed, self.service.shutting_down, space) from None
            if item is None:
                await context.write(spb.StreamResponse(heartbeat=c.heartbeat(space, self._last_lsn(space))))
            elif isinstance(item, Lagged):
                lagged.inc()
                await context.write(spb.StreamResponse(lag_notice=c.lag_notice(item)))
            elif isinstance(item, Reset):
                await context.write(spb.StreamResponse(reset=c.reset_notice(item)))
            else:
                await context.write(item.encoded("grpc", stream_response))

    def _last_lsn(self, space: str) -> int:
        try:
            return int(self.service.space(space).last_lsn)
        except Exception:  # a heartbeat is best-effort; the next event carries the LSN anyway
            return 0

    # -- Dream: one consolidation run, step by step -----------------------------------
    async def Dream(self, request: spb.DreamRequest, context: Ctx) -> AsyncIterator[spb.DreamResponse]:
        rpc = "Dream"
        t0 = time.perf_counter()
        calls = CallSpace(self.service, context, rpc)
        span = self.call_span(rpc, context)
        space: str | None = None
        status = "OK"
        try:
            space = calls.resolve(request.memory_space_id).space_id
            item = c.consolidate_input(request)
            seq = 0
            async for step in self.service.dream(space, item):
                seq += 1
                yield c.dream_response(step, seq, space)
        except (asyncio.CancelledError, GeneratorExit):
            status = "CANCELLED"
            raise
        except Exception as exc:
            mapped = map_error(exc, rpc=rpc, space=space)
            status = mapped.status.name
            self.log_failure(rpc, space, mapped, calls.peer, request.memory_space_id or calls.metadata_value,
                             span=span, exc=exc)
            await self.abort(context, mapped, calls.trailing())
        finally:
            self.observe(rpc, space, status, t0, span, calls)

    # -- StreamingRemember / StreamingRecall -------------------------------------------
    async def StreamingRemember(self, request_iterator: AsyncIterator[spb.StreamingRememberRequest],
                                context: Ctx) -> AsyncIterator[spb.StreamingRememberResponse]:
        calls = CallSpace(self.service, context, "StreamingRemember")
        stream = self.stream_trace("StreamingRemember", context)
        try:
            if self.service.quotas.enabled:
                # Quotas admit a batch whole or not at all; a stream's messages are admitted one
                # by one, as a client sending them one by one expects: no coalescing then.
                async def one(req: spb.StreamingRememberRequest) -> spb.StreamingRememberResponse:
                    return (await self._remember_group(calls, stream, [req]))[0]

                async for resp in pipeline(request_iterator, one):
                    yield resp
            else:
                async def group(reqs: list[_RememberReq]) -> list[_RememberResp]:
                    return await self._remember_group(calls, stream, reqs)

                async for resp in coalesced(request_iterator, group):
                    yield resp
        finally:
            self.end_stream(stream, context)

    async def _remember_group(self, calls: CallSpace, stream: StreamTrace,
                              reqs: list[_RememberReq]) -> list[_RememberResp]:
        """Messages of one stream that arrived together and name the same ``memory_space_id``:
        each is resolved and parsed alone (a bad one fails alone, with the error a lone message
        gets), the valid ones are stored as ONE batch (one commit, one fsync) and each is
        answered with its own receipt once that commit is durable. Per message, as before:
        its metrics, its span, its log line on failure.

        Submits the batch before its first real suspension (a loaded space), like a lone
        remember, so LSNs follow request order across the stream's groups.
        """
        t0 = time.perf_counter()
        rpc = calls.rpc
        out: list[_RememberResp | None] = [None] * len(reqs)
        spans = [self.message_span(rpc, stream) for _ in reqs]
        spaces: list[str | None] = [None] * len(reqs)
        fell: list[bool] = [False] * len(reqs)
        items: list[MemoryInput] = []
        where: list[int] = []

        def fail(i: int, exc: BaseException) -> None:
            req, space = reqs[i], spaces[i]
            mapped = map_error(exc, rpc=rpc, space=space)
            self.log_failure(rpc, space, mapped, calls.peer, req.memory_space_id or calls.metadata_value,
                             span=spans[i], exc=exc)
            out[i] = spb.StreamingRememberResponse(sequence=req.sequence, error=mapped.detail(),
                                                   memory_space_id=space or "")
            self.observe(rpc, space, mapped.status.name, t0, spans[i], fell_back=fell[i])

        for i, req in enumerate(reqs):
            try:
                res = calls.resolve(req.memory_space_id)
                spaces[i], fell[i] = res.space_id, res.fell_back
                stream.saw(res.space_id, res.fell_back)
                kind = req.WhichOneof("item")
                if kind == "memory":
                    items.append(c.memory_input(req.memory))
                elif kind == "episode":
                    items.append(c.episode_input(req.episode))
                else:
                    raise InvalidInput("item: one of `memory` or `episode` is required",
                                       example='{"sequence": 1, "memory": {"content": "..."}}')
                where.append(i)
            except Exception as exc:  # the stream stays open; this message carries the error
                fail(i, exc)
        if where:
            space = cast(str, spaces[where[0]])  # one field value per group: one space
            try:
                results = (await self.service.remember_batch(space, items, receipts="parts")).results
            except asyncio.CancelledError:
                for i in where:
                    self.observe(rpc, spaces[i], "CANCELLED", t0, spans[i], fell_back=fell[i])
                raise
            except Exception as exc:  # the whole commit failed (disk full...): every item says so
                results = [exc] * len(where)
            plain = 0  # stored messages without a span: their metrics in one call
            for i, r in zip(where, results, strict=True):
                if isinstance(r, (ReceiptParts, StoreReceipt)):
                    # The receipt's plain values go straight into protobuf (no pydantic model per
                    # message); a service that gives full receipts (PostgreSQL) is converted as before.
                    receipt: Any = c.receipt_fields(r) if isinstance(r, ReceiptParts) else c.receipt(r)
                    out[i] = spb.StreamingRememberResponse(sequence=reqs[i].sequence, receipt=receipt,
                                                           memory_space_id=space)
                    if spans[i] is INVALID_SPAN:
                        plain += 1
                    else:
                        self.observe(rpc, space, "OK", t0, spans[i], fell_back=fell[i])
                else:
                    fail(i, r)
            self.metrics.observe_many("grpc", rpc, space, "OK", time.perf_counter() - t0, plain)
        return cast(list[_RememberResp], out)

    async def StreamingRecall(self, request_iterator: AsyncIterator[spb.StreamingRecallRequest],
                              context: Ctx) -> AsyncIterator[spb.StreamingRecallResponse]:
        calls = CallSpace(self.service, context, "StreamingRecall")
        stream = self.stream_trace("StreamingRecall", context)

        async def one(req: spb.StreamingRecallRequest) -> spb.StreamingRecallResponse:
            async def run(space: str) -> spb.StreamingRecallResponse:
                result = await self.service.recall(space, c.cue(req.cue))
                return spb.StreamingRecallResponse(
                    sequence=req.sequence, recall_result=c.recall_result(result), memory_space_id=space
                )

            def failed(space: str | None, detail: Any) -> spb.StreamingRecallResponse:
                return spb.StreamingRecallResponse(
                    sequence=req.sequence, error=detail, memory_space_id=space or ""
                )

            return await self.per_message(calls, req.memory_space_id, run, failed, stream)

        try:
            async for resp in pipeline(request_iterator, one):
                yield resp
        finally:
            self.end_stream(stream, context)

    async def per_message(self, calls: CallSpace, field_value: str, run: Callable[[str], Awaitable[_R]],
                          failed: Callable[[str | None, Any], _R], stream: StreamTrace | None = None,
                          op: str = "message", action: Action | None = None) -> _R:
        """One message of a bidirectional stream: its own space, metrics, span (a child of the
        stream's), and an ErrorDetail on failure."""
        t0 = time.perf_counter()
        span = self.message_span(calls.rpc, stream, op)
        token = self.tracing.attach(span)
        space: str | None = None
        fell_back = False
        status = "OK"
        try:
            res = calls.resolve(field_value, action)
            space, fell_back = res.space_id, res.fell_back
            if stream is not None:
                stream.saw(space, fell_back)
            return await run(space)
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as exc:  # the stream stays open; this message carries the error
            mapped = map_error(exc, rpc=calls.rpc, space=space)
            status = mapped.status.name
            self.log_failure(calls.rpc, space, mapped, calls.peer, field_value or calls.metadata_value,
                             span=span, exc=exc)
            return failed(space, mapped.detail())
        finally:
            self.observe(calls.rpc, space, status, t0, span, fell_back=fell_back)
            self.tracing.detach(token)

    # -- EchoStream: the streaming transport ceiling -----------------------------------
    async def EchoStream(self, request_iterator: AsyncIterator[spb.EchoStreamRequest],
                         context: Ctx) -> AsyncIterator[spb.EchoStreamResponse]:
        async for req in request_iterator:
            yield spb.EchoStreamResponse(sequence=req.sequence, payload=req.payload)


_END = object()


class _Group:
    """Requests of one stream handled together; closed once its task starts."""

    __slots__ = ("key", "reqs", "started")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.reqs: list[Any] = []
        self.started = False


async def coalesced(requests: AsyncIterator[Any], handle: Callable[[list[Any]], Awaitable[list[Any]]],
                    window: int = PIPELINE_WINDOW, most: int = COALESCE_MAX,
                    key: Callable[[Any], Any] = lambda req: req.memory_space_id) -> AsyncIterator[Any]:
    """:func:`pipeline` for groups: requests that arrive while their group waits to start are
    handled together by ONE ``handle(reqs)``, which returns one result per request; the results
    are yielded one by one in request order.

    One group of a stream is handled at a time: a group starts once the one before it is
    answered (its commit durable), and every request that arrives meanwhile joins the next
    group (up to ``most``, and only while ``key`` is the same: a group targets one space).
    A request on an idle stream starts at once; under load, a group holds what came in during
    one commit, so the batch grows with the load and costs one commit, not one per request.
    (Starting a group on the loop's next turn instead gives groups of one: the transport hands
    a stream's messages to the loop one per turn.) Groups run in arrival order, one after the
    other, so LSNs follow request order. At most ``window`` requests are in flight (read, not
    yet answered).
    """
    pending: asyncio.Queue[Any] = asyncio.Queue()  # bounded by ``room``, in requests
    room = asyncio.Semaphore(window)

    async def run(group: _Group, before: asyncio.Future[Any] | None) -> list[Any]:
        if before is not None and not before.done():
            await asyncio.wait((before,))  # its outcome is the handler's to report, not this group's
        group.started = True
        return await handle(group.reqs)

    async def read() -> None:
        group: _Group | None = None
        last: asyncio.Future[Any] | None = None
        try:
            async for req in requests:
                await room.acquire()
                k = key(req)
                if group is None or group.started or len(group.reqs) >= most or group.key != k:
                    group = _Group(k)
                    last = asyncio.ensure_future(run(group, last))
                    pending.put_nowait(last)
                group.reqs.append(req)
        finally:
            pending.put_nowait(_END)

    reader = asyncio.ensure_future(read())
    try:
        while True:
            item = await pending.get()
            if item is _END:
                break
            for result in await item:
                room.release()
                yield result
        await reader  # re-raise a failure of the request side
    finally:
        _abandon(reader, pending)


async def pipeline(requests: AsyncIterator[Any], handle: Callable[[Any], Awaitable[Any]],
                   window: int = PIPELINE_WINDOW) -> AsyncIterator[Any]:
    """Start ``handle(req)`` for each request as it arrives; yield the results in request order.

    Tasks start in arrival order, and ``handle`` submits its write before its
    first ``await``, so LSNs follow request order while the commits overlap.
    """
    pending: asyncio.Queue[Any] = asyncio.Queue(maxsize=window)

    async def read() -> None:
        try:
            async for req in requests:
                await pending.put(asyncio.ensure_future(handle(req)))
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await pending.put(_END)

    reader = asyncio.ensure_future(read())
    try:
        while True:
            item = await pending.get()
            if item is _END:
                break
            yield await item
        await reader  # re-raise a failure of the request side
    finally:
        _abandon(reader, pending)


def _abandon(reader: asyncio.Future[Any], pending: asyncio.Queue[Any]) -> None:
    """The end of :func:`coalesced` / :func:`pipeline` (done, failed or cancelled): stop reading
    requests and cancel every queued handler whose answer was not yet yielded."""
    reader.cancel()
    while not pending.empty():
        item = pending.get_nowait()
        if isinstance(item, asyncio.Future):
            item.cancel()
