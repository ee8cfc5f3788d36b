"""The OpenAPI document: every route, parameter, header and error response.

FastAPI documents routes, bodies and query parameters from the handlers. This
module adds what it cannot see, once for all routes, from what each operation
already declares:

* every error response, in the one envelope (``ErrorEnvelope``), replacing
  FastAPI's 422 (this server answers validation errors with 400);
* the ``Deprecation`` / ``Warning`` headers on the answers of space-scoped
  operations (those that declare the ``X-Memory-Space`` parameter).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .errors import ErrorEnvelope

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


def _errors_for(path: str, method: str, op: dict[str, Any]) -> list[str]:
    codes = ["400", "500"]
    params = op.get("parameters", [])
    scoped = any(p.get("name") == "X-Memory-Space" for p in params)
    if scoped or any(p.get("in") == "path" for p in params):
        codes.append("404")
    if scoped:
        codes.append("503")
    if "requestBody" in op:
        codes += ["413", "415"]
    if path == "/api/v1/spaces" and method == "post":
        codes.append("409")
    if path.endswith("/reembed") or path.endswith("/backup"):
        codes.append("503")
    if path == "/api/v1/spaces/{space_id}" and method == "delete":
        codes += ["409", "503"]
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
    if path.startswith("/api/v1/stream/"):
        codes.append("429")
    if path == "/api/v1/spaces/{space_id}" and method == "delete":
        codes.append("409")
    if path.startswith("/api/v1/keys/"):
        codes.append("404")
    if path != "/health/alive":  # with auth required (SPEC §10): keys, roles, rate limits
        codes += ["401", "403", "429"]
    if path == "/health":
        codes.remove("400")
    return sorted(set(codes))


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorEnvelope"] = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in components["ErrorEnvelope"].pop("$defs", {}).items():
        components[name] = sub
    schema["components"]["securitySchemes"] = _SECURITY_SCHEMES
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for code in _errors_for(path, method, op):
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
