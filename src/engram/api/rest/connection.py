"""HTTP connection limits, enforced where the bytes arrive: a subclass of uvicorn's httptools protocol.

uvicorn (httptools, the ``auto`` choice here) reads a request head of any
size (a 128 MB header was read and answered), never times out a connection
that sends nothing or half a request, and accepts every connection until the
process runs out of file descriptors. This module adds, per connection:

* **Head size** (``http_max_header_bytes``): bytes of the request line plus
  headers are counted as they arrive, before the parser buffers them; past the
  limit the client gets 431 ``HEADERS_TOO_LARGE`` and the rest is discarded
  unread (never held in memory), then the connection closes.
* **Header count** (``http_max_headers``): more fields than that is a 431 too.
* **Head timeout** (``http_header_timeout_seconds``): a request head must be
  complete this long after the connection opened (or after its first byte on a
  kept-alive connection). A half-sent head gets 408 ``REQUEST_TIMEOUT``; a
  connection that sent nothing is closed silently.
* **Body timeout** (``http_body_timeout_seconds``): a body must be complete
  this long after its head. Past it: 408 (the route sees a disconnect).
* **Keep-alive idle** (``http_keepalive_timeout_seconds``): uvicorn's own timer,
  made a setting.
* **Connection cap** (``http_max_connections``, from ``RLIMIT_NOFILE`` by
  default): a connection over the cap is answered at once with 503
  ``TOO_MANY_CONNECTIONS`` and ``Retry-After: 1``, its write side is shut, and
  it is closed when the client closes or after one second. At most ``cap / 4``
  such refusals linger at a time; past that a connection is closed at once,
  unanswered. So HTTP holds at most ``1.25 * cap`` descriptors (plus, for a
  moment, one accept batch: see ``server.ACCEPT_BATCH``), and the rest of the
  process (space files, gRPC) keeps its own.

Answers written here are complete HTTP/1.1 responses carrying the one error
envelope, with ``Connection: close``. The normal path pays one integer
comparison per read and a clock read per request head, nothing per header.

Accept errors (EMFILE) are handled by :func:`accept_error_handler`, installed
on the event loop by the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ...descriptors import DescriptorBudget
from ...settings import Settings
from .errors import envelope_bytes

log = logging.getLogger("engram.rest")

REFUSE_LINGER_SECONDS = 1.0  # a refused client has this long to read its 503 before we close
DISCARD_LINGER_SECONDS = 2.0  # after a 431/408, unread bytes are discarded this long, then we close
LOG_EVERY_SECONDS = 10.0  # refusals and accept errors are logged at most this often


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_connections: int
    auto_connections: bool  # max_connections was derived, not configured
    nofile: int

    @property
    def refuse_backlog(self) -> int:
        """Refused connections allowed to linger (reading their 503) at once."""
        return max(4, self.max_connections // 4)

    @classmethod
    def from_settings(cls, settings: Settings, descriptors: DescriptorBudget | None = None) -> HttpLimits:
        """The cap is the HTTP share of the process's descriptor budget (engram.descriptors), or
        ``http_max_connections`` when set; ``descriptors`` is the service's (derived here if None)."""
        budget = descriptors or DescriptorBudget.from_settings(settings)
        nofile, cap, auto = budget.nofile, budget.http_connections, budget.http_connections_derived
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            keepalive_timeout=settings.http_keepalive_timeout_seconds,
            max_connections=cap,
            auto_connections=auto,
            nofile=nofile,
        )

    def describe(self) -> str:
        # The HTTP share of the descriptor budget (engram.descriptors): a quarter of the limit.
        how = f"auto: RLIMIT_NOFILE {self.nofile} / 4" if self.auto_connections else "configured"
        return (
            f"HTTP limits: at most {self.max_connections} connections ({how}), then 503; "
            f"request head <= {self.max_header_bytes} bytes and {self.max_headers} fields, else 431; "
            f"head within {self.header_timeout:g} s and body within {self.body_timeout:g} s, else 408; "
            f"keep-alive idle {self.keepalive_timeout:g} s"
        )


class RateLimitedLog:
    """Logs the first event, then at most one summary line (with a count) per ``every`` seconds."""

    __slots__ = ("count", "every", "last", "level", "text")

    def __init__(self, text: str, level: int = logging.WARNING, every: float = LOG_EVERY_SECONDS) -> None:
        self.text = text
        self.level = level
        self.every = every
        self.last = -every
        self.count = 0

    def note(self, detail: str = "") -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            log.log(self.level, "%s (%d in the last %.0f s)%s", self.text, self.count, self.every,
                    f": {detail}" if detail else "")
            self.last = now
            self.count = 0


