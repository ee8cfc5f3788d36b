"""One error tree for the whole of Engram.

Every domain error carries a stable ``code``, an HTTP status, a gRPC status
name and a CLI exit code, plus a ``suggestion`` and a correct ``example``.
Transports never invent their own errors: REST, gRPC and the CLI map an
:class:`EngramError` through the same attributes (this is the one error table),
and the Python clients raise the same classes from the envelope the server
sends back.

A new class sets ``code``, ``http_status`` and ``grpc_status`` (and
``default_suggestion``). ``exit_code`` is optional: a class that sets its own
``http_status`` and no ``exit_code`` gets :func:`exit_code_for_status` of it
(400/413/422 -> 2, 404 -> 3, anything else -> 1); one that sets neither inherits
its parent's. Exit codes are the CLI's documented ones (``engram --help``).

    EngramError
    ├── InvalidInput                (400 / INVALID_ARGUMENT)
    │   ├── InvalidMemorySpace      INVALID_MEMORY_SPACE
    │   ├── MemorySpaceRequired     MEMORY_SPACE_REQUIRED
    │   ├── MemorySpaceConflict     MEMORY_SPACE_CONFLICT
    │   ├── DimensionMismatch       EMBEDDING_DIMENSION_MISMATCH
    │   ├── CueTooWeak              CUE_TOO_WEAK (422 / FAILED_PRECONDITION)
    │   ├── InvalidBackup           INVALID_BACKUP
    │   └── PayloadTooLarge         PAYLOAD_TOO_LARGE (413 / RESOURCE_EXHAUSTED)
    ├── NotFound                    (404 / NOT_FOUND)
    │   ├── MemorySpaceNotFound     MEMORY_SPACE_NOT_FOUND
    │   ├── MemoryNotFound          MEMORY_NOT_FOUND
    │   ├── BeliefNotFound          BELIEF_NOT_FOUND
    │   └── KeyNotFound             KEY_NOT_FOUND
    ├── Unauthenticated             UNAUTHENTICATED (401 / UNAUTHENTICATED)
    ├── PermissionDenied            PERMISSION_DENIED (403 / PERMISSION_DENIED)
    │   └── QuotaExceeded           QUOTA_EXCEEDED (403 / RESOURCE_EXHAUSTED)
    ├── RateLimited                 RATE_LIMITED (429 / RESOURCE_EXHAUSTED, Retry-After)
    ├── SpaceLimitReached           (409 / RESOURCE_EXHAUSTED)
    ├── DefaultSpaceProtected       (409 / FAILED_PRECONDITION)
    ├── MemorySpaceExists           (409 / ALREADY_EXISTS)
    ├── MemoryExists                MEMORY_EXISTS (409 / ALREADY_EXISTS)
    ├── SpaceUnhealthy              (503 / FAILED_PRECONDITION)
    ├── SlowConsumer                (429 / RESOURCE_EXHAUSTED)
    ├── TooManySubscribers          (429 / RESOURCE_EXHAUSTED, Retry-After)
    ├── ShuttingDown                (503 / UNAVAILABLE)
    ├── EmbedderUnavailable         (503 / UNAVAILABLE)
    ├── SpaceCapacityExhausted      SPACE_CAPACITY_EXHAUSTED (503 / UNAVAILABLE)
    ├── NotBuiltYet                 NOT_IMPLEMENTED (501 / UNIMPLEMENTED)
    ├── EngramConnectionError       SERVER_UNREACHABLE (client side; also a ConnectionError; exit 4)
    ├── GrpcTransportError          GRPC_ERROR (client side: a failed call with no Engram code)
    └── StorageError                (500 / INTERNAL)  -- never for client input
        └── StorageUnavailable      STORAGE_UNAVAILABLE (503 / UNAVAILABLE): transient, heals

Exit codes (``exit_code``): InvalidInput and below 2, NotFound and below 3,
EngramConnectionError 4, everything else 1.
"""

from __future__ import annotations

from typing import Any

# The CLI's exit codes (documented in `engram --help`; cli/output.py prints that text).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


