"""Which ``Host`` and ``Origin`` a request may carry: the DNS-rebinding and cross-site guards.

DNS rebinding: a web page on ``evil.example`` re-resolves its own name to
127.0.0.1 and then reads ``http://evil.example:7432/api/v1/...`` as a
same-origin page; the only trace is the ``Host`` header. So a request is served
only when its Host names this server: a loopback name (``localhost``,
``127.0.0.1``, ``[::1]``), the bind address (``host``), or an entry of
``allowed_hosts`` (``name``, or ``.name`` for the name and its subdomains); any
port. ``allowed_hosts = ["*"]`` turns the Host check off (behind a proxy that
rewrites Host). Other Hosts get 421 ``HOST_NOT_ALLOWED``. An HTTP/1.1 request
without Host, or with two, is a 400 (RFC 9112 §3.2); HTTP/1.0 may omit it.

Cross-site requests: a page on another origin can still *send* a request a
browser considers "simple" (a form POST, or a body-less ``POST
/api/v1/consolidate?space=...``) though it cannot read the answer. So a
state-changing request (POST, PUT, PATCH, DELETE) that carries an ``Origin``
is served only when that origin's host is one of the names above (``*`` does
not count here: it opens Host, never Origin); otherwise 403
``ORIGIN_NOT_ALLOWED``. Requests without ``Origin`` (the CLI, the SDKs, curl)
are not affected. No CORS headers are ever sent, so browsers still keep
other origins from reading answers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope

LOOPBACK = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CACHE_MAX = 64  # distinct raw Host values remembered as allowed (bounded: a client picks them)


class HostPolicy:
    """``check(scope) -> None`` when the request may be served, else ``(status, code, message, hint)``."""

    def __init__(self, allowed_hosts: tuple[str, ...], bind_host: str) -> None:
        self.any_host = "*" in allowed_hosts
        names = {*LOOPBACK, _normal(bind_host)}
        suffixes: set[str] = set()
        for raw in allowed_hosts:
            entry = _normal(raw)
            if entry == "*" or not entry:
                continue
            entry = _normal(_host_name(raw.strip()) or entry)  # "name:port" -> "name" (any port is served)
            if entry.startswith("."):
                suffixes.add(entry)
                names.add(entry[1:])
            else:
                names.add(entry)
        names.discard("")
        self.names = frozenset(names)
        self.suffixes = tuple(sorted(suffixes))
        self._ok: set[bytes] = set()  # raw Host values already found allowed (the fast path)

    def describe(self) -> str:
        listed = sorted(self.names) + [f"*{s}" for s in self.suffixes]
        hosts = "any Host (allowed_hosts = *)" if self.any_host else "Host " + ", ".join(listed)
        return f"serving {hosts}; state-changing requests with an Origin only from " + ", ".join(listed)

    def name_allowed(self, name: str) -> bool:
        name = _normal(name)
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def check(self, scope: Scope) -> tuple[int, str, str, str] | None:
        host: bytes | None = None
        hosts = 0
        origin: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
                hosts += 1
            elif key == b"origin":
                origin = value
        if hosts != 1 and (hosts > 1 or scope.get("http_version") != "1.0"):
            return (400, "INVALID_HOST_HEADER",
                    f"an HTTP/1.1 request needs exactly one Host header; this one has {hosts}",
                    "Send one Host header naming this server, e.g. Host: 127.0.0.1:7432.")
        if host is not None and not self.any_host and host not in self._ok:
            name = _host_name(host.decode("latin-1"))
            if name is None or not self.name_allowed(name):
                shown = host.decode("latin-1")[:100]
                return (421, "HOST_NOT_ALLOWED",
                        f"this server does not answer for Host {shown!r} (a DNS-rebinding guard)",
                        "Use http://127.0.0.1:<port> or http://localhost:<port>, or add the name the "
                        "server is reached by to allowed_hosts.")
            if len(self._ok) < _CACHE_MAX:
                self._ok.add(host)
        if origin is not None and scope["method"] in STATE_CHANGING and not self._origin_allowed(origin):
            shown = origin.decode("latin-1")[:100]
            return (403, "ORIGIN_NOT_ALLOWED",
                    f"{scope['method']} from origin {shown!r} is refused (a cross-site request guard)",
                    "Call the API from a program (no Origin header) or from a page served by an allowed "
                    "host; add that page's host name to allowed_hosts.")
        return None

    def _origin_allowed(self, origin: bytes) -> bool:
        text = origin.decode("latin-1").strip()
        if text == "null":
            return False
        try:
            parts = urlsplit(text)
            name = parts.hostname
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and name is not None and self.name_allowed(name)


def _normal(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name


def _host_name(value: str) -> str | None:
    """The name part of a Host header value (``name[:port]``, ``[v6][:port]``), or None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        rest = value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return value[1:end]
    name, sep, port = value.rpartition(":")
    if not sep:
        name = value
    elif not port.isdigit():
        return None
    if not name or any(c in name for c in "/@ \t\\?#[]"):
        return None
    return name
