"""API keys on gRPC (SPEC §10): who is calling, what each RPC may do, streams that end on revoke.

One server interceptor, :class:`AuthGuard`, covers every RPC of ``engram.v1.EngramService``,
unary and streaming, before its handler runs:

* the key comes from the invocation metadata ``authorization: Bearer <key>``; none, a
  malformed value, an unknown, expired or revoked key -> ``UNAUTHENTICATED`` (with the usual
  error trailers), through ``service.auth.principal`` (``Principal.ANONYMOUS`` when auth is off);
* :data:`ACTIONS` classifies every RPC by :class:`~engram.auth.keys.Action`, keyed by the full
  method name; a role that does not allow the action -> ``PERMISSION_DENIED``. An RPC missing
  from the table is refused (``PERMISSION_DENIED``, never served unchecked) and fails
  ``tests/hostile/test_auth_matrix_grpc.py``, which reads the methods from the descriptor;
* the principal is put in :data:`PRINCIPAL` (a context variable, so tasks a handler starts see
  it too); :class:`~engram.api.grpc.space.CallSpace` checks every resolved space against it -
  per message in the bidirectional streams - so a space outside the key's set answers exactly
  as a missing one (``NOT_FOUND``), and a MemoryFlow ``remember`` of a reader key is refused
  per message;
* a streaming RPC of a key (Stream, Dream, MemoryFlow, StreamingRemember, StreamingRecall,
  EchoStream) is registered with :class:`StreamSentry`: when the key is revoked
  (``KeyStore.on_revoke``) or expires, or a periodic re-check finds it no longer valid (a
  revoke made offline by ``engram key revoke`` in another process), the call's task is
  cancelled and the call ends ``UNAUTHENTICATED``.

Health and reflection are not guarded: health reports only ``""`` and
``engram.v1.EngramService`` (never a space name), reflection only the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from ...auth.keys import Action, Principal
from ...errors import EngramError, PermissionDenied, Unauthenticated
from ...service import EngramService
from .decoding import Handler, WrappedHandlers
from .errors import map_error
from .gen import service_pb2

log = logging.getLogger("engram.grpc")

Ctx = Any  # grpc.aio.ServicerContext

SERVICE = service_pb2.DESCRIPTOR.services_by_name["EngramService"].full_name
AUTH_METADATA_KEY = "authorization"
#: How often open streams of keys re-check that their key is still valid (revokes made by
#: another process, expiry). ``on_revoke`` ends them at once; this is the safety net.
RECHECK_SECONDS = 1.0

_R, _W, _A = Action.read, Action.write, Action.admin
#: Every RPC of EngramService -> the action it needs. MemoryFlow is ``read`` (a reader may
#: subscribe and recall); each of its remember/experience messages is checked as ``write``.
ACTIONS: dict[str, Action] = {f"/{SERVICE}/{name}": action for name, action in {
    "Remember": _W, "Recall": _R, "Forget": _W, "Recognize": _R, "Experience": _W, "Reminisce": _R,
    "Consolidate": _W, "Dream": _W, "Complete": _R, "Associate": _W, "GetMemory": _R,
    "ListMemories": _R, "Introspect": _R, "Stream": _R, "StreamingRemember": _W, "StreamingRecall": _R,
    "MemoryFlow": _R, "CreateSpace": _A, "ListSpaces": _R, "GetSpace": _R, "DeleteSpace": _A,
    "ReembedSpace": _A, "GetReembedStatus": _R, "Echo": _R, "EchoStream": _R,
    "CreateKey": _A, "ListKeys": _A, "RevokeKey": _A,
    "RememberBatch": _W, "UpdateMemory": _W, "DeleteMemories": _W,
}.items()}

#: The principal of the call being served (``Principal.ANONYMOUS`` outside any call).
PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("engram_grpc_principal",
                                                                      default=Principal.ANONYMOUS)


def current_principal() -> Principal:
    return PRINCIPAL.get()


def bearer_token(context: Ctx) -> str | None:
    """The key of ``authorization: Bearer <key>``; ``None`` when absent.

    A value that is not ``Bearer <token>`` is malformed: it raises ``Unauthenticated`` without
    echoing anything of it (no key material in errors or logs). Sent twice: malformed too.
    """
    values = [v for k, v in context.invocation_metadata() or () if k == AUTH_METADATA_KEY]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated("metadata authorization was sent more than once; send one "
                              "`authorization: Bearer <key>`", details={"reason": "malformed"})
    raw = values[0]
    value: str = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("metadata authorization is malformed; send `authorization: Bearer <key>`",
                              details={"reason": "malformed"})
    return token


class _Watch:
    __slots__ = ("principal", "revoked", "task")

    def __init__(self, principal: Principal, task: asyncio.Task[Any]) -> None:
        self.principal = principal
        self.task = task
        self.revoked: str | None = None  # "revoked" / "expired" once the key stopped being valid


class StreamSentry:
    """Open streaming calls of keys; ends them when their key stops being valid."""

    def __init__(self, service: EngramService) -> None:
        self.service = service
        self.watches: set[_Watch] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        if service.auth.keys is not None:
            service.auth.keys.on_revoke(self._revoked_elsewhere)

    def _revoked_elsewhere(self, key_id: str) -> None:
        """``KeyStore.on_revoke`` callback (any thread): re-check every open stream now."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.sweep)

    def add(self, watch: _Watch) -> None:
        self._loop = asyncio.get_running_loop()
        self.watches.add(watch)
        expires = watch.principal.expires_at
        if expires is not None:
            self._loop.call_later(max(0.0, expires - time.time()), self.sweep)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self._loop.create_task(self._sweep_forever())

    def discard(self, watch: _Watch) -> None:
        self.watches.discard(watch)

    async def _sweep_forever(self) -> None:
        while self.watches:
            await asyncio.sleep(RECHECK_SECONDS)
            self.sweep()

    def sweep(self) -> None:
        for watch in list(self.watches):
            if watch.revoked:
                continue
            try:
                why = self.service.auth.still_valid(watch.principal)
            except Exception:  # a broken key store must not kill the sweeper
                log.exception("re-checking an open stream's key failed")
                continue
            if why is not None:
                watch.revoked = why
                watch.task.cancel()


