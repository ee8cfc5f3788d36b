"""Which memory space a REST request targets (SPEC §2), decoded from the request.

The rules themselves (precedence, conflicts, validation, the default-space
fallback with its log line and counter, ``require_explicit_space``) live in
:meth:`EngramService.resolve_space`, shared with gRPC. This module only lists
the REST sources in precedence order:

    X-Memory-Space > X-Engram-Memory-Space > X-Memory-Space-Id > ?space= > body memory_space_id

A header or ``?space=`` that is present but empty (or only whitespace) is a
400 ``INVALID_MEMORY_SPACE``, never "no space named": a proxy or client that
meant to set the space and sent nothing must not land in the default space.
Any two that disagree are a 400 naming both, so a header set by a proxy can
never be overridden by a client's body. The resolved space is stored on the
ASGI scope for the middleware: it labels the request metrics and, when the
request fell back to the default space, adds the ``Deprecation`` and
``Warning`` response headers (on errors and streams too).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request

from ...errors import InvalidMemorySpace, MemorySpaceRequired
from ...service import EngramService
from .access import SCOPE_PRINCIPAL, SCOPE_RULE, Rule

SCOPE_SPACE = "engram.space"
SCOPE_WARNING = "engram.warning"

HEADER_SOURCES = (
    ("x-memory-space", "header:X-Memory-Space"),
    ("x-engram-memory-space", "header:X-Engram-Memory-Space"),
    ("x-memory-space-id", "header:X-Memory-Space-Id"),
)

_HEADER_SOURCES_B = tuple((key.encode(), name) for key, name in HEADER_SOURCES)
_HEADER_KEYS = frozenset(key for key, _ in _HEADER_SOURCES_B)

SPACE_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 3,
    "maxLength": 64,
    "pattern": "^[a-z0-9][a-z0-9_-]{2,63}$",
    "example": "agent-7",
}

_RULES = (
    "Precedence: X-Memory-Space, X-Engram-Memory-Space, X-Memory-Space-Id, ?space=, body memory_space_id; "
    "sources that disagree are rejected (400 MEMORY_SPACE_CONFLICT). With none, the default space is used "
    "and the response carries `Deprecation: true` and a `Warning` header (or 400 MEMORY_SPACE_REQUIRED when "
    "the server sets require_explicit_space)."
)

#: OpenAPI parameters added to every space-scoped operation.
SPACE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "X-Memory-Space",
        "in": "header",
        "required": False,
        "schema": SPACE_ID_SCHEMA,
        "description": "The memory space this request targets. " + _RULES,
    },
    {
        "name": "X-Engram-Memory-Space",
        "in": "header",
        "required": False,
        "schema": SPACE_ID_SCHEMA,
        "description": "Alias of X-Memory-Space.",
    },
    {
        "name": "X-Memory-Space-Id",
        "in": "header",
        "required": False,
        "schema": SPACE_ID_SCHEMA,
        "description": "Alias of X-Memory-Space.",
    },
    {
        "name": "space",
        "in": "query",
        "required": False,
        "schema": SPACE_ID_SCHEMA,
        "description": "The memory space, as a query parameter (after the headers in precedence).",
    },
]

SPACE_SCOPED: dict[str, Any] = {"parameters": SPACE_PARAMETERS}


def peer_of(scope: MutableMapping[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


def operation_of(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    return f"{scope.get('method', '')} {getattr(route, 'path', scope.get('path', ''))}"


def _present(source: str, value: str) -> str:
    """A header or query value that was sent must name a space: empty is invalid, not absent."""
    if not value.strip():
        where = source.replace("header:", "header ").replace("query:space", "query parameter ?space=")
        raise InvalidMemorySpace(
            f"the {where} is present but empty; it must name a memory space (3-64 characters of "
            f"[a-z0-9_-]), or be left out to use the default space",
            details={"source": source},
        )
    return value


class SpaceResolver:
    """``resolver(request, body_space)`` -> the space id, or raises the SPEC §2 error."""

    __slots__ = ("service",)

    def __init__(self, service: EngramService) -> None:
        self.service = service

    def __call__(self, request: Request, body_space: str | None = None) -> str:
        scope = request.scope
        sources = self.sources(request, body_space)
        res = self.service.resolve_space(
            sources, transport="rest", operation=operation_of(scope), peer=peer_of(scope)
        )
        rule = scope.get(SCOPE_RULE)
        if isinstance(rule, Rule) and rule.action is not None:  # auth is on: the key must cover it
            who = scope[SCOPE_PRINCIPAL]
            if res.fell_back and not who.covers(res.space_id):
                raise MemorySpaceRequired(
                    f"{operation_of(scope)} named no memory space, and this API key does not cover the "
                    f"default space: name one of the key's spaces",
                    suggestion="Name the space with the X-Memory-Space header, ?space= or memory_space_id.")
            self.service.auth.check(who, res.space_id, rule.action, peer=peer_of(scope), target=res.space_id)
        scope[SCOPE_SPACE] = res.space_id
        if res.warning:
            scope[SCOPE_WARNING] = res.warning
        return res.space_id

    @staticmethod
    def sources(request: Request, body_space: str | None = None) -> list[tuple[str, str | None]]:
        # One pass over the raw headers (this runs on every data-plane request). A header sent
        # twice counts twice, so a client cannot slip a second value past a proxy-set one.
        found: dict[bytes, list[str]] = {}
        for key, value in request.scope["headers"]:
            if key in _HEADER_KEYS:
                found.setdefault(key, []).append(value.decode("latin-1"))
        out: list[tuple[str, str | None]] = []
        for key, name in _HEADER_SOURCES_B:
            out.extend((name, _present(name, value)) for value in found.get(key, ()))
        query = request.scope.get("query_string", b"")
        if b"space=" in query:
            out.extend(("query:space", _present("query:space", value))
                       for value in request.query_params.getlist("space"))
        out.append(("body:memory_space_id", body_space))
        return out

    def optional(self, request: Request) -> str | None:
        """The space named by the request, or None (no fallback): for system routes."""
        sources = self.sources(request)
        if not any(v for _, v in sources):
            return None
        return self(request)
