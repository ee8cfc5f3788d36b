"""Undecodable requests become ``INVALID_ARGUMENT``, not ``UNKNOWN``.

grpcio deserializes a request *before* the handler runs; a ``DecodeError``
raised there escapes every handler's error mapping and reaches the client as
``UNKNOWN``. :class:`DecodeGuard` (a server interceptor, so it covers every
service: Engram, health, reflection) swaps each method's request deserializer
for one that returns an :class:`Undecodable` marker instead of raising, and
wraps the method so that:

* a unary request (unary-unary, unary-stream) that cannot be decoded is
  answered ``INVALID_ARGUMENT`` with the usual error trailers, and the handler
  never runs;
* in a client stream, an undecodable message ends the request side there (as
  if the client had half-closed): the handler answers what it already has in
  flight, then the call ends ``INVALID_ARGUMENT``. Nothing after the bad
  message is read, since its framing can no longer be trusted.

Wrapped handlers are built once per method and cached.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from ...errors import InvalidInput
from ...observability import Metrics
from .errors import MappedError, map_error

log = logging.getLogger("engram.grpc")

Ctx = Any  # grpc.aio.ServicerContext (its generic parameters add nothing here)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


class Undecodable:
    """Stands for a request message whose bytes are not a valid protobuf of its type."""

    __slots__ = ("reason", "size")

    def __init__(self, reason: str, size: int) -> None:
        self.reason = reason
        self.size = size


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            return Undecodable(str(exc) or "invalid wire format", len(raw))

    return decode


def _error(method: str, bad: Undecodable) -> MappedError:
    rpc = method.rsplit("/", 1)[-1]
    return map_error(InvalidInput(
        f"the request message of {rpc} could not be decoded as protobuf ({bad.size} bytes): {bad.reason}",
        suggestion="Send messages serialized from the engram.v1 proto files (proto/engram/v1/) with a "
                   "protobuf library; do not hand-craft or truncate the bytes.",
        example="grpcurl -plaintext -d '{\"memory\": {\"content\": \"hello\"}}' "
                "-H 'x-memory-space: agent-7' 127.0.0.1:50051 engram.v1.EngramService/Remember",
        details={"rpc": rpc, "bytes": bad.size},
    ), rpc=rpc)


class _Checked:
    """A request stream that stops at the first undecodable message and remembers it."""

    __slots__ = ("bad", "it")

    def __init__(self, requests: Any) -> None:
        self.it = requests.__aiter__()
        self.bad: Undecodable | None = None

    def __aiter__(self) -> _Checked:
        return self

    async def __anext__(self) -> Any:
        if self.bad is not None:
            raise StopAsyncIteration
        item = await self.it.__anext__()
        if isinstance(item, Undecodable):
            self.bad = item
            raise StopAsyncIteration
        return item


class WrappedHandlers:
    """An interceptor's wrapped handler per method, built once (again only if grpc hands over
    another handler for the method)."""

    def __init__(self, wrap: Callable[[str, Handler], Handler]) -> None:
        self._wrap = wrap
        self._cache: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler) -> Handler:
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._cache[method] = (handler, wrapped)
        return wrapped


class DecodeGuard(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self._handlers = WrappedHandlers(self._wrap)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return self._handlers.get(handler_call_details.method, handler)

    async def _reject(self, context: Ctx, method: str, bad: Undecodable, t0: float) -> None:
        mapped = _error(method, bad)
        rpc = method.rsplit("/", 1)[-1]
        log.info("%s failed: %s %s", rpc, mapped.status.name, mapped.message,
                 extra={"memory_space": None, "rpc": rpc, "transport": "grpc", "status": mapped.status.name,
                        "code": mapped.error.code, "peer": context.peer() or "unknown"})
        if self.metrics is not None:
            self.metrics.observe("grpc", rpc, None, mapped.status.name, time.perf_counter() - t0)
        await context.abort(mapped.status, mapped.message, mapped.trailing_metadata())

    def _wrap(self, method: str, h: Handler) -> Handler:
        assert h.request_deserializer is not None  # checked by the caller
        decode = tolerant(h.request_deserializer)
        reject = self._reject
        fn: Any
        inner: Any
        if h.unary_unary is not None:
            inner = h.unary_unary

            async def unary_unary(request: Any, context: Ctx) -> Any:
                if isinstance(request, Undecodable):
                    await reject(context, method, request, time.perf_counter())
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result

            return h._replace(request_deserializer=decode, unary_unary=unary_unary)  # type: ignore[attr-defined,no-any-return]
        if h.unary_stream is not None:
            inner = h.unary_stream
            if inspect.isasyncgenfunction(inner):
                async def unary_stream_gen(request: Any, context: Ctx) -> AsyncIterator[Any]:
                    if isinstance(request, Undecodable):
                        await reject(context, method, request, time.perf_counter())
                    async for item in inner(request, context):
                        yield item

                fn = unary_stream_gen
            else:
                async def unary_stream(request: Any, context: Ctx) -> Any:
                    if isinstance(request, Undecodable):
                        await reject(context, method, request, time.perf_counter())
                    result = inner(request, context)
                    return await result if inspect.isawaitable(result) else result

                fn = unary_stream
            return h._replace(request_deserializer=decode, unary_stream=fn)  # type: ignore[attr-defined,no-any-return]
        if h.stream_unary is not None:
            inner = h.stream_unary

            async def stream_unary(requests: Any, context: Ctx) -> Any:
                checked = _Checked(requests)
                t0 = time.perf_counter()
                result = inner(checked, context)
                result = await result if inspect.isawaitable(result) else result
                if checked.bad is not None:
                    await reject(context, method, checked.bad, t0)
                return result

            return h._replace(request_deserializer=decode, stream_unary=stream_unary)  # type: ignore[attr-defined,no-any-return]
        inner = h.stream_stream
        if inspect.isasyncgenfunction(inner):
            async def stream_stream_gen(requests: Any, context: Ctx) -> AsyncIterator[Any]:
                checked = _Checked(requests)
                t0 = time.perf_counter()
                async for item in inner(checked, context):
                    yield item
                if checked.bad is not None:
                    await reject(context, method, checked.bad, t0)

            fn = stream_stream_gen
        else:
            async def stream_stream(requests: Any, context: Ctx) -> Any:
                checked = _Checked(requests)
                t0 = time.perf_counter()
                result = inner(checked, context)
                result = await result if inspect.isawaitable(result) else result
                if checked.bad is not None:
                    await reject(context, method, checked.bad, t0)
                return result

            fn = stream_stream
        return h._replace(request_deserializer=decode, stream_stream=fn)  # type: ignore[attr-defined,no-any-return]
