"""Small REST edges a hostile or sloppy client hits: an empty space header, wrong methods, OPTIONS."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _rawhttp import connect, envelope_code, read_response

from engram.testing import EngramProcess

API = "/api/v1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    proc = EngramProcess.start(tmp_path_factory.mktemp("edges"), ["alpha"])
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def http(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, timeout=10) as client:
        yield client


def _count(http: httpx.Client, space: str) -> int:
    return int(http.get(f"{API}/spaces/{space}").json()["memory_count"])


def test_empty_space_header_is_invalid_not_absent(srv: EngramProcess, http: httpx.Client) -> None:
    before = _count(http, "default")
    for name in ("X-Memory-Space", "X-Engram-Memory-Space", "X-Memory-Space-Id"):
        resp = http.post(f"{API}/memories/remember", json={"content": "lost"}, headers={name: ""})
        assert resp.status_code == 400, (name, resp.text)
        assert envelope_code(resp.content) == "INVALID_MEMORY_SPACE"
        assert name in resp.json()["error"]["message"]
        assert "deprecation" not in resp.headers  # no fallback to the default space happened
    # Raw: nothing, or only blanks, after the colon (client libraries refuse to send the latter)
    for value in (b"", b"   ", b" \t "):
        with connect(srv) as sock:
            sock.sendall(b"GET /api/v1/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Memory-Space:" + value
                         + b"\r\n\r\n")
            status, _, body = read_response(sock)
        assert status == 400 and envelope_code(body) == "INVALID_MEMORY_SPACE", value
    for query in ("space=", "space=%20%20"):
        resp = http.post(f"{API}/memories/remember?{query}", json={"content": "lost"})
        assert resp.status_code == 400 and envelope_code(resp.content) == "INVALID_MEMORY_SPACE", query
        assert "?space=" in resp.json()["error"]["message"]
    assert _count(http, "default") == before
    # absent is still absent: the documented fallback (with its deprecation header)
    resp = http.get(f"{API}/memories")
    assert resp.status_code == 200 and resp.headers.get("deprecation") == "true"


def test_405_lists_every_method_of_the_path(http: httpx.Client) -> None:
    cases = {
        f"{API}/spaces": ("PUT", {"GET", "POST"}),
        f"{API}/spaces/alpha": ("PATCH", {"GET", "DELETE"}),
        f"{API}/memories/m-1": ("POST", {"GET", "DELETE", "PUT", "PATCH"}),
        # also matches /memories/{id}: DELETE /memories/recall forgets a memory named "recall"
        f"{API}/memories/recall": ("TRACE", {"GET", "POST", "DELETE", "PUT", "PATCH"}),
        f"{API}/consolidate": ("GET", {"POST"}),
        f"{API}/episodes/remember": ("DELETE", {"POST"}),
    }
    for path, (method, expected) in cases.items():
        resp = http.request(method, path, headers={"X-Memory-Space": "alpha"})
        assert resp.status_code == 405, (method, path, resp.status_code)
        assert envelope_code(resp.content) == "METHOD_NOT_ALLOWED"
        allow = {m.strip() for m in resp.headers["allow"].split(",")}
        assert expected | {"OPTIONS"} <= allow, (path, allow)
        assert method not in allow


def test_options_answers_allow(http: httpx.Client) -> None:
    resp = http.options(f"{API}/spaces")
    assert resp.status_code == 204
    assert {m.strip() for m in resp.headers["allow"].split(",")} == {"GET", "POST", "OPTIONS"}
    resp = http.options(f"{API}/spaces/alpha")
    assert resp.status_code == 204
    assert {"GET", "DELETE", "OPTIONS"} <= {m.strip() for m in resp.headers["allow"].split(",")}
    resp = http.options(f"{API}/no-such-route")
    assert resp.status_code == 404 and envelope_code(resp.content) == "ROUTE_NOT_FOUND"