class AuthGuard(grpc.aio.ServerInterceptor):
    """Authenticates and authorizes every EngramService RPC (see the module docstring)."""

    def __init__(self, service: EngramService) -> None:
        self.service = service
        self.sentry = StreamSentry(service)
        self._handlers = WrappedHandlers(self._wrap)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(f"/{SERVICE}/"):
            return handler  # health, reflection: no space names, no data
        if not self.service.auth.required:
            return handler  # every call is Principal.ANONYMOUS: nothing to add, not even a wrapper
        return self._handlers.get(method, handler)

    def admit(self, method: str, context: Ctx) -> Principal:
        """The caller's principal, if it may call ``method`` at all (raises otherwise)."""
        auth = self.service.auth
        rpc = method.rsplit("/", 1)[-1]
        if not auth.required:
            return Principal.ANONYMOUS
        peer = context.peer() or "unknown"
        try:
            token = bearer_token(context)
        except Unauthenticated:
            auth.record("auth", key_id="-", peer=peer, target=rpc, outcome="401 malformed")
            raise
        principal = auth.principal(token, peer=peer, target=rpc)  # 401s audited, rate limit per key
        action = ACTIONS.get(method)
        if action is None:  # an RPC nobody classified: refused, and the matrix test fails
            raise PermissionDenied(f"{rpc} is not open to API keys on this server")
        if not principal.allows(action):
            # the role is refused before any space is looked at: the answer says nothing about spaces
            auth.record("denied", key_id=principal.key_id, peer=peer, action=action.value, target=rpc,
                        outcome="403 permission denied")
            raise PermissionDenied(f"this API key's role ({principal.role.value}) does not allow {rpc} "
                                   f"({action.value} operations)")
        return principal

    async def refuse(self, method: str, context: Ctx, exc: EngramError) -> None:
        rpc = method.rsplit("/", 1)[-1]
        mapped = map_error(exc, rpc=rpc)
        log.info("%s refused: %s %s", rpc, mapped.status.name, mapped.error.message,
                 extra={"memory_space": None, "rpc": rpc, "transport": "grpc", "status": mapped.status.name,
                        "code": mapped.error.code, "peer": context.peer() or "unknown"})
        self.service.metrics.observe("grpc", rpc, None, mapped.status.name, 0.0)
        await context.abort(mapped.status, mapped.message, mapped.trailing_metadata())

    async def _enter(self, method: str, context: Ctx) -> Principal:
        try:
            principal = self.admit(method, context)
        except EngramError as exc:  # 401, 403, RATE_LIMITED
            await self.refuse(method, context, exc)
            raise AssertionError("unreachable: abort raises") from exc  # pragma: no cover
        PRINCIPAL.set(principal)
        return principal

    def _watch(self, principal: Principal) -> _Watch | None:
        if principal.key_id == Principal.ANONYMOUS.key_id:
            return None
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(principal, task)
        self.sentry.add(watch)
        return watch

    async def _revoked(self, method: str, context: Ctx, watch: _Watch) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        self.service.auth.record("stream_ended", key_id=watch.principal.key_id,
                                 peer=context.peer() or "unknown", target=method.rsplit("/", 1)[-1],
                                 outcome=f"401 {watch.revoked}")
        await self.refuse(method, context, Unauthenticated(
            f"API key {watch.principal.key_id} was {watch.revoked} while this stream was open",
            details={"reason": watch.revoked, "key_id": watch.principal.key_id}))

    def _wrap(self, method: str, h: Handler) -> Handler:
        enter = self._enter
        watch_of = self._watch
        revoked = self._revoked
        sentry = self.sentry
        inner: Any
        if h.unary_unary is not None:
            inner = h.unary_unary

            async def unary_unary(request: Any, context: Ctx) -> Any:
                await enter(method, context)
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result

            return h._replace(unary_unary=unary_unary)  # type: ignore[attr-defined,no-any-return]

        streaming_in = h.stream_stream is not None or h.stream_unary is not None
        inner = h.unary_unary or h.unary_stream or h.stream_unary or h.stream_stream
        if h.unary_stream is not None or h.stream_stream is not None:
            async def streaming(request: Any, context: Ctx) -> AsyncIterator[Any]:
                watch = watch_of(await enter(method, context))
                try:
                    result = inner(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
                except asyncio.CancelledError:
                    if watch is None or not watch.revoked:
                        raise
                    await revoked(method, context, watch)
                finally:
                    if watch is not None:
                        sentry.discard(watch)

            field = "stream_stream" if streaming_in else "unary_stream"
            return h._replace(**{field: streaming})  # type: ignore[attr-defined,no-any-return]

        async def stream_unary(requests: Any, context: Ctx) -> Any:
            await enter(method, context)
            result = inner(requests, context)
            return await result if inspect.isawaitable(result) else result

        return h._replace(stream_unary=stream_unary)  # type: ignore[attr-defined,no-any-return]
