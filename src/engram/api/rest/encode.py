"""Results to HTTP responses, and request bodies and GET query strings to input models.

Handlers return a ready :class:`Response`, so FastAPI never re-validates a
result (the ``response_model`` on each route is for OpenAPI only): the model
is serialised straight to JSON bytes by pydantic-core.

:func:`from_body` parses a hot route's body (POST recall) with pydantic-core's
JSON parser in one step instead of FastAPI's ``json.loads`` + validation; a
body it refuses is read again the way FastAPI reads a body parameter, so the
error (and its envelope) is the one FastAPI gives.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

M = TypeVar("M", bound=BaseModel)


def ok(model: BaseModel, status: int = 200) -> Response:
    return Response(
        model.__pydantic_serializer__.to_json(model), status_code=status, media_type="application/json"
    )


def from_query(cls: type[M], **values: Any) -> M:
    """Build an input model from query parameters; errors are reported under ``query.<name>``."""
    try:
        return cls(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for err in exc.errors(include_url=False):
            errors.append({**err, "loc": ("query", *err.get("loc", ()))})
        raise RequestValidationError(errors) from None


async def from_body(request: Request, cls: type[M]) -> M:
    """The JSON body as ``cls``: the same model, or the same error, as a FastAPI body
    parameter ``item: cls`` gives (errors under ``body.<field>``; see api/rest/errors.py)."""
    raw = await request.body()
    if raw and request.headers.get("content-type") == "application/json":
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            pass  # read again below, so the error is named exactly as FastAPI names it
    return _as_fastapi(raw, request.headers.get("content-type"), cls)


def _as_fastapi(raw: bytes, ctype: str | None, cls: type[M]) -> M:
    """FastAPI's reading of a single body parameter (fastapi.routing, strict content type)."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    value: Any = raw  # not JSON by its Content-Type: validated as bytes, which fails (415)
    if ctype:
        message = email.message.Message()
        message["content-type"] = ctype
        sub = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (sub == "json" or sub.endswith("+json")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos),
                                               "msg": "JSON decode error", "input": {},
                                               "ctx": {"error": exc.msg}}]) from None
            except Exception as exc:  # e.g. RecursionError (deep nesting): FastAPI's 400
                raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
    try:
        return cls.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError([{**err, "loc": ("body", *err.get("loc", ()))}
                                      for err in exc.errors(include_url=False)]) from None