def exit_code_for_status(http_status: int) -> int:
    """The exit code of an error class that names only its HTTP status."""
    if http_status == 404:
        return EXIT_NOT_FOUND
    if http_status in (400, 413, 422):
        return EXIT_USAGE
    return EXIT_ERROR


class EngramError(Exception):
    code = "ENGRAM_ERROR"
    http_status = 500
    grpc_status = "INTERNAL"
    exit_code = EXIT_ERROR
    default_suggestion = ""
    default_example = ""
    retry_after_seconds: int | None = None  # sent as Retry-After (REST) when set

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "exit_code" not in cls.__dict__ and "http_status" in cls.__dict__:
            cls.exit_code = exit_code_for_status(cls.http_status)

    def __init__(
        self,
        message: str,
        *,
        suggestion: str | None = None,
        example: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion if suggestion is not None else self.default_suggestion
        self.example = example if example is not None else self.default_example
        self.details = details or {}

    def to_envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "suggestion": self.suggestion,
            "example": self.example,
        }
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class InvalidInput(EngramError, ValueError):
    code = "INVALID_INPUT"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"
    exit_code = EXIT_USAGE
    default_suggestion = "Check the request against the API reference at /docs."


class InvalidMemorySpace(InvalidInput):
    code = "INVALID_MEMORY_SPACE"
    default_suggestion = (
        "Use 3-64 characters of lowercase letters, digits, '-' or '_', "
        "starting with a letter or digit."
    )
    default_example = "agent-7"


class MemorySpaceRequired(InvalidInput):
    code = "MEMORY_SPACE_REQUIRED"
    default_suggestion = (
        "This server sets require_explicit_space = true: name the space with the "
        "X-Memory-Space header, ?space= or memory_space_id (REST), or the "
        "memory_space_id field (gRPC)."
    )
    default_example = "X-Memory-Space: agent-7"


class MemorySpaceConflict(InvalidInput):
    code = "MEMORY_SPACE_CONFLICT"
    default_suggestion = "Name the memory space in one place only, or make all sources agree."
    default_example = "X-Memory-Space: agent-7 (and no different ?space= or memory_space_id)"


class DimensionMismatch(InvalidInput):
    code = "EMBEDDING_DIMENSION_MISMATCH"
    default_suggestion = "Send embeddings with the dimension this memory space was created with."


class CueTooWeak(InvalidInput):
    code = "CUE_TOO_WEAK"
    http_status = 422
    grpc_status = "FAILED_PRECONDITION"
    default_suggestion = "Give more fields (what, where, who, when) or a longer partial embedding."


class InvalidBackup(InvalidInput):
    code = "INVALID_BACKUP"
    default_suggestion = (
        "Send the file exactly as `engram space backup` or GET /api/v1/spaces/{id}/backup wrote it; "
        "take a new backup if this one was damaged."
    )
    default_example = "engram space restore agent-7.engram --as agent-7-copy"


class PayloadTooLarge(InvalidInput):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"
    default_suggestion = "Send a smaller body, or raise max_body_bytes in the server settings."


class NotFound(EngramError, LookupError):
    code = "NOT_FOUND"
    http_status = 404
    grpc_status = "NOT_FOUND"
    exit_code = EXIT_NOT_FOUND


class MemorySpaceNotFound(NotFound):
    code = "MEMORY_SPACE_NOT_FOUND"
    default_suggestion = (
        "Create it first with `engram space create <id>`, POST /api/v1/spaces "
        "{\"id\": \"<id>\"} or the CreateSpace RPC, or choose an existing space."
    )
    default_example = "engram space create agent-7"


class MemoryNotFound(NotFound):
    code = "MEMORY_NOT_FOUND"
    default_suggestion = "List memories with GET /api/v1/memories to find a valid id in this space."


class BeliefNotFound(NotFound):
    code = "BELIEF_NOT_FOUND"
    default_suggestion = "List beliefs with GET /api/v1/consolidations."


