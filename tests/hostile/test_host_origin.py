"""DNS rebinding and cross-site writes, against a real server: the Host allow-list and the Origin check.

A page on ``evil.example`` that rebinds its name to 127.0.0.1 sends ``Host: evil.example``; a page
on any other origin can send a body-less ``POST /api/v1/consolidate?space=...``. Neither may be
served. Clients that send no Origin (CLI, SDKs) and loopback Hosts are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _rawhttp import connect, envelope_code, read_response

from engram.testing import EngramProcess

API = "/api/v1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    proc = EngramProcess.start(tmp_path_factory.mktemp("hosts"), ["alpha", "beta"])
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def http(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, timeout=10) as client:
        client.post(f"{API}/memories/remember", json={"content": "the secret is in the blue box"},
                    headers={"X-Memory-Space": "alpha"}).raise_for_status()
        yield client


def _count(http: httpx.Client, space: str) -> int:
    return int(http.get(f"{API}/spaces/{space}").json()["memory_count"])


def test_rebinding_host_is_refused(srv: EngramProcess, http: httpx.Client) -> None:
    for host in ("evil.example", f"evil.example:{srv.http_port}", "127.0.0.1.evil.example", "localhostx"):
        resp = http.get(f"{API}/memories", params={"space": "alpha"}, headers={"Host": host})
        assert resp.status_code == 421, (host, resp.status_code)
        assert envelope_code(resp.content) == "HOST_NOT_ALLOWED"
        assert "blue box" not in resp.text
    # not even liveness or the space list answers for a foreign name
    assert http.get("/health", headers={"Host": "evil.example"}).status_code == 421
    assert http.get(f"{API}/spaces", headers={"Host": "evil.example"}).status_code == 421


def test_loopback_hosts_are_served(srv: EngramProcess, http: httpx.Client) -> None:
    port = srv.http_port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "LOCALHOST:1"):
        resp = http.get(f"{API}/memories", params={"space": "alpha"}, headers={"Host": host})
        assert resp.status_code == 200, (host, resp.text)
        assert "blue box" in resp.text


def test_host_header_must_be_single_on_http11(srv: EngramProcess) -> None:
    with connect(srv) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 400 and envelope_code(body) == "INVALID_HOST_HEADER"
    with connect(srv) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 400 and envelope_code(body) == "INVALID_HOST_HEADER"
    with connect(srv) as sock:  # HTTP/1.0 may omit it
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        status, _, _ = read_response(sock)
    assert status == 200


def test_cross_origin_writes_are_refused(srv: EngramProcess, http: httpx.Client) -> None:
    before = _count(http, "alpha")
    for origin in ("http://evil.example", f"http://evil.example:{srv.http_port}", "null",
                   "https://localhost.evil.example"):
        h = {"Origin": origin}
        resp = http.post(f"{API}/consolidate", params={"space": "alpha"}, headers=h)  # no body at all
        assert resp.status_code == 403, (origin, resp.status_code)
        assert envelope_code(resp.content) == "ORIGIN_NOT_ALLOWED"
        resp = http.post(f"{API}/memories/remember", json={"content": "planted"},
                         headers={**h, "X-Memory-Space": "alpha"})
        assert resp.status_code == 403
        assert http.delete(f"{API}/spaces/beta", headers=h).status_code == 403
    assert _count(http, "alpha") == before
    assert http.get(f"{API}/spaces/beta").status_code == 200  # not deleted
    # a read with a foreign Origin is answered, but no CORS header lets the page read it
    resp = http.get(f"{API}/memories", params={"space": "alpha"}, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 200
    assert not any(k.lower().startswith("access-control-") for k in resp.headers)


def test_same_origin_and_originless_writes_work(srv: EngramProcess, http: httpx.Client) -> None:
    port = srv.http_port
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"https://[::1]:{port}"):
        resp = http.post(f"{API}/memories/remember", json={"content": f"from {origin}"},
                         headers={"Origin": origin, "X-Memory-Space": "alpha"})
        assert resp.status_code == 201, (origin, resp.text)
    assert http.post(f"{API}/consolidate", params={"space": "alpha"}).status_code == 200
    resp = http.post(f"{API}/consolidate", params={"space": "alpha"}, headers={"Origin": f"http://localhost:{port}"})
    assert resp.status_code == 200


def test_allowed_hosts_setting(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("allowed")
    cases = (("memory.example", 200), ("api.corp.example:443", 200), ("corp.example", 200),
             ("evilcorp.example", 421), ("localhost", 200))
    with (EngramProcess.start(root, ["alpha"], {"allowed_hosts": "memory.example,.corp.example"}) as srv,
          httpx.Client(base_url=srv.http_url, timeout=10) as http):
        for host, status in cases:
            assert http.get("/health", headers={"Host": host}).status_code == status, host
        h = {"Origin": "https://app.corp.example", "X-Memory-Space": "alpha"}
        assert http.post(f"{API}/memories/remember", json={"content": "x"}, headers=h).status_code == 201
    with (EngramProcess.start(root / "any", ["alpha"], {"allowed_hosts": "*"}) as srv,
          httpx.Client(base_url=srv.http_url, timeout=10) as http):
        assert http.get("/health", headers={"Host": "anything.example"}).status_code == 200
        # "*" opens Host only: a foreign Origin still cannot write
        h = {"Origin": "http://anything.example", "X-Memory-Space": "alpha"}
        assert http.post(f"{API}/memories/remember", json={"content": "x"}, headers=h).status_code == 403
