"""Results to HTTP responses, and GET query strings to input models.

Handlers return a ready :class:`Response`, so FastAPI never re-validates a
result (the ``response_model`` on each route is for OpenAPI only): the model
is serialised straight to JSON bytes by pydantic-core.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
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
