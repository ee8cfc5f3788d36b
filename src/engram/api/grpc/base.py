"""What every RPC handler shares: space resolution, timing, metrics, error mapping, logs.

Handlers stay thin: decode, call one ``EngramService`` method, encode. The
wrapper here resolves the space, records ``service.metrics.observe("grpc",
rpc, space, status, seconds)`` exactly once per call (per message inside the
bidirectional streams), maps every exception through ``errors.map_error`` and
logs failures with the space id, the RPC and the peer.

Tracing lives here too, so every RPC gets the same span: ``call_span`` starts
one per call (unary and server-streaming), ``stream_trace`` one per
bidirectional stream with a child span per message (``message_span``);
``log_failure`` records the error on it and ``observe`` / ``end_stream`` end it
with ``memory_space`` (or ``requested_space``), ``rpc``, ``status`` and
``fallback``. A unary call's span is current while it runs (engine spans nest
under it); a server-streaming one is never attached, because an async
generator may be finalised in another context, so its children name it as
parent explicitly. Disabled tracing makes all of this a few no-op calls.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from ...auth.keys import Action, Principal
from ...errors import MemorySpaceRequired
from ...observability import finish_span
from ...service import EngramService
from ...spaces.ids import MemorySpaceId
from .auth import ACTIONS, current_principal
from .errors import MappedError, map_error
from .space import CallSpace

log = logging.getLogger("engram.grpc")

T = TypeVar("T")

SERVICE = "engram.v1.EngramService"
#: Spaces listed on the span of one bidirectional stream (its messages may target several).
STREAM_SPACES_CAP = 16


class StreamTrace:
    """The span of one bidirectional stream, and which spaces its messages targeted."""

    __slots__ = ("fallback", "spaces", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.spaces: list[str] = []
        self.fallback = False

    def saw(self, space: str, fell_back: bool = False) -> None:
        if space not in self.spaces and len(self.spaces) < STREAM_SPACES_CAP:
            self.spaces.append(space)
        self.fallback = self.fallback or fell_back


class Adapter:
    """Base of the servicer: holds the service and the per-call plumbing."""

    def __init__(self, service: EngramService) -> None:
        self.service = service
        self.settings = service.settings
        self.metrics = service.metrics
        self.tracing = service.tracing

    # -- tracing ----------------------------------------------------------------------
    def call_span(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any]) -> Span:
        """The SERVER span of one call (joins the caller's ``traceparent`` metadata if sent)."""
        if not self.tracing.enabled:
            return INVALID_SPAN
        carrier = {k: v for k, v in (context.invocation_metadata() or ())
                   if k in ("traceparent", "tracestate") and isinstance(v, str)}
        return self.tracing.start(f"{SERVICE}/{rpc}", {
            "transport": "grpc", "rpc": rpc, "rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": rpc,
        }, carrier=carrier)

    def stream_trace(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any]) -> StreamTrace:
        return StreamTrace(self.call_span(rpc, context))

    def message_span(self, rpc: str, stream: StreamTrace | None, op: str = "message") -> Span:
        """A child span of the stream's span for one of its messages."""
        if stream is None or stream.span is INVALID_SPAN:
            return INVALID_SPAN
        return self.tracing.start(f"{SERVICE}/{rpc} {op}", {"transport": "grpc", "rpc": rpc, "message": op},
                                  parent=stream.span, kind=SpanKind.INTERNAL)

    def stream_error(self, stream: StreamTrace, op: str, mapped: MappedError,
                     requested: str | None) -> None:
        """A failed control message (subscribe, flow control) of a stream that stays open: an event
        on the stream's span, not an error status for the whole stream."""
        if stream.span.is_recording():
            attrs = {"message": op, "error.type": mapped.error.code, "status": mapped.status.name}
            if requested:
                attrs["requested_space"] = requested[:80]
            stream.span.add_event("message failed", attrs)

    def end_stream(self, stream: StreamTrace, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """End a bidirectional stream's span; call it from the handler's ``finally``."""
        span = stream.span
        if span is INVALID_SPAN:
            return
        exc = sys.exc_info()[1]
        # The stubs say StatusCode, but it is None until the handler sets a code.
        code: grpc.StatusCode | None = context.code()
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)) or (exc is None and context.cancelled()):
            status = "CANCELLED"
        elif isinstance(code, grpc.StatusCode):
            status = code.name
        elif exc is not None and not isinstance(exc, grpc.aio.AbortError):
            status = map_error(exc).status.name
        else:
            status = "OK"
        if span.is_recording() and stream.spaces:
            span.set_attribute("memory_spaces", list(stream.spaces))
        if status not in ("OK", "CANCELLED") and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, status))
        finish_span(span, space=stream.spaces[0] if len(stream.spaces) == 1 else None, status=status,
                    fallback=stream.fallback)

    def observe(self, rpc: str, space: str | None, status: str, t0: float, span: Span = INVALID_SPAN,
                calls: CallSpace | None = None, fell_back: bool | None = None) -> None:
        """Metrics for one call (or stream message); ends its span, if it has one."""
        self.metrics.observe("grpc", rpc, space, status, time.perf_counter() - t0)
        if span is not INVALID_SPAN:
            if fell_back is None:
                fell_back = calls is not None and calls.warning is not None
            finish_span(span, space=space, status=status, fallback=fell_back)

    def log_failure(self, rpc: str, space: str | None, mapped: MappedError, peer: str,
                    requested: str | None = None, *, span: Span = INVALID_SPAN,
                    exc: BaseException | None = None) -> None:
        """One line per failed call (or stream message), always naming the space.

        When the space itself was the problem (invalid id, conflict) ``memory_space`` is null
        and ``requested_space`` carries what the client sent, truncated. The error is also
        recorded on the call's span (status ERROR, ``error.type``; the exception when INTERNAL).
        """
        level = logging.ERROR if mapped.status == grpc.StatusCode.INTERNAL else logging.INFO
        extra = {"memory_space": space, "rpc": rpc, "transport": "grpc", "status": mapped.status.name,
                 "code": mapped.error.code, "peer": peer}
        if space is None and requested:
            extra["requested_space"] = requested[:80]
        log.log(level, "%s failed: %s %s", rpc, mapped.status.name, mapped.message, extra=extra)
        if span.is_recording():
            if space is None and requested:
                span.set_attribute("requested_space", requested[:80])
            span.set_attribute("error.type", mapped.error.code)
            if exc is not None and mapped.status == grpc.StatusCode.INTERNAL:
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{mapped.status.name} {mapped.error.code}: "
                                                     f"{mapped.error.message}"[:500]))

    async def abort(self, context: grpc.aio.ServicerContext[Any, Any], mapped: MappedError,
                    extra: tuple[tuple[str, Any], ...] = ()) -> None:
        await context.abort(mapped.status, mapped.message, mapped.trailing_metadata() + extra)

    async def unary(self, rpc: str, request: Any, context: grpc.aio.ServicerContext[Any, Any],
                    fn: Callable[[str], Awaitable[T]]) -> T:
        """A data-plane unary call: resolve the space (§2), run ``fn(space)``, account for it."""
        t0 = time.perf_counter()
        calls = CallSpace(self.service, context, rpc)
        span = self.call_span(rpc, context)
        token = self.tracing.attach(span)
        space: str | None = None
        status = "OK"
        try:
            space = calls.resolve(request.memory_space_id).space_id
            return await fn(space)
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as exc:  # mapped to a status, never UNKNOWN
            mapped = map_error(exc, rpc=rpc, space=space)
            status = mapped.status.name
            self.log_failure(rpc, space, mapped, calls.peer, request.memory_space_id or calls.metadata_value,
                             span=span, exc=exc)
            await self.abort(context, mapped, calls.trailing())
            raise AssertionError("unreachable: abort raises") from exc  # pragma: no cover
        finally:
            self.observe(rpc, space, status, t0, span, calls)
            self.tracing.detach(token)

    async def admin(self, rpc: str, request: Any, context: grpc.aio.ServicerContext[Any, Any],
                    fn: Callable[[str | None], Awaitable[T]], *, needs_space: bool = True) -> T:
        """A space-administration call: the id is required, there is no fallback or metadata."""
        t0 = time.perf_counter()
        span = self.call_span(rpc, context)
        token = self.tracing.attach(span)
        space: str | None = None
        status = "OK"
        try:
            if needs_space:
                if not request.memory_space_id:
                    raise MemorySpaceRequired(
                        f"{rpc} needs memory_space_id: the space to act on (there is no default here)",
                        example='memory_space_id: "agent-7"',
                    )
                space = MemorySpaceId(request.memory_space_id)
                principal = current_principal()
                if principal is not Principal.ANONYMOUS:  # outside the key's set: as if missing
                    self.service.auth.check(principal, space, ACTIONS.get(f"/{SERVICE}/{rpc}", Action.admin),
                                            peer=context.peer() or "unknown", target=space)
            return await fn(space)
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as exc:
            mapped = map_error(exc, rpc=rpc, space=space)
            status = mapped.status.name
            self.log_failure(rpc, space, mapped, context.peer() or "unknown",
                             getattr(request, "memory_space_id", None) or None, span=span, exc=exc)
            await self.abort(context, mapped)
            raise AssertionError("unreachable: abort raises") from exc  # pragma: no cover
        finally:
            self.observe(rpc, space, status, t0, span)
            self.tracing.detach(token)
