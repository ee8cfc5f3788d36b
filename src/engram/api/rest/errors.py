"""Every REST error leaves through here, in one envelope.

    {"error": {"code", "message", "suggestion", "example", "details"?}}

Sources, and how each is translated (once, at this boundary):

* :class:`~engram.errors.EngramError` - its own code and HTTP status (the one
  table lives on the error classes themselves).
* ``RequestValidationError`` / pydantic ``ValidationError`` - 400
  ``INVALID_INPUT`` naming each field, the rule and what was received;
  malformed JSON is 400 ``MALFORMED_JSON``; a body that is not JSON at all
  is 415 ``UNSUPPORTED_MEDIA_TYPE``.
* Starlette ``HTTPException`` (unknown route, wrong method, unparsable body) -
  404 ``ROUTE_NOT_FOUND``, 405 ``METHOD_NOT_ALLOWED``, 400 ``MALFORMED_BODY``.
* ``NotImplementedError`` - 501 ``NOT_IMPLEMENTED``.
* Anything else is a bug: 500 ``INTERNAL`` from :mod:`.middleware`, logged with
  its traceback. Client input must never get there.

The ``example`` of a validation error is a correct request for the route that
was called (see :mod:`.examples`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ...errors import EngramError, InvalidInput, MemorySpaceNotFound
from .examples import example_for

log = logging.getLogger("engram.rest")


class ErrorBody(BaseModel):
    code: str = Field(..., description="Stable machine-readable code, e.g. MEMORY_SPACE_NOT_FOUND.")
    message: str = Field(..., description="What went wrong: what was expected and what was received.")
    suggestion: str = Field(..., description="How to fix it.")
    example: str = Field(..., description="A correct example.")
    details: dict[str, Any] | None = Field(
        None, description="Structured extras (offending fields, sources)."
    )


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def envelope(
    code: str, message: str, suggestion: str = "", example: str = "", details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "suggestion": suggestion, "example": example}
    if details:
        body["details"] = details
    return {"error": body}


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, default=str).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def envelope_bytes(code: str, message: str, suggestion: str = "", example: str = "") -> bytes:
    return json.dumps(envelope(code, message, suggestion, example)).encode()


# -- translations -------------------------------------------------------------------------------------


async def on_engram_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EngramError)
    body = exc.to_envelope()
    if not body["error"]["example"]:  # every envelope shows a request that works for this route
        body["error"]["example"] = example_for(request.method, _route(request))
    if isinstance(exc, MemorySpaceNotFound):
        sid = exc.details.get("memory_space_id")
        if isinstance(sid, str):  # name the space the caller asked for, never any other
            body["error"]["suggestion"] = exc.suggestion.replace("<id>", sid)
    if exc.http_status >= 500:
        log.error("request failed: %s", exc.message, extra={"code": exc.code, "route": _route(request)})
    retry = exc.retry_after_seconds
    return error_response(exc.http_status, body, {"Retry-After": str(retry)} if retry is not None else None)


async def on_validation_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestValidationError):
        errors: Sequence[Any] = exc.errors()
    elif isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
    else:  # pragma: no cover - registered for these two only
        raise exc
    return validation_response(request, errors)


def validation_response(request: Request, errors: Sequence[Any]) -> Response:
    example = example_for(request.method, _route(request))
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            pos = err.get("loc", ("body", 0))[-1]
            return error_response(
                400,
                envelope(
                    "MALFORMED_JSON",
                    f"request body is not valid JSON: {ctx.get('error', 'decode error')} at character {pos}",
                    "Send a JSON object with Content-Type: application/json.",
                    example,
                ),
            )
        loc = tuple(err.get("loc", ()))
        if loc == ("body",) and isinstance(err.get("input"), (bytes, bytearray)):
            ctype = request.headers.get("content-type")
            got = f"Content-Type {ctype!r}" if ctype else "no Content-Type header"
            return error_response(
                415,
                envelope(
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"request body must be JSON (application/json); got {got}",
                    "Send the body as JSON with the header Content-Type: application/json.",
                    example,
                ),
            )
    problems = [_problem(err) for err in errors[:20]]
    first = problems[0] if problems else {"field": "request", "problem": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    received = f"; received {_short(first['received'])}" if "received" in first else ""
    message = f"invalid {first['field']}: {first['problem']}{received}{more}"
    return error_response(
        400,
        envelope(
            "INVALID_INPUT",
            message,
            "Fix the fields listed in details.errors and retry; the schema of every route is at /docs.",
            example,
            {"errors": problems},
        ),
    )


def invalid_input(exc: ValidationError, prefix: str) -> InvalidInput:
    """The ``INVALID_INPUT`` error of a part of a request validated on its own (a batch item),
    with the fields named under ``prefix`` as ``validation_response`` names them."""
    errors = exc.errors(include_url=False)
    problems = [_problem({**err, "loc": (prefix, *err.get("loc", ()))}) for err in errors[:20]]
    first = problems[0] if problems else {"field": prefix, "problem": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    received = f"; received {_short(first['received'])}" if "received" in first else ""
    return InvalidInput(f"invalid {first['field']}: {first['problem']}{received}{more}",
                        suggestion="Fix the fields listed in details.errors; the other items are unaffected.",
                        example='{"content": "the text", "tags": ["a"]}', details={"errors": problems})


def _problem(err: dict[str, Any]) -> dict[str, Any]:
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join(loc) or "request"
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if kind == "missing":
        msg = "field required" if len(loc) > 1 else "a JSON body is required"
    elif kind == "extra_forbidden":
        msg = "unknown field (not part of this request's schema)"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    out: dict[str, Any] = {"field": field, "problem": msg, "type": kind}
    if kind not in ("missing",) and "input" in err:
        out["received"] = _jsonable(err["input"])
    return out


def _jsonable(value: Any) -> Any:
    """A short, JSON-safe rendering of what the client sent (never echo megabytes back)."""
    if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**53):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:197] + "..."
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    path = request.url.path
    if status == 404:
        body = envelope(
            "ROUTE_NOT_FOUND",
            f"no route {request.method} {path[:200]}",
            "See /docs or /openapi.json for the routes this server has.",
            "GET /api/v1/spaces",
        )
    elif status == 405:
        body = envelope(
            "METHOD_NOT_ALLOWED",
            f"{request.method} is not allowed on {path[:200]}",
            "Use one of the methods in the Allow header.",
            "GET /api/v1/spaces",
        )
        return error_response(405, body, headers=dict(exc.headers or {}))
    elif status == 400:
        body = envelope(
            "MALFORMED_BODY",
            f"the request body could not be parsed: {exc.detail}",
            "Send a JSON object with Content-Type: application/json.",
            example_for(request.method, _route(request)),
        )
    else:
        body = envelope(f"HTTP_{status}", str(exc.detail), "", "")
    return error_response(status, body, headers=dict(exc.headers or {}) or None)


async def on_not_implemented(request: Request, exc: Exception) -> Response:
    return error_response(
        501,
        envelope(
            "NOT_IMPLEMENTED",
            f"{request.method} {_route(request)} is not implemented by this server yet",
            "Use another operation, or upgrade the server.",
            example_for(request.method, _route(request)),
        ),
    )


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(EngramError, on_engram_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(NotImplementedError, on_not_implemented)