class SpaceLimitReached(EngramError):
    code = "MEMORY_SPACE_LIMIT"
    http_status = 409
    grpc_status = "RESOURCE_EXHAUSTED"
    default_suggestion = "Delete unused spaces or raise max_spaces in the server settings."


class MemorySpaceExists(EngramError):
    code = "MEMORY_SPACE_EXISTS"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"
    default_suggestion = "Restore under a new id, or pass replace=true (--replace) to replace the space."
    default_example = "engram space restore agent-7.engram --as agent-7 --replace"


class MemoryExists(EngramError):
    """remember (or a batch item) named an id this space already holds."""

    code = "MEMORY_EXISTS"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"
    default_suggestion = (
        "Choose a new id, or omit id to have one generated; to change the stored memory use "
        "PUT /api/v1/memories/{id} (replace) or PATCH (change some fields)."
    )
    default_example = 'PATCH /api/v1/memories/m-1 {"content": "the new text"}'


class SpaceUnhealthy(EngramError):
    code = "MEMORY_SPACE_UNHEALTHY"
    http_status = 503
    grpc_status = "FAILED_PRECONDITION"
    default_suggestion = "Check /api/v1/system/health for the reason; other spaces keep serving."


class SlowConsumer(EngramError):
    code = "SLOW_CONSUMER"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    default_suggestion = "Read the stream faster or narrow it with event-type filters."


class TooManySubscribers(EngramError):
    """A subscriber cap (per client, per space, or the server's) is reached; open streams go on."""

    code = "TOO_MANY_SUBSCRIBERS"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    retry_after_seconds = 5
    default_suggestion = (
        "Close streams you no longer read (or share one stream between consumers) and retry later; "
        "the limits are the server settings max_subscribers_per_client, max_subscribers_per_space "
        "and max_subscribers."
    )


class ShuttingDown(EngramError):
    code = "SHUTTING_DOWN"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    default_suggestion = "Retry against the restarted server."


class EmbedderUnavailable(EngramError):
    """The space's embedder cannot embed now (model missing, server unreachable)."""

    code = "EMBEDDER_UNAVAILABLE"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    default_suggestion = (
        "Check the embedder settings (embedder, openai_base_url, openai_api_key_env) and that the "
        "embedding server is reachable; writes are still stored and embedded once it is back."
    )


class DefaultSpaceProtected(EngramError):
    """The configured default space is where unnamed requests go, so it cannot be deleted."""

    code = "DEFAULT_SPACE_PROTECTED"
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"
    default_suggestion = (
        "Erase what it holds memory by memory (DELETE /api/v1/memories/{id}?mode=delete, the Forget "
        "RPC, or `engram memory forget`), or delete a space you created. With require_explicit_space "
        "= true no request falls back to the default space, and it may be deleted."
    )
    default_example = "engram memory forget <memory-id> --space default --mode delete"


class StorageError(EngramError):
    code = "STORAGE_ERROR"
    http_status = 500
    grpc_status = "INTERNAL"
    default_suggestion = (
        "The server could not read or write this memory space's files. Retry shortly; if it keeps "
        "failing, check the server log and disk (free space, open-file limit `ulimit -n`, permissions, "
        "read-only mount) and GET /api/v1/system/health for the space's state. Other spaces keep serving."
    )


class StorageUnavailable(StorageError):
    """A transient storage condition (too many open files, disk full, read-only, I/O error on open).

    Not damage: nothing stored is lost, the space is retried in the background
    with backoff and serves again once the condition clears, without a restart.
    """

    code = "STORAGE_UNAVAILABLE"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    default_suggestion = (
        "Retry in a few seconds: the space is reopened automatically once the condition clears "
        "(free file descriptors or disk space, or make the data directory writable). "
        "GET /health lists degraded spaces and why."
    )


class SpaceCapacityExhausted(EngramError):
    """Every loaded space is in use (streams, leases, queued writes) and the budget is full."""

    code = "SPACE_CAPACITY_EXHAUSTED"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    default_suggestion = (
        "Retry shortly: spaces are unloaded as soon as their streams and in-flight work end. "
        "To hold more spaces open at once, raise the open-file limit (ulimit -n) or "
        "max_loaded_spaces."
    )


