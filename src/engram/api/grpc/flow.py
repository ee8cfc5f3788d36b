"""MemoryFlow: one bidirectional stream mixing remember, recall and event subscriptions.

Every response echoes the sequence number of the request it answers; events
and lag notices carry the sequence of the ``FlowSubscribe`` that produced them.

Concurrency and flow control, per flow:

* Stores are pipelined (submitted as they arrive, answered when durable). A
  recall first waits for the stores submitted before it in the same flow, so a
  flow always reads its own writes. At most ``IN_FLIGHT`` requests are open;
  beyond that the flow stops reading requests (gRPC flow control pushes back).
* Each subscription counts against the subscriber caps (``core.admission``; beyond
  them the subscribe request is answered with a ``RESOURCE_EXHAUSTED`` ErrorDetail
  and the flow stays open) and has its own bounded ``Subscription`` queue and a
  pump task. A subscription dropped as a slow consumer is answered with a
  ``SLOW_CONSUMER`` ErrorDetail and its slot is freed; the flow goes on.
  The pump forwards an event only while the flow is not paused and, in credit
  mode, holds a credit; otherwise events wait in the subscription's queue,
  whose overflow becomes a ``LagNotice`` - the publisher is never blocked.
* All responses go through one bounded output queue read by the handler, so a
  client that stops reading stalls only this flow.
* A subscription whose space is deleted ends with a ``NOT_FOUND`` error for
  its sequence; the flow stays open for its other work.
* When the client half-closes, open requests are answered and the flow ends.
  When the server shuts down (subscriptions closed) the flow ends with
  ``UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ...auth.keys import Action
from ...core.admission import client_key
from ...core.events import Closed, Lagged, Reset, Subscription
from ...errors import InvalidInput, MemorySpaceNotFound, ShuttingDown, SlowConsumer
from . import convert as c
from .errors import map_error
from .gen import memory_pb2 as pb
from .gen import service_pb2 as spb
from .space import CallSpace
from .streaming import StreamingHandlers, closed_error, peer_ip

log = logging.getLogger("engram.grpc")

IN_FLIGHT = 256
OUTPUT_DEPTH = 256
_END = object()


class _Flow:
    def __init__(self, handlers: FlowHandlers, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.h = handlers
        self.calls = CallSpace(handlers.service, context, "MemoryFlow")
        self.trace = handlers.stream_trace("MemoryFlow", context)
        self.out: asyncio.Queue[Any] = asyncio.Queue(maxsize=OUTPUT_DEPTH)
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writes: list[asyncio.Future[Any]] = []
        self.subs: dict[int, tuple[Subscription, asyncio.Task[Any], str]] = {}
        self.paused = False
        self.credits: int | None = None  # None: unlimited (not in credit mode)
        self.allowed = asyncio.Condition()
        self.failure: BaseException | None = None
        self.closing = False
        self.reader: asyncio.Future[None] | None = None

    # -- requests ---------------------------------------------------------------
    async def read(self, requests: AsyncIterator[spb.MemoryFlowRequest]) -> None:
        try:
            async for req in requests:
                await self.dispatch(req)
            if self.tasks:
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
        finally:
            if not self.closing:
                with contextlib.suppress(asyncio.CancelledError):
                    await self.out.put(_END)

    async def shutdown(self) -> None:
        """Server shutdown: stop reading, answer what is in flight, then end with UNAVAILABLE."""
        if self.closing:
            return
        self.closing = True
        if self.reader is not None:
            self.reader.cancel()
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        self.failure = ShuttingDown("the server is shutting down; reconnect to the restarted server")
        await self.out.put(_END)

    async def dispatch(self, req: spb.MemoryFlowRequest) -> None:
        kind = req.WhichOneof("request")
        seq = req.sequence
        if kind in ("remember", "experience", "recall"):
            await self.slots.acquire()
            earlier = [w for w in self.writes if not w.done()] if kind == "recall" else []
            task = asyncio.ensure_future(self.data_request(req, kind, earlier))
            self.tasks.add(task)
            task.add_done_callback(self._done)
            if kind != "recall":
                self.writes = [w for w in self.writes if not w.done()] + [task]
            return
        try:
            if kind == "subscribe":
                ack = self.subscribe(req)
            elif kind == "unsubscribe":
                ack = self.unsubscribe(req.unsubscribe.subscribe_sequence)
            elif kind == "flow_control":
                ack = await self.control(req.flow_control)
            else:
                raise InvalidInput(
                    "request: one of remember, experience, recall, subscribe, unsubscribe or "
                    "flow_control is required",
                    example='{"sequence": 1, "recall": {"query": "x"}}',
                )
            await self.out.put(
                spb.MemoryFlowResponse(sequence=seq, flow_ack=ack, memory_space_id=self._space_of(seq))
            )
        except Exception as exc:  # answered as an ErrorDetail; the flow stays open
            mapped = map_error(exc, rpc="MemoryFlow")
            requested = req.memory_space_id or self.calls.metadata_value
            self.h.log_failure("MemoryFlow", None, mapped, self.calls.peer, requested)
            self.h.stream_error(self.trace, kind or "unknown", mapped, requested)
            await self.out.put(spb.MemoryFlowResponse(sequence=seq, error=mapped.detail()))

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.slots.release()

    def _space_of(self, seq: int) -> str:
        entry = self.subs.get(seq)
        return entry[2] if entry else ""

    async def data_request(
        self, req: spb.MemoryFlowRequest, kind: str, earlier: list[asyncio.Future[Any]]
    ) -> None:
        seq = req.sequence

        async def run(space: str) -> spb.MemoryFlowResponse:
            if kind == "remember":
                r = await self.h.service.remember(space, c.memory_input(req.remember, "remember"))
                return spb.MemoryFlowResponse(sequence=seq, store_receipt=c.receipt(r), memory_space_id=space)
            if kind == "experience":
                r = await self.h.service.experience(space, c.episode_input(req.experience, "experience"))
                return spb.MemoryFlowResponse(sequence=seq, store_receipt=c.receipt(r), memory_space_id=space)
            if earlier:  # read your own writes: stores sent before this recall are durable first
                await asyncio.gather(*earlier, return_exceptions=True)
            res = await self.h.service.recall(space, c.cue(req.recall, "recall"))
            return spb.MemoryFlowResponse(
                sequence=seq, recall_result=c.recall_result(res), memory_space_id=space
            )

        def failed(space: str | None, detail: Any) -> spb.MemoryFlowResponse:
            return spb.MemoryFlowResponse(sequence=seq, error=detail, memory_space_id=space or "")

        action = Action.read if kind == "recall" else Action.write  # a reader key cannot store here
        resp = await self.h.per_message(self.calls, req.memory_space_id, run, failed, self.trace, kind,
                                        action=action)
        await self.out.put(resp)

    # -- subscriptions ------------------------------------------------------------
    def subscribe(self, req: spb.MemoryFlowRequest) -> pb.FlowAck:
        seq = req.sequence
        if seq in self.subs:
            raise InvalidInput(f"sequence: {seq} already names an active subscription of this flow; "
                               "use a new sequence number per request")
        res = self.calls.resolve(req.memory_space_id)
        space = res.space_id
        self.trace.saw(space, res.fell_back)
        types = c.event_types(req.subscribe.event_types, "subscribe.event_types")
        sub = self.h.service.subscribe(space, types, self.h.settings.subscriber_queue_depth,
                                       client=client_key(peer_ip(self.calls.peer)))
        task = asyncio.ensure_future(self.pump(seq, sub, space))
        self.subs[seq] = (sub, task, space)
        self.h.metrics.subscribers.labels("grpc", self.h.metrics.space_label(space)).inc()
        log.info("flow subscribed", extra={"memory_space": space, "rpc": "MemoryFlow", "sequence": seq,
                                           "peer": self.calls.peer})
        return self.ack()

    def unsubscribe(self, seq: int) -> pb.FlowAck:
        entry = self.subs.pop(seq, None)
        if entry is None:
            raise InvalidInput(
                f"unsubscribe.subscribe_sequence: no active subscription was opened by sequence {seq}"
            )
        self._end_sub(entry)
        return self.ack()

    def _end_sub(self, entry: tuple[Subscription, asyncio.Task[Any], str]) -> None:
        sub, task, space = entry
        sub.close("unsubscribed")
        task.cancel()
        self.h.metrics.subscribers.labels("grpc", self.h.metrics.space_label(space)).dec()

    async def pump(self, seq: int, sub: Subscription, space: str) -> None:
        try:
            while True:
                async with self.allowed:
                    await self.allowed.wait_for(self._may_deliver)
                try:
                    item = await sub.get()
                except Closed as closed:
                    err = closed_error(closed, self.h.service.shutting_down, space)
                    if isinstance(err, (SlowConsumer, MemorySpaceNotFound)):  # this subscription ends
                        sub.close()  # its subscriber slot is free again, whatever the output queue does
                        entry = self.subs.pop(seq, None)
                        if entry is not None:
                            self.h.metrics.subscribers.labels("grpc", self.h.metrics.space_label(space)).dec()
                        mapped = map_error(err, rpc="MemoryFlow", space=space)
                        await self.out.put(spb.MemoryFlowResponse(sequence=seq, error=mapped.detail(),
                                                                  memory_space_id=space))
                        return
                    if isinstance(err, ShuttingDown) and self.h.service.shutting_down:
                        self.failure = err
                        await self.out.put(_END)
                    return
                if item is None or isinstance(item, Reset):  # no resume on MemoryFlow: never a Reset
                    continue
                async with self.allowed:  # paused while we waited? hold the item until allowed
                    await self.allowed.wait_for(self._may_deliver)
                    if self.credits is not None:
                        self.credits -= 1
                if isinstance(item, Lagged):
                    self.h.metrics.lagged.labels("grpc", self.h.metrics.space_label(space)).inc()
                    resp = spb.MemoryFlowResponse(
                        sequence=seq, lag_notice=c.lag_notice(item), memory_space_id=space
                    )
                else:
                    resp = spb.MemoryFlowResponse(sequence=seq, event=item.encoded("grpc-event", c.event),
                                                  memory_space_id=space)
                await self.out.put(resp)
        except asyncio.CancelledError:
            pass

    def _may_deliver(self) -> bool:
        return not self.paused and (self.credits is None or self.credits > 0)

    async def control(self, fc: pb.FlowControl) -> pb.FlowAck:
        async with self.allowed:
            if fc.action == pb.FLOW_CONTROL_ACTION_PAUSE:
                self.paused = True
            elif fc.action == pb.FLOW_CONTROL_ACTION_RESUME:
                self.paused = False
            elif fc.action == pb.FLOW_CONTROL_ACTION_GRANT_CREDITS:
                if fc.credits < 1:
                    raise InvalidInput(
                        "flow_control.credits: must be at least 1 with FLOW_CONTROL_ACTION_GRANT_CREDITS",
                        example='{"flow_control": {"action": "FLOW_CONTROL_ACTION_GRANT_CREDITS", '
                        '"credits": 100}}',
                    )
                self.credits = (self.credits or 0) + fc.credits
            else:
                raise InvalidInput("flow_control.action: one of PAUSE, RESUME or GRANT_CREDITS is required")
            self.allowed.notify_all()
            return self.ack()

    def ack(self) -> pb.FlowAck:
        ack = pb.FlowAck(paused=self.paused, active_subscriptions=len(self.subs))
        if self.credits is not None:
            ack.credits = self.credits
        return ack

    def close(self) -> None:
        for entry in list(self.subs.values()):
            self._end_sub(entry)
        self.subs.clear()
        for task in list(self.tasks):
            task.cancel()


class FlowHandlers(StreamingHandlers):
    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self._flows: set[_Flow] = set()
        self._ending: set[asyncio.Task[None]] = set()

    def end_flows(self) -> None:
        """Called when the server stops: every open MemoryFlow drains and ends (UNAVAILABLE).

        (``Stream`` needs no such call: ``service.begin_shutdown()`` closes its subscription.)
        """
        for flow in list(self._flows):
            task = asyncio.ensure_future(flow.shutdown())
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def MemoryFlow(
        self,
        request_iterator: AsyncIterator[spb.MemoryFlowRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[spb.MemoryFlowResponse]:
        flow = _Flow(self, context)
        reader = flow.reader = asyncio.ensure_future(flow.read(request_iterator))
        self._flows.add(flow)
        if self.service.shutting_down:
            self.end_flows()
        try:
            while True:
                item = await flow.out.get()
                if item is _END:
                    break
                yield item
            if flow.failure is not None:
                mapped = map_error(flow.failure, rpc="MemoryFlow")
                await self.abort(context, mapped, flow.calls.trailing())
            if not flow.closing:
                await reader
        finally:
            self._flows.discard(flow)
            reader.cancel()
            flow.close()
            self.end_stream(flow.trace, context)
