"""The OpenAPI document: every route, parameter, header and error response.

FastAPI documents routes, bodies and query parameters from the handlers. This
module adds what it cannot see, once for all routes, from what each operation
already declares:

* every error response, in the one envelope (``ErrorEnvelope``), replacing
  FastAPI's 422 (this server answers validation errors with 400). The codes are derived
  from what the route is, so a new route documents its codes without an entry here:
  every route 400 (unknown query parameters, api/rest/query.py) and 500; the access
  table (api/rest/access.py) gives 401/403/429 (any route but an open one) and 404/503
  (a route addressing a space); path parameters 404; a body 413/415; codes FastAPI
  already lists (a route's own ``responses=``) are kept. A few codes only the route's
  logic knows (409 on create, 422 on complete ...) are listed by ``_specific``;
* the ``Deprecation`` / ``Warning`` headers on the answers of space-scoped
  operations (those that declare the ``X-Memory-Space`` parameter).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from ...core.models import Cue
from . import access
from .errors import ErrorEnvelope

# Bodies read by their route itself (encode.from_body), so FastAPI does not document their schema.
RAW_BODIES = (Cue,)
_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}

_DESCRIPTIONS = {
    "400": "Invalid input (INVALID_INPUT, MALFORMED_JSON, INVALID_MEMORY_SPACE, MEMORY_SPACE_CONFLICT, "
    "MEMORY_SPACE_REQUIRED, EMBEDDING_DIMENSION_MISMATCH, ...).",
    "404": "Not found (MEMORY_SPACE_NOT_FOUND, MEMORY_NOT_FOUND, BELIEF_NOT_FOUND, ROUTE_NOT_FOUND).",
    "401": "No, malformed, unknown, expired or revoked API key (UNAUTHENTICATED), when the server requires "
    "keys; the answer carries `WWW-Authenticate: Bearer`.",
    "403": "The API key's role does not allow this (PERMISSION_DENIED), or a space quota would be exceeded "
    "(QUOTA_EXCEEDED; nothing was stored).",
    "409": "A server limit was reached (MEMORY_SPACE_LIMIT), the space exists (MEMORY_SPACE_EXISTS), the "
    "default space cannot be deleted (DEFAULT_SPACE_PROTECTED), or the memory id is taken (MEMORY_EXISTS).",
    "413": "The body exceeds max_body_bytes (PAYLOAD_TOO_LARGE).",
    "415": "The body is not JSON (UNSUPPORTED_MEDIA_TYPE).",
    "422": "The cue was too weak to complete a pattern (CUE_TOO_WEAK).",
    "429": "The API key's rate limit (RATE_LIMITED) or a stream subscriber cap (TOO_MANY_SUBSCRIBERS) was "
    "reached; retry after the Retry-After header's seconds. Open streams are not affected.",
    "500": "A server bug (INTERNAL, STORAGE_ERROR); never caused by client input.",
    "501": "Not implemented by this server (NOT_IMPLEMENTED).",
    "503": "The space is unhealthy (MEMORY_SPACE_UNHEALTHY) or its storage is briefly unavailable "
    "(STORAGE_UNAVAILABLE), no more spaces can be loaded now (SPACE_CAPACITY_EXHAUSTED), its embedder "
    "cannot be reached (EMBEDDER_UNAVAILABLE) or the server is shutting down (SHUTTING_DOWN). Retriable.",
}

_FALLBACK_HEADERS = {
    "Deprecation": {
        "description": "`true` when the request named no memory space and the default space was "
        "used (a deprecated fallback).",
        "schema": {"type": "string"},
    },
    "Warning": {
        "description": "299 warning explaining the default-space fallback.",
        "schema": {"type": "string"},
    },
}


_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (egk_...) when the server "
               "requires keys (SPEC §10); not needed on loopback with auth disabled."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key, "
               "in its own header."},
}


def _rules(app: FastAPI) -> dict[tuple[str, str], access.Rule]:
    """The access rule of each documented operation, keyed as /openapi.json keys it."""
    out: dict[tuple[str, str], access.Rule] = {}
    for route in iter_route_contexts(list(app.routes)):
        if route.path is None or route.path_format is None:
            continue
        for m in (route.methods or set()) - {"HEAD"}:
            rule = access.ROUTE_ACCESS.get((m, route.path))
            if rule is not None:
                out[(m.lower(), route.path_format)] = rule
    return out


def _errors_for(path: str, method: str, op: dict[str, Any], rule: access.Rule | None = None) -> list[str]:
    codes = ["400", "500"]  # any route: an unknown query parameter, a malformed input
    params = op.get("parameters", [])
    scoped = any(p.get("name") == "X-Memory-Space" for p in params)
    addressed = scoped or (rule is not None and rule.space in (access.PATH, access.RESOLVED))
    if addressed or any(p.get("in") == "path" for p in params):
        codes.append("404")
    if addressed:
        codes.append("503")  # the space is unhealthy, cannot be loaded now, or the server is stopping
    if "requestBody" in op:
        codes += ["413", "415"]
    if rule is None or rule.space != access.OPEN:  # with auth required (SPEC §10): keys, roles, rate limits
        codes += ["401", "403", "429"]
    return sorted(set(codes) | set(_specific(path, method, op)))


def _specific(path: str, method: str, op: dict[str, Any]) -> list[str]:
    """Codes only the route's logic knows (what it may find in the way), not its shape."""
    codes: list[str] = []
    if (path, method) in (("/api/v1/spaces", "post"), ("/api/v1/spaces/{space_id}", "delete")):
        codes.append("409")  # the space exists / the default space cannot be deleted
    if path.endswith("/restore"):
        codes.append("409")
    if path == "/api/v1/memories/remember":
        codes.append("409")  # MEMORY_EXISTS (a batch reports it per item, in its 201/200 answer)
    if path in ("/api/v1/complete",):
        codes.append("422")
    if (
        op.get("tags", [None])[0] in ("cognition",)
        or path.endswith("reminisce")
        or path.startswith("/api/v1/consolidat")
    ):
        codes.append("501")
    return codes


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in RAW_BODIES:  # routes reading their body themselves (encode.from_body)
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in own.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components.setdefault(model.__name__, own)
    components["ErrorEnvelope"] = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in components["ErrorEnvelope"].pop("$defs", {}).items():
        components[name] = sub
    schema["components"]["securitySchemes"] = _SECURITY_SCHEMES
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    rules = _rules(app)
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for code in _errors_for(path, method, op, rules.get((method, path))):
                existing = responses.get(code, {})
                if "content" in existing:
                    continue
                responses[code] = {
                    "description": existing.get("description", _DESCRIPTIONS[code]),
                    "content": {"application/json": {"schema": _REF}},
                }
            if any(p.get("name") == "X-Memory-Space" for p in op.get("parameters", [])):
                for resp in responses.values():
                    resp.setdefault("headers", {}).update(_FALLBACK_HEADERS)
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
