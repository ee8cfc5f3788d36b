"""The one ASGI middleware before every route: Host/Origin, body limit, metrics, headers, last-resort 500.

Pure ASGI (no ``BaseHTTPMiddleware``), because it runs on every request and
the per-request budget at full load is ~150 us.

Host and Origin (:mod:`.hosts`) are checked first: a request for another
Host (DNS rebinding) is answered 421, a state-changing one from a foreign
Origin 403, before anything reads its body. ``OPTIONS`` on a known path is
answered here (204 with ``Allow``), and every 405 gets the ``Allow`` of all the
methods its path takes (:mod:`.methods`).

Body limit. A restore upload (``routes_backup``) is left to its route, which
streams it to disk under ``max_restore_bytes``. ``max_body_bytes`` is enforced
on the raw receive stream, so it holds for chunked bodies that declare no length. A request with a body is
read here in full (FastAPI buffers it anyway) and replayed to the app; an
oversize one is answered 413 with the envelope. We keep reading (and
discarding) the rest of an oversize body before answering: a server that
answers and closes while the client is still writing makes the client see a
reset instead of the 413. Draining is capped, past the cap we answer with
``Connection: close``; a client that sent ``Expect: 100-continue`` with a
declared oversize length is answered at once and never sends the body.

Metrics. Every request is counted and timed under its route template and the
(capped) memory-space label the route resolved; unmatched paths share one
label so a scanner cannot create series. Streams are counted, not timed.

Tracing. Every request is one SERVER span (``service.tracing``), current while
the route runs (engine spans nest under it, log lines carry its trace id) and
ended here with the resolved ``memory_space`` (or ``requested_space`` when the
space was invalid), route, status, fallback and, on errors, the envelope's
code. A caller's W3C ``traceparent`` header is honoured. Disabled tracing
costs one branch per request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from opentelemetry.trace import Span
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...auth.guard import Authorizer
from ...errors import EngramError, PayloadTooLarge, Unauthenticated
from ...observability import finish_span
from ...service import EngramService
from ...spaces.ids import is_valid
from .access import OPEN, PATH, RESOLVED, SCOPE_PRINCIPAL, SCOPE_RULE, RouteAccess, bearer_token
from .errors import envelope_bytes, on_engram_error
from .hosts import HostPolicy
from .methods import RouteMethods
from .routes_backup import is_restore_upload
from .space import HEADER_SOURCES, SCOPE_SPACE, SCOPE_WARNING, operation_of, peer_of

log = logging.getLogger("engram.rest")

DRAIN_CAP = 64 * 1024 * 1024
BATCH_PATH = "/api/v1/memories/batch"  # limited by max_batch_body_bytes instead of max_body_bytes


class EngramMiddleware:
    def __init__(self, app: ASGIApp, service: EngramService, hosts: HostPolicy,
                 routes: Iterable[BaseRoute] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.methods = RouteMethods(routes)  # built with the middleware stack: every route is in by then
        self.metrics = service.metrics
        self.registry = service.registry
        self.tracing = service.tracing
        self.limit = service.settings.max_body_bytes
        # The batch route takes up to 1,000 memories with their vectors: its own, larger limit.
        self.batch_limit = max(self.limit, service.settings.max_batch_body_bytes)
        self.drain_cap = max(DRAIN_CAP, 4 * self.limit)
        self.auth: Authorizer = service.auth
        # Built only when keys are checked: with auth disabled a request pays nothing for it.
        self.access = RouteAccess(routes) if service.auth.required else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False, "stream": False}
        span: Span | None = None
        token = None
        if self.tracing.enabled:
            span = self.tracing.start(f"HTTP {scope['method']}", {"transport": "rest"},
                                      carrier=_carrier(scope))
            token = self.tracing.attach(span)

        async def send_wrapper(message: Message) -> None:
            if span is not None and message["type"] == "http.response.body" and state["status"] >= 400:
                state["error_body"] = state.get("error_body", b"") + message.get("body", b"")[:4096]
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                warning = scope.get(SCOPE_WARNING)
                headers = list(message.get("headers") or ())
                if message["status"] == 405:
                    headers = self._allow_all(scope, headers)
                    message = {**message, "headers": headers}
                if warning:
                    headers = [*headers, (b"deprecation", b"true"), (b"warning", warning.encode("latin-1"))]
                    message = {**message, "headers": headers}
                for name, value in headers:
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        state["stream"] = True
            await send(message)

        try:
            refused = self.hosts.check(scope)
            if refused is not None:
                await _answer(send_wrapper, *refused)
                return
            if scope["method"] == "OPTIONS":
                allow = self.methods.allow(scope["path"])
                if allow is not None:
                    await send_wrapper({"type": "http.response.start", "status": 204,
                                        "headers": [(b"allow", allow.encode())]})
                    await send_wrapper({"type": "http.response.body", "body": b""})
                    return
            length, chunked, expect_continue = _body_headers(scope)
            if (length or chunked) and not is_restore_upload(scope["method"], scope["path"]):
                limit, setting = ((self.batch_limit, "max_batch_body_bytes")
                                  if scope["method"] == "POST" and scope["path"] == BATCH_PATH
                                  else (self.limit, "max_body_bytes"))
                if length is not None and length > limit and expect_continue:
                    await self._too_large(send_wrapper, length, close=True, limit=limit, setting=setting)
                    return
                body, total, complete = await self._read(receive, limit)
                if not complete and total <= limit:
                    state["status"] = 499  # the client went away mid-body: nobody to answer
                    return
                if total > limit:
                    await self._too_large(send_wrapper, total, close=not complete, limit=limit,
                                          setting=setting)
                    return
                receive = _replay(body, receive)
                if span is not None:
                    state["body"] = body
            if self.access is not None:
                refusal = self._authorize(scope)
                if refusal is not None:
                    await self._refuse(scope, receive, send_wrapper, refusal)
                    return
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            state["exc"] = exc
            # A bug, never client input: log it with the route, answer 500 if we still can.
            log.exception(
                "unhandled error in %s",
                operation_of(scope),
                extra={"memory_space": scope.get(SCOPE_SPACE), "route": operation_of(scope)},
            )
            if not state["started"]:
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": envelope_bytes(
                            "INTERNAL",
                            "the server failed to handle this request; the error is logged",
                            "Retry; if it persists, report it with the time of the request.",
                            "GET /api/v1/system/health  (the server's and each space's state)",
                        ),
                    }
                )
        finally:
            route = scope.get("route")
            op = operation_of(scope) if route is not None else "unmatched"
            code = state["status"]
            space = scope.get(SCOPE_SPACE)
            if space is not None and code == 404 and not self.registry.exists(space):
                space = None  # a name nobody created must not take one of the capped label values
            if state["stream"]:
                self.metrics.requests.labels("rest", op, self.metrics.space_label(space), str(code)).inc()
            else:
                self.metrics.observe("rest", op, space, str(code), time.perf_counter() - t0)
            if span is not None:
                self._end_span(span, scope, state, op)
                self.tracing.detach(token)

    def _authorize(self, scope: Scope) -> EngramError | None:
        """Authenticate the request and check NONE / PATH rules (see access.py); the error to answer."""
        assert self.access is not None
        found = self.access.find(scope["method"], scope["path"])
        if found is not None and found[0].space == OPEN:
            return None
        peer = peer_of(scope)
        try:
            who = self.auth.principal(bearer_token(scope), peer=peer, target=scope["path"])
            scope[SCOPE_PRINCIPAL] = who
            if found is None:  # an unknown path: 404/405 from the router, for key holders only
                return None
            rule, params = found
            scope[SCOPE_RULE] = rule
            assert rule.action is not None
            if rule.space == PATH:
                sid = params.get("space_id", "")
                self.auth.check(who, sid if is_valid(sid) else None, rule.action, peer=peer, target=sid)
            elif rule.space != RESOLVED:
                self.auth.check(who, None, rule.action, peer=peer, target=scope["path"])
        except EngramError as exc:
            return exc
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: EngramError) -> None:
        response = await on_engram_error(Request(scope), exc)
        if isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="engram"'
        await response(scope, receive, send)

    def _allow_all(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        allow = self.methods.allow(scope["path"])
        if allow is None:
            return headers
        return [*(h for h in headers if h[0] != b"allow"), (b"allow", allow.encode())]

    def _end_span(self, span: Span, scope: Scope, state: dict[str, Any], op: str) -> None:
        code = int(state["status"])
        space = scope.get(SCOPE_SPACE)
        extra: dict[str, Any] = {"route": op, "http.request.method": scope["method"],
                                 "http.response.status_code": code}
        if span.is_recording():
            route = getattr(scope.get("route"), "path", None)
            span.update_name(op if route is not None else f"{scope['method']} unmatched")
            if route is not None:
                extra["http.route"] = route
            if state["stream"]:
                extra["stream"] = True
        failed = code >= 400
        error_code = error_message = None
        if failed and state.get("error_body"):
            try:
                err = json.loads(state["error_body"])["error"]
                error_code, error_message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                pass
        requested = _requested_space(scope, state.get("body")) if failed and space is None else None
        exc = state.get("exc")
        finish_span(span, space=space, status=str(code), fallback=scope.get(SCOPE_WARNING) is not None,
                    requested=requested, error_code=error_code or ("INTERNAL" if code >= 500 else None),
                    error_message=error_message, exc=exc, failed=failed, extra=extra)

    async def _read(self, receive: Receive, limit: int) -> tuple[bytes, int, bool]:
        """Read the whole body; past the limit keep draining (up to the cap) but keep nothing."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away mid-body
                return b"", total, False
            chunk = message.get("body", b"")
            total += len(chunk)
            if total <= limit:
                chunks.append(chunk)
            elif chunks:
                chunks = []
            if not message.get("more_body", False):
                return b"".join(chunks), total, True
            if total > max(self.drain_cap, 2 * limit):
                return b"", total, False

    async def _too_large(self, send: Send, size: int, close: bool, limit: int,
                         setting: str = "max_body_bytes") -> None:
        exc = PayloadTooLarge(
            f"request body is {size} bytes; this server accepts at most {limit} bytes ({setting})",
            suggestion="Send a smaller body (split large batches), "
                       f"or raise {setting} in the server settings.",
            example=f"{setting} = {4 * limit}  (engram.toml) or ENGRAM_{setting.upper()}={4 * limit}",
        )
        body = json.dumps(exc.to_envelope()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, code: str, message: str, suggestion: str) -> None:
    body = envelope_bytes(code, message, suggestion, "GET /api/v1/spaces  (Host: 127.0.0.1:7432, no Origin)")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _carrier(scope: Scope) -> dict[str, str] | None:
    """The caller's W3C trace context headers, if any."""
    out = None
    for name, value in scope["headers"]:
        if name in (b"traceparent", b"tracestate"):
            out = out or {}
            out[name.decode()] = value.decode("latin-1")
    return out


def _requested_space(scope: Scope, body: bytes | None) -> str | None:
    """What the client named as its space, for the span of a request whose space was rejected."""
    keys = {key.encode() for key, _ in HEADER_SOURCES}
    for name, value in scope["headers"]:
        if name in keys and value:
            named: str = value.decode("latin-1")
            return named
    query: str = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query):
        if key == "space" and value:
            return value
    if body:
        try:
            named = json.loads(body).get("memory_space_id")
        except (ValueError, AttributeError):
            return None
        return named if isinstance(named, str) and named else None
    return None


def _body_headers(scope: Scope) -> tuple[int | None, bool, bool]:
    length: int | None = None
    chunked = False
    expect = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
    return length, chunked, expect


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
