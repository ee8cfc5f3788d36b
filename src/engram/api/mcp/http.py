"""``/mcp``: MCP over Streamable HTTP, mounted on the REST application.

Loaded on the first POST to ``/mcp``, not at start-up (:mod:`.endpoint` mounts the
route and imports this module, and the SDK with it, on first use).

Stateless and JSON-answering: every POST carries one JSON-RPC message and gets
one JSON answer, with no session kept between requests and no long-lived
stream (GET and DELETE are 405: :class:`.endpoint.PostOnly`), so a tool call is an
ordinary request (the REST middleware counts, limits and traces it like any
other) and shutdown never waits on an idle MCP client. Tools run in-process on
the server's :class:`EngramService`.

The space of each call is chosen per HTTP request by SPEC §2: the
``X-Memory-Space`` header (or its aliases) and the tool's ``space`` argument;
two that disagree are a conflict, none is the default space (deprecated, and
said so in the reply), or an error when ``require_explicit_space`` is set.

Keys (SPEC §10) arrive as the REST ``Authorization`` header of the same HTTP
request: the REST middleware checks the key before this app sees the request,
and :class:`RequestSpace` narrows each tool call's space to the key's spaces,
exactly as for REST.

On a loopback listener the SDK's DNS-rebinding protection is on (the Host and
Origin headers must be loopback), so a web page cannot reach a local server's
memory through a rebound DNS name.
"""

from __future__ import annotations

import contextvars
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import ASGIApp

from ...auth.keys import Action, Principal
from ...core.models import SpacePage
from ...errors import MemorySpaceRequired, PermissionDenied, Unauthenticated
from ...service import EngramService
from ..rest.access import SCOPE_PRINCIPAL
from ..rest.space import HEADER_SOURCES
from .engines import Engine, ServiceEngine
from .server import build_server
from .tools import TOOLS

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RequestSpace:
    """The space of one tool call: the HTTP request's space headers, then the ``space`` argument."""

    def __init__(self, service: EngramService) -> None:
        self.service = service

    def session_space(self, ctx: ServerRequestContext[Any, Any]) -> str:
        named = [value for _, value in self.named(ctx) if value]
        return named[0] if named else ""

    def named(self, ctx: ServerRequestContext[Any, Any]) -> list[tuple[str, str | None]]:
        request = ctx.request
        if not isinstance(request, Request):
            return []
        return [(name, value) for key, name in HEADER_SOURCES for value in request.headers.getlist(key)]

    def admit(self, ctx: ServerRequestContext[Any, Any], tool: str, read_only: bool) -> None:
        """The key of the HTTP request, as the REST middleware in front of ``/mcp`` authenticated it
        (it has already answered 401 to a request without a valid key): a reader key cannot call
        the writing tools."""
        request = ctx.request
        principal = Principal.ANONYMOUS
        if self.service.auth.required:
            found = request.scope.get(SCOPE_PRINCIPAL) if isinstance(request, Request) else None
            if not isinstance(found, Principal):  # not behind the middleware: refuse, never serve
                raise Unauthenticated("this MCP request carries no authenticated API key")
            principal = found
        action = Action.read if read_only else Action.write
        if not principal.allows(action):
            raise PermissionDenied(f"this API key's role ({principal.role.value}) does not allow the {tool} "
                                   f"tool ({action.value} operations)")
        MCP_PRINCIPAL.set(principal)

    def __call__(self, ctx: ServerRequestContext[Any, Any], tool: str,
                 argument: str | None) -> tuple[str, str | None]:
        request = ctx.request
        peer = "unknown"
        if isinstance(request, Request) and request.client is not None:
            peer = f"{request.client.host}:{request.client.port}"
        res = self.service.resolve_space([*self.named(ctx), ("argument:space", argument)],
                                         transport="mcp", operation=f"mcp {tool}", peer=peer)
        principal = MCP_PRINCIPAL.get()
        if principal is not Principal.ANONYMOUS:
            if res.fell_back and not principal.covers(res.space_id):
                raise MemorySpaceRequired(
                    f"{tool} names no space and this API key does not cover the default space",
                    suggestion="Send the X-Memory-Space header or the space argument naming one of this "
                               "key's spaces.", example='{"space": "agent-7"}')
            # a space outside the key's set answers exactly as a missing one
            self.service.auth.check(principal, res.space_id,
                                    Action.read if TOOLS[tool].read_only else Action.write)
        note = None
        if res.fell_back:
            note = (f"no memory space was named, so the default space {res.space_id!r} was used; this "
                    "fallback is deprecated: send the X-Memory-Space header (or the space argument).")
        return res.space_id, note


#: The key of the MCP tool call being served (set by ``RequestSpace.admit``).
MCP_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("engram_mcp_principal",
                                                                          default=Principal.ANONYMOUS)


class KeyedEngine(ServiceEngine):
    """The in-server engine, listing only the spaces of the calling key."""

    async def list_spaces(self, cursor: str | None, limit: int) -> SpacePage:
        return await self.service.list_spaces(cursor, limit, principal=MCP_PRINCIPAL.get())


def session_manager(service: EngramService) -> StreamableHTTPSessionManager:
    """The SDK's stateless, JSON-answering session manager over the tools, on ``service``."""
    engine = KeyedEngine(service)

    async def get_engine() -> Engine:
        return engine

    server = build_server(get_engine, RequestSpace(service))
    security = None
    if service.settings.host in LOOPBACK:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    return StreamableHTTPSessionManager(app=server, stateless=True, json_response=True,
                                        security_settings=security,
                                        max_request_body_size=service.settings.max_body_bytes)


def asgi_app(manager: StreamableHTTPSessionManager) -> ASGIApp:
    """The ASGI app serving requests through ``manager`` (which must be running: ``manager.run()``)."""
    return StreamableHTTPASGIApp(manager)
