"""Hostile clients at the HTTP connection level, over real sockets against a real server process.

Huge and numerous headers (431, never read into memory), slowloris heads and bodies (408 / closed
within the configured timeout), idle keep-alive connections, and connection floods under a lowered
``ulimit -n`` (refused with 503 past the cap; accept errors logged rarely). In every case the other
clients keep being served. Timeouts are configured short so the tier stays within seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _rawhttp import closed_within, connect, envelope_code, open_fds, read_response, rss_kb

from engram.testing import EngramProcess

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEPALIVE = 1.5
SLACK = 3.0  # scheduling noise on a shared 2-core machine; the bound itself is the behaviour
SPACE = {"X-Memory-Space": "alpha"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    proc = EngramProcess.start(
        tmp_path_factory.mktemp("limits"),
        ["alpha"],
        {
            "http_header_timeout_seconds": HEAD_TIMEOUT,
            "http_body_timeout_seconds": BODY_TIMEOUT,
            "http_keepalive_timeout_seconds": KEEPALIVE,
        },
    )
    yield proc
    proc.kill()


def _health(srv: EngramProcess) -> int:
    return httpx.get(srv.http_url + "/health", timeout=5).status_code


def test_huge_header_is_refused_early_and_not_buffered(srv: EngramProcess) -> None:
    rss_before = rss_kb(srv.pid)
    total = 64 * 1024 * 1024
    chunk = b"a" * 65536
    with connect(srv) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        sock.setblocking(False)
        sent = 0
        answer = b""
        while sent < total and not answer:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
            with contextlib.suppress(BlockingIOError):
                answer = sock.recv(65536)
        sock.setblocking(True)
        assert answer, f"no answer after sending {sent} header bytes"
        rest = b""
        sock.settimeout(5)
        while True:  # the server shuts its side after the answer
            more = sock.recv(65536)
            if not more:
                break
            rest += more
    status_line, _, tail = (answer + rest).partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 431"), status_line
    assert envelope_code(tail.partition(b"\r\n\r\n")[2]) == "HEADERS_TOO_LARGE"
    # Answered long before the 64 MB were sent: only socket buffers' worth went out.
    assert sent < 32 * 1024 * 1024, sent
    # The head was discarded as it came, never held: RSS did not grow by anything near its size.
    assert rss_kb(srv.pid) - rss_before < 32 * 1024
    assert _health(srv) == 200


def test_many_headers_431_and_big_allowed_header_served(srv: EngramProcess) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(150))
    with connect(srv) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n")
        status, headers, body = read_response(sock)
    assert status == 431 and envelope_code(body) == "HEADERS_TOO_LARGE"
    assert "http_max_headers" in body.decode()
    assert headers["connection"] == "close"
    # The same with a large body right behind the head, in one write: nothing after the 431 is parsed.
    with connect(srv) as sock:
        sock.sendall(b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200000\r\n" + fields + b"\r\n" + b"x" * 200_000)
        status, _, body = read_response(sock)
    assert status == 431 and envelope_code(body) == "HEADERS_TOO_LARGE"
    assert _health(srv) == 200
    assert not [r for r in srv.log_records() if r.get("level") in ("error", "critical")]
    assert "Fatal error" not in srv.logs()
    # A head under the limits (40 KB of cookie, 90 fields) is served as before.
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(88))
    with connect(srv) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"c" * 40_000 + b"\r\n"
                     + fields + b"\r\n")
        status, _, _ = read_response(sock)
    assert status == 200


def test_large_bodies_are_not_mistaken_for_large_heads(srv: EngramProcess) -> None:
    # Only the head is counted: a body arriving in the same read as its head is not.
    body = b'{"content": "' + b"p" * 200_000 + b'"}'
    post = (b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    get = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"q" * 60_000 + b"\r\n\r\n"
    with connect(srv) as sock:  # one kept-alive connection: each head gets the whole allowance
        for request in (post, get, post, get):
            sock.sendall(request)
            assert read_response(sock)[0] == 200


def test_limits_hold_for_later_requests_on_a_kept_alive_connection(srv: EngramProcess) -> None:
    ok = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(srv) as sock:
        sock.sendall(ok)
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 431 and envelope_code(body) == "HEADERS_TOO_LARGE"
    with connect(srv) as sock:
        sock.sendall(ok)
        assert read_response(sock)[0] == 200
        # Start the next head well after the first one's deadline was set: its own deadline counts.
        time.sleep(HEAD_TIMEOUT / 2)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
        _, got = closed_within(sock, HEAD_TIMEOUT + SLACK)
    assert got.startswith(b"HTTP/1.1 408"), got[:100]


def test_slowloris_heads_are_cut_and_others_served(srv: EngramProcess) -> None:
    # 20 connections each dribbling a header byte every 0.2 s, one that never sends anything.
    socks = [connect(srv) for _ in range(20)]
    silent = connect(srv)
    for sock in socks:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    stop = threading.Event()

    def dribble() -> None:
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            stop.wait(0.2)

    feeder = threading.Thread(target=dribble)
    feeder.start()
    try:
        t0 = time.monotonic()
        served = [_health(srv) for _ in range(5)]  # others are served meanwhile
        assert served == [200] * 5
        _elapsed, got = closed_within(socks[0], HEAD_TIMEOUT + SLACK)
        assert got.startswith(b"HTTP/1.1 408"), got[:100]
        assert envelope_code(got.partition(b"\r\n\r\n")[2]) == "REQUEST_TIMEOUT"
        for sock in socks[1:]:
            closed_within(sock, HEAD_TIMEOUT + SLACK - (time.monotonic() - t0) + 1.0)
        _, nothing = closed_within(silent, HEAD_TIMEOUT + SLACK)
        assert nothing == b""  # a connection that sent nothing is just closed
    finally:
        stop.set()
        feeder.join()
        for sock in [*socks, silent]:
            sock.close()
    assert _health(srv) == 200


def test_slow_body_is_cut_with_408(srv: EngramProcess) -> None:
    with connect(srv) as sock:
        sock.sendall(b"POST /api/v1/memories/remember HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"X-Memory-Space: alpha\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                     b'{"content": "sl')
        _elapsed, got = closed_within(sock, BODY_TIMEOUT + SLACK)
    assert got.startswith(b"HTTP/1.1 408"), got[:100]
    assert b"http_body_timeout_seconds" in got
    # nothing half-received was stored
    listed = httpx.get(srv.http_url + "/api/v1/memories", headers=SPACE, timeout=5).json()
    assert all(m.get("content") != "sl" for m in listed.get("memories", []))


def test_idle_keepalive_connection_is_closed(srv: EngramProcess) -> None:
    with connect(srv) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        elapsed, got = closed_within(sock, KEEPALIVE + SLACK)
    assert got == b"" and elapsed >= KEEPALIVE * 0.8


def _wait_for_log(srv: EngramProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in str(r.get("msg")) for r in srv.log_records()):
        assert time.monotonic() < deadline, f"no log line with {text!r} within {timeout} s"
        time.sleep(0.05)


def _flood(srv: EngramProcess, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        try:
            out.append(connect(srv, timeout=5))
        except OSError:
            break
    return out


def _first_bytes(socks: list[socket.socket], wait: float) -> list[bytes | None]:
    """What each connection got within ``wait`` seconds: bytes, b"" (closed) or None (nothing yet)."""
    deadline = time.monotonic() + wait
    got: list[bytes | None] = [None] * len(socks)
    while time.monotonic() < deadline and any(g is None for g in got):
        for i, sock in enumerate(socks):
            if got[i] is not None:
                continue
            sock.settimeout(0.001)
            try:
                got[i] = sock.recv(4096)
            except TimeoutError:
                pass
            except OSError:
                got[i] = b""
    return got


def test_connection_flood_past_the_cap_is_refused_and_others_served(tmp_path: Path) -> None:
    srv = EngramProcess.start(tmp_path, ["alpha", "beta"],
                              {"http_header_timeout_seconds": 2.0}, nofile=256)
    try:
        started = [r for r in srv.log_records() if "HTTP limits" in str(r.get("msg"))]
        assert started and "at most 64 connections (auto: RLIMIT_NOFILE 256 / 4)" in started[0]["msg"]
        keep = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)  # an existing client
        keep.request("GET", "/health")
        assert keep.getresponse().read() and True
        log_before = srv.log_path.stat().st_size
        flood = _flood(srv, 300)
        try:
            assert len(flood) == 300
            got = _first_bytes(flood, 3.0)
            refused = [g for g in got if g and g.startswith(b"HTTP/1.1 503")]
            assert len(refused) >= 10, [g[:40] if g else g for g in got[-5:]]
            assert b"retry-after: 1" in refused[0] and b"TOO_MANY_CONNECTIONS" in refused[0]
            # everything past the cap was answered or closed at once; at most the cap is held
            assert sum(1 for g in got if g is None) <= 64
            # the process kept its descriptors: far from the limit
            assert open_fds(srv.pid) < 200
            # the existing client and another tenant are still served
            keep.request("POST", "/api/v1/memories/remember", body=b'{"content": "during the flood"}',
                         headers={"Content-Type": "application/json", "X-Memory-Space": "beta"})
            resp = keep.getresponse()
            assert resp.status == 201, resp.read()
            resp.read()
            keep.request("GET", "/health")
            assert keep.getresponse().status == 200
        finally:
            for sock in flood:
                sock.close()
        # once the flood is gone, new connections are served again
        deadline = time.monotonic() + 10
        while True:
            try:
                if _health(srv) == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "new connections were not served again after the flood"
            time.sleep(0.2)
        refusals = [r for r in srv.log_records() if "connection refused" in str(r.get("msg"))]
        assert 1 <= len(refusals) <= 3  # rate-limited: one line per 10 s, with a count
        # the burst never ran the process out of descriptors (accepts are batched small, then refused)
        assert not [r for r in srv.log_records() if "accept() failed" in str(r.get("msg"))]
        assert srv.log_path.stat().st_size - log_before < 16 * 1024
        keep.close()
    finally:
        srv.kill()


def test_descriptor_exhaustion_logs_accept_errors_rarely(tmp_path: Path) -> None:
    # A cap above what ulimit -n allows: accept() itself runs out of descriptors (EMFILE).
    srv = EngramProcess.start(tmp_path, ["alpha"], {"http_max_connections": 1000,
                                                    "http_header_timeout_seconds": 3.0}, nofile=160)
    try:
        keep = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
        keep.request("GET", "/health")
        assert keep.getresponse().read()
        log_before = srv.log_path.stat().st_size
        flood = _flood(srv, 400)
        try:
            # accept() fails (EMFILE) as soon as the flood arrives: wait for its log line, then one
            # more of asyncio's once-a-second accept retries, which must fail again without a line
            _wait_for_log(srv, "accept() failed", 10)
            time.sleep(1.1)
            keep.request("GET", "/health")
            assert keep.getresponse().status == 200
        finally:
            for sock in flood:
                sock.close()
        errors = [r for r in srv.log_records() if "accept() failed" in str(r.get("msg"))]
        assert 1 <= len(errors) <= 2, errors
        assert "Too many open files" in errors[0]["msg"]
        assert srv.log_path.stat().st_size - log_before < 16 * 1024
        keep.close()
    finally:
        srv.kill()