class NotBuiltYet(EngramError):
    """A cognition operation whose engine is not available in this build."""

    code = "NOT_IMPLEMENTED"
    http_status = 501
    grpc_status = "UNIMPLEMENTED"
    default_suggestion = "Upgrade the server; this operation is not available in this build."


class EngramConnectionError(EngramError, ConnectionError):
    """Client side: the server could not be reached, or the connection failed mid-request."""

    code = "SERVER_UNREACHABLE"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    exit_code = EXIT_UNREACHABLE
    default_suggestion = "Start the server with `engram start`, or point the client at the right URL."


class GrpcTransportError(EngramError):
    """Client side: a failed gRPC call that carries no Engram error code (deadline, reset, ...).

    ``status`` is the call's ``grpc.StatusCode`` (this module does not import grpc).
    """

    code = "GRPC_ERROR"
    default_suggestion = (
        "Check that the server is running and reachable at the gRPC target; UNAVAILABLE and "
        "DEADLINE_EXCEEDED are worth retrying after a short wait."
    )

    def __init__(self, message: str, status: Any) -> None:
        super().__init__(message)
        self.grpc_status = str(status.name)
        self.status = status


class KeyNotFound(NotFound):
    code = "KEY_NOT_FOUND"
    default_suggestion = "List keys with `engram key list` or GET /api/v1/keys to find a valid key id."


class Unauthenticated(EngramError):
    """No, malformed, unknown, expired or revoked API key (SPEC §10). Never carries key material."""

    code = "UNAUTHENTICATED"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"
    default_suggestion = (
        "Send a valid API key: REST `Authorization: Bearer <key>` (or `X-API-Key: <key>`), gRPC metadata "
        "`authorization: Bearer <key>`, CLI `--api-key` / ENGRAM_API_KEY. An admin creates keys with "
        "`engram key create`; on the server's machine the first admin key is in <data_dir>/_system/admin.key."
    )
    default_example = "Authorization: Bearer egk_..."


class PermissionDenied(EngramError):
    """The key's role does not allow this operation (on a space the key does cover)."""

    code = "PERMISSION_DENIED"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"
    default_suggestion = (
        "Use a key whose role allows it: reader keys read and stream, writer keys also write, "
        "admin keys also manage spaces, keys, backups, /metrics and per-space health."
    )
    default_example = "engram key create --role writer --space agent-7"


class QuotaExceeded(PermissionDenied):
    """A write would take the space past max_memories or max_space_bytes; nothing was stored."""

    code = "QUOTA_EXCEEDED"
    grpc_status = "RESOURCE_EXHAUSTED"
    default_suggestion = (
        "Forget memories you no longer need (mode=delete), or ask the operator to raise "
        "max_memories / max_space_bytes."
    )


class RateLimited(EngramError):
    """This key sent more requests than rate_limit_per_second (with rate_limit_burst) allow."""

    code = "RATE_LIMITED"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    retry_after_seconds = 1
    default_suggestion = "Slow down and retry after the Retry-After delay (seconds)."

    def __init__(self, message: str, *, retry_after_seconds: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_seconds = max(1, int(retry_after_seconds))


def _all_subclasses(cls: type[EngramError]) -> list[type[EngramError]]:
    out: list[type[EngramError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_class_for_code(code: str) -> type[EngramError]:
    """Map a wire error code back to its class (used by the clients)."""
    for cls in _all_subclasses(EngramError):
        if cls.code == code:
            return cls
    return EngramError


def error_from_envelope(body: dict[str, Any], http_status: int | None = None) -> EngramError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    code = str(err.get("code", "ENGRAM_ERROR"))
    cls = error_class_for_code(code)
    if cls is EngramError and http_status is not None:
        cls = {400: InvalidInput, 404: NotFound}.get(http_status, EngramError)
    exc = cls(
        str(err.get("message", "")),
        suggestion=err.get("suggestion"),
        example=err.get("example"),
        details=err.get("details"),
    )
    exc.code = code
    return exc
