"""What the sync and async HTTP clients share: request bodies, error translation, SSE parsing.

Foreign errors are translated once, here, at the boundary:

    httpx.TransportError (connect refused, DNS, timeout, dropped connection)
        -> EngramConnectionError        (code SERVER_UNREACHABLE; also a ConnectionError)
    HTTP 4xx/5xx with the error envelope {"error": {code, message, suggestion, example}}
        -> the engine's own class via errors.error_from_envelope (MemorySpaceNotFound, ...)
    HTTP 4xx/5xx without an envelope (a proxy page, a bare 502)
        -> the class for the status (InvalidInput for 400, NotFound for 404, else EngramError)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ..core.models import SpaceDescriptor, embedding_to_wire
from ..errors import EngramConnectionError, EngramError, InvalidInput, error_from_envelope

API = "/api/v1"
SPACE_HEADER = "X-Memory-Space"
DEFAULT_TIMEOUT = 30.0
DEFAULT_URL = "http://127.0.0.1:7432"
#: query parameters as httpx accepts them (repeated keys allowed)
Query = list[tuple[str, str | int | float | bool | None]]
STREAMS = ("activities", "memories", "consolidation")


class CreatedSpace(SpaceDescriptor):
    """A space descriptor from ``create_space``; ``created`` is False when it already existed."""

    created: bool = True


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: ``event`` is its type, ``id`` the space LSN, ``data`` the decoded JSON."""

    event: str
    data: Any
    id: str | None = None

    @property
    def lsn(self) -> int | None:
        try:
            return int(self.id) if self.id is not None else None
        except ValueError:
            return None


def segment(value: str) -> str:
    """A path segment, percent-encoded so an id can never change the route."""
    return quote(value, safe="")


def auth_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """The client's default headers, with ``Authorization: Bearer <api_key>`` when a key is given."""
    out = dict(headers or {})
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def space_headers(space: str | None) -> dict[str, str]:
    return {SPACE_HEADER: space} if space else {}


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def body(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields that were given (None means: let the server default it)."""
    return {k: jsonable(v) for k, v in fields.items() if v is not None}


def batch_items(memories: Iterable[Mapping[str, Any] | BaseModel]) -> list[dict[str, Any]]:
    """The ``memories`` of a batch body: dicts as given (None values dropped), models as set."""
    out: list[dict[str, Any]] = []
    for item in memories:
        if isinstance(item, BaseModel):
            out.append(item.model_dump(mode="json", exclude_unset=True))
        else:
            out.append({k: jsonable(v) for k, v in item.items() if v is not None})
    return out


def params(**fields: Any) -> Query:
    """Query parameters; lists become repeated keys, booleans ``true``/``false``."""
    out: Query = []
    for key, value in fields.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            v = jsonable(v)
            out.append((key, ("true" if v else "false") if isinstance(v, bool) else str(v)))
    return out


def translate_transport_error(exc: httpx.TransportError, base_url: str) -> EngramConnectionError:
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        message = f"cannot reach the Engram server at {base_url}: {exc or type(exc).__name__}"
    elif isinstance(exc, httpx.TimeoutException):
        message = f"the Engram server at {base_url} did not answer in time ({type(exc).__name__})"
    else:
        message = f"the connection to the Engram server at {base_url} failed: {exc or type(exc).__name__}"
    return EngramConnectionError(message, example="engram start --data-dir ./engram-data")


def error_from_response(resp: httpx.Response) -> EngramError:
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        exc = error_from_envelope(payload, resp.status_code)
    else:
        text = resp.text.strip()[:300] or resp.reason_phrase
        exc = error_from_envelope(
            {"error": {"code": _code_for_status(resp.status_code),
                       "message": f"HTTP {resp.status_code} from {resp.request.url.path}: {text}"}},
            resp.status_code,
        )
    exc.details.setdefault("http_status", resp.status_code)
    return exc


def _code_for_status(status: int) -> str:
    return {400: "INVALID_INPUT", 404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE"}.get(status, "ENGRAM_ERROR")


def deprecation_warning(resp: httpx.Response) -> str | None:
    """The server's default-space fallback notice, if this response carries one."""
    if "deprecation" in resp.headers or "warning" in resp.headers:
        return resp.headers.get("warning") or "the server used its default memory space (deprecated)"
    return None


class SSEParser:
    """Incremental text/event-stream parser (WHATWG rules; comments are heartbeats and skipped)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        #: the WHATWG "last event ID": persists across events; send it as Last-Event-ID to resume
        self.last_event_id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
            self.last_event_id = value
        return None

    def _dispatch(self) -> ServerEvent | None:
        if not self._data:
            self._event, self._id = "", None
            return None
        raw = "\n".join(self._data)
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw
        # ``id`` is this event's own id (the space LSN), None for lagged/end notices
        event = ServerEvent(event=self._event or "message", data=data, id=self._id)
        self._event, self._data, self._id = "", [], None
        return event


def stream_params(types: Iterable[str] | None, extra: Mapping[str, Any]) -> Query:
    joined = ",".join(types) if types else None
    return params(types=joined, **extra)


def embedder(provider: str | Mapping[str, Any] | BaseModel | None,
             model: str | None = None) -> dict[str, Any] | None:
    """The ``embedder`` of a create-space body: ``"hash"`` (+ ``model``), ``{"provider", "model"}``
    or an :class:`~engram.core.models.EmbedderChoice`; None lets the server choose."""
    if provider is None:
        if model is not None:
            raise InvalidInput("model= needs an embedder provider",
                               example='create_space("agent-7", embedder="local", model="all-MiniLM-L6-v2")')
        return None
    if isinstance(provider, BaseModel):
        given: dict[str, Any] = provider.model_dump(exclude_none=True)
    elif isinstance(provider, str):
        given = {"provider": provider}
    else:
        given = dict(provider)
    if model is not None:
        given["model"] = model
    return {k: v for k, v in given.items() if v is not None}


def floats(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def vector(values: Sequence[float] | None) -> str | None:
    """An embedding for a request body: base64 of little-endian float32 (docs/rest.md, "Vectors
    on the wire"), a quarter of the bytes of a JSON array and no number parsing on the server.
    Accepts any sequence of numbers (a list, a numpy array)."""
    return None if values is None else embedding_to_wire([float(v) for v in values])


def strings(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else [str(v) for v in values]


def mapping(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Metadata: string keys; values keep their JSON types (string, number, boolean, null)."""
    return None if values is None else {str(k): v for k, v in values.items()}


def filter_body(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A metadata filter for a JSON body."""
    return None if value is None else dict(value)


def filter_json(value: Mapping[str, Any] | None) -> str | None:
    """A metadata filter for a query string (JSON text)."""
    return None if value is None else json.dumps(dict(value), separators=(",", ":"))


def stream_path(kind: str) -> str:
    if kind not in STREAMS:
        raise ValueError(f"stream kind must be one of {STREAMS}, got {kind!r}")
    return f"{API}/stream/{kind}"


def check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        raise error_from_response(resp)
    notice = deprecation_warning(resp)
    if notice:
        warnings.warn(notice, DeprecationWarning, stacklevel=5)
    return resp


class Base:
    """What both HTTP clients share: the base URL and the space they were given."""

    def __init__(self, base_url: str, space: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.space = space or None

    def _space_or(self, space_id: str | None) -> str:
        sid = space_id or self.space
        if not sid:
            raise ValueError("name a space: get_space('agent-7'), or construct the client with space=")
        return sid

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, space={self.space!r})"