class Gate:
    """The connection counts of one server, shared by its connections."""

    __slots__ = ("invalid", "limits", "lingering", "open", "refusals")

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open = 0  # connections being served
        self.lingering = 0  # refused connections still reading their 503
        self.refusals = RateLimitedLog(
            f"HTTP connection refused: {limits.max_connections} connections open (http_max_connections)"
        )
        self.invalid = RateLimitedLog("invalid HTTP request received (answered 400)")


def _response(status: int, reason: str, code: str, message: str, suggestion: str, example: str,
               extra: bytes = b"") -> bytes:
    body = envelope_bytes(code, message, suggestion, example)
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n".encode()
        + extra + b"\r\n" + body
    )


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above. Subclassed per server by :func:`protocol_for`."""

    gate: ClassVar[Gate]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.gate.limits
        self.limits = limits
        self.timeout_keep_alive = limits.keepalive_timeout  # type: ignore[assignment]  # float is fine
        # Bytes the request head being read may still use; -1 while a body or response is under way.
        self.head_left = limits.max_header_bytes
        self.heads = 0  # request heads completed on this connection
        # The head or body being read must be complete by loop time `due` (0.0: nothing pending).
        # One watchdog timer per connection checks it; it is re-armed only when it fires early, so
        # a request on a kept-alive connection costs a clock read, not a timer (see _watch).
        self.due = 0.0
        self.watchdog: TimerHandle | None = None
        self.linger: TimerHandle | None = None  # closes an answered or refused connection
        self.counted = False  # this connection holds one of the gate's slots
        self.refused = False  # over the cap: answered 503 and lingering
        self.discarding = False  # answered and closing: incoming bytes are dropped

    # -- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gate = self.gate
        if gate.open >= self.limits.max_connections:
            self._refuse(transport)
            return
        gate.open += 1
        self.counted = True
        super().connection_made(transport)
        self._due_in(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.due = 0.0
        for timer in (self.watchdog, self.linger):
            if timer is not None:
                timer.cancel()
        self.watchdog = self.linger = None
        if self.refused:
            self.gate.lingering -= 1
            self.refused = False
            return
        if self.counted:
            self.gate.open -= 1
            self.counted = False
        super().connection_lost(exc)

    def eof_received(self) -> None:
        # A refused or answered client that closed its side: close ours now (frees the descriptor).
        if self.refused or self.discarding:
            self.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        gate = self.gate
        self.transport = transport
        gate.refusals.note()
        if gate.lingering >= self.limits.refuse_backlog:
            transport.abort()  # refusals themselves must not eat the descriptors
            return
        gate.lingering += 1
        self.refused = True
        self.discarding = True
        transport.write(_REFUSED)
        if transport.can_write_eof():
            transport.write_eof()
        self.linger = self.loop.call_later(REFUSE_LINGER_SECONDS, transport.close)

    # -- reading -----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        left = self.head_left
        if left >= 0:  # reading a request head: count it before the parser buffers it
            if not self.due:  # first bytes of a request on a kept-alive connection
                self._due_in(self.limits.header_timeout)
            if len(data) > left:
                heads = self.heads
                self._feed(data[:left])
                if self.heads != heads or self.discarding or self.transport.is_closing():
                    data = data[left:]  # the head ended inside the allowance: go on with the rest
                else:
                    self._answer_and_discard(_HEAD_TOO_LARGE)
                    return
            else:
                self.head_left = left - len(data)
        self._feed(data)
        if self.head_left < 0 and not self.due and not self.discarding:
            # The head is in and the body is still coming: bound how long it may take.
            self._due_in(self.limits.body_timeout)

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, with the parser errors this module raises told apart."""
        if not data or self.discarding or self.transport.is_closing():
            return  # answered already (the parser may be in its error state): nothing more to parse
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Engram serves no upgrades (uvicorn runs with ws="none"): the request was handed to
            # the app as plain HTTP; the parser stops here, so the connection ends after the answer.
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                self._answer_and_discard(_TOO_MANY_HEADERS)
                return
            msg = "Invalid HTTP request received."
            self.gate.invalid.note(str(exc))  # a scanner must not be able to flood the log
            self.send_400_response(msg)

    # -- parser callbacks ----------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self.head_left = -1
        self.heads += 1
        self.due = 0.0
        if len(self.headers) > self.limits.max_headers:
            raise _TooManyHeaders
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.due = 0.0
        self.head_left = self.limits.max_header_bytes  # the next bytes are the next request's head
        super().on_message_complete()

    # -- deadlines -----------------------------------------------------------------------------------
    def _due_in(self, seconds: float) -> None:
        due = self.loop.time() + seconds
        self.due = due
        dog = self.watchdog
        if dog is None or dog.when() > due:  # (an earlier watchdog re-arms itself when it fires)
            if dog is not None:
                dog.cancel()
            self.watchdog = self.loop.call_at(due, self._watch)

    def _watch(self) -> None:
        self.watchdog = None
        due = self.due
        if not due or self.discarding or self.transport.is_closing():
            return  # nothing pending: the next head or body arms it again
        if self.loop.time() < due:  # armed for an earlier request that finished in time
            self.watchdog = self.loop.call_at(due, self._watch)
            return
        self.due = 0.0
        if self.head_left >= 0:
            self._head_timed_out()
        else:
            self._body_timed_out()

    def _head_timed_out(self) -> None:
        if self.head_left == self.limits.max_header_bytes:  # nothing of a request arrived: just close
            self.transport.close()
            return
        self._answer_and_discard(_HEAD_TIMEOUT)

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        if cycle.response_started:  # the route answered without waiting for the body: end it
            self.transport.close()
            return
        # The route is waiting in receive(): it sees a disconnect and gives up, writing nothing.
        cycle.disconnected = True
        cycle.message_event.set()
        self._answer_and_discard(_BODY_TIMEOUT)

    def _answer_and_discard(self, response: bytes) -> None:
        """Write a final answer, shut our side, drop what the client still sends, close soon."""
        self.due = 0.0
        self.discarding = True
        self.flow.resume_reading()  # keep reading (and dropping) so the client sees the answer, not a reset
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.linger = self.loop.call_later(DISCARD_LINGER_SECONDS, self.transport.close)


