"""Raw-socket HTTP helpers for the hostile tier: requests a well-behaved client library would never send."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from engram.testing import EngramProcess


def address(srv: EngramProcess) -> tuple[str, int]:
    return "127.0.0.1", srv.http_port


def connect(srv: EngramProcess, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(address(srv), timeout=timeout)


def read_response(sock: socket.socket, deadline: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One complete response (Content-Length framed): status, lower-cased headers, body."""
    sock.settimeout(deadline)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def envelope_code(body: bytes) -> str:
    doc: dict[str, Any] = json.loads(body)
    err = doc["error"]
    assert {"code", "message", "suggestion", "example"} <= err.keys(), doc
    return str(err["code"])


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes; returns (seconds it took, everything read). Fails past ``seconds``."""
    t0 = time.monotonic()
    got = b""
    sock.settimeout(0.2)
    while time.monotonic() - t0 < seconds:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0, got
        if not chunk:
            return time.monotonic() - t0, got
        got += chunk
    raise AssertionError(f"the server kept the connection open over {seconds} s (read {got[:120]!r})")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))
