"""Foreign errors become gRPC statuses here, once, through one table.

Every :class:`~engram.errors.EngramError` names its gRPC status
(``grpc_status``); :data:`STATUS` turns that name into a ``grpc.StatusCode``.
Pydantic validation errors are client mistakes (``INVALID_ARGUMENT`` naming
the field), a cognition operation that is not built yet is ``UNIMPLEMENTED``,
and anything else is ``INTERNAL`` and logged with its traceback - never
``UNKNOWN``, which is what grpcio would send for an escaped exception.

A failed call carries, besides code and message, the trailing metadata
``engram-error-code`` (the stable Engram code) and ``engram-error-bin`` (the
serialized ``ErrorDetail`` with suggestion and example), which the Python
client turns back into the same exception class; an error with a retry hint
(``RateLimited``, ``QuotaExceeded``, ``TooManySubscribers``) also carries
``retry-after`` (whole seconds), as REST's ``Retry-After`` header.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from pydantic import ValidationError

from ...errors import EngramError, InvalidInput, NotBuiltYet
from .gen import memory_pb2
from .metadata import ERROR_CODE_KEY, ERROR_DETAIL_KEY

log = logging.getLogger("engram.grpc")

#: ``EngramError.grpc_status`` name -> status code. The only place that maps them.
STATUS: dict[str, grpc.StatusCode] = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}

#: Seconds to wait before retrying a RESOURCE_EXHAUSTED call (RATE_LIMITED, TOO_MANY_SUBSCRIBERS ...).
RETRY_AFTER_KEY = "retry-after"


def describe_validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """An ``InvalidInput`` whose message names every offending field (``memory.embedding``)."""
    parts = []
    fields = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        name = ".".join(p for p in (prefix, loc) if p) or prefix or "request"
        fields.append(name)
        msg = str(err.get("msg", "invalid value"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{name}: {msg}")
    return InvalidInput(
        "invalid request: " + "; ".join(parts),
        suggestion="Fix the named field(s); see the comments in proto/engram/v1/memory.proto.",
        details={"fields": fields},
    )


@dataclass(frozen=True)
class MappedError:
    status: grpc.StatusCode
    error: EngramError

    @property
    def message(self) -> str:
        """The status message: what went wrong, then how to fix it (for grpcurl users)."""
        if self.error.suggestion:
            return f"{self.error.message.rstrip('.')}. {self.error.suggestion}"
        return self.error.message

    def detail(self) -> memory_pb2.ErrorDetail:
        d = memory_pb2.ErrorDetail(
            code=self.error.code, message=self.error.message, suggestion=self.error.suggestion,
            example=self.error.example, grpc_code=self.status.value[0],
        )
        if self.error.details:
            # details are best-effort decoration, the message says it all
            with contextlib.suppress(ValueError, TypeError):
                d.details.update(_jsonable(self.error.details))
        return d

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        md: tuple[tuple[str, str | bytes], ...] = (
            (ERROR_CODE_KEY, self.error.code), (ERROR_DETAIL_KEY, self.detail().SerializeToString()))
        retry = self.error.retry_after_seconds
        if retry is not None:  # rate limits, subscriber caps: when to try again (REST's Retry-After)
            md += ((RETRY_AFTER_KEY, str(retry)),)
        return md


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def map_error(exc: BaseException, *, rpc: str = "", space: str | None = None) -> MappedError:
    """The status and Engram error for any exception raised while serving a call."""
    if isinstance(exc, EngramError):
        err: EngramError = exc
    elif isinstance(exc, ValidationError):
        err = describe_validation_error(exc)
    elif isinstance(exc, NotImplementedError):
        err = NotBuiltYet(f"{rpc or 'this operation'} is not implemented by this server yet")
    else:
        log.error("unexpected error in %s", rpc, exc_info=exc,
                  extra={"memory_space": space, "rpc": rpc, "transport": "grpc"})
        err = EngramError(f"internal error while serving {rpc or 'the call'}; the server log has the details")
    status = STATUS.get(err.grpc_status, grpc.StatusCode.INTERNAL)
    return MappedError(status, err)