class _TooManyHeaders(Exception):
    """Raised from a parser callback to stop parsing a head with too many fields."""


def accept_error_handler() -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler: accept errors are counted and logged rarely, the rest as usual.

    asyncio stops accepting for a second after EMFILE/ENFILE/ENOBUFS/ENOMEM, but logs a traceback
    each time; one line per 10 s with a count says the same.
    """
    accept_errors = RateLimitedLog(
        "accept() failed: out of file descriptors or memory; new connections wait in the listen backlog "
        "(raise ulimit -n, or lower http_max_connections)", logging.ERROR)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            accept_errors.note(str(context.get("exception", "")))
            return
        loop.default_exception_handler(context)

    return handler


def protocol_for(limits: HttpLimits) -> type[EdgeProtocol]:
    """A protocol class bound to one server's gate (uvicorn takes a class, not an instance)."""
    return type("EngramHttpProtocol", (EdgeProtocol,), {"gate": Gate(limits)})


_REFUSED = _response(
    503, "Service Unavailable", "TOO_MANY_CONNECTIONS",
    "the server has reached its limit of open HTTP connections (http_max_connections)",
    "Retry after a second, reuse keep-alive connections, or raise http_max_connections (and ulimit -n).",
    "wait Retry-After seconds, then send the same request again",
    b"retry-after: 1\r\n",
)
_HEAD_TOO_LARGE = _response(
    431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE",
    "the request line and headers exceed the server's limit (http_max_header_bytes)",
    "Send smaller headers (long cookies or tokens?), or raise http_max_header_bytes.",
    "GET /api/v1/memories HTTP/1.1 with Host and X-Memory-Space: a head of a few hundred bytes",
)
_TOO_MANY_HEADERS = _response(
    431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE",
    "the request has more header fields than the server accepts (http_max_headers)",
    "Send fewer header fields, or raise http_max_headers.",
    "GET /api/v1/memories HTTP/1.1 with Host and X-Memory-Space: a handful of fields",
)
_HEAD_TIMEOUT = _response(
    408, "Request Timeout", "REQUEST_TIMEOUT",
    "the request line and headers did not arrive in time (http_header_timeout_seconds)",
    "Send the whole request head at once; raise http_header_timeout_seconds for very slow links.",
    "write the request line and all headers in one send, then the body",
)
_BODY_TIMEOUT = _response(
    408, "Request Timeout", "REQUEST_TIMEOUT",
    "the request body did not arrive in time (http_body_timeout_seconds)",
    "Send the body right after the headers; raise http_body_timeout_seconds for very slow links.",
    "send Content-Length bytes of body right after the headers",
)
