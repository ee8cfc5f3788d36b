"""The Host / Origin rules of the REST server (engram.api.rest.hosts), on hand-built ASGI scopes."""

from __future__ import annotations

from typing import Any

import pytest

from engram.api.rest.hosts import HostPolicy


def scope(host: str | None = "127.0.0.1:7432", method: str = "GET", origin: str | None = None,
          version: str = "1.1") -> dict[str, Any]:
    headers = []
    if host is not None:
        headers.append((b"host", host.encode("latin-1")))
    if origin is not None:
        headers.append((b"origin", origin.encode("latin-1")))
    return {"type": "http", "method": method, "http_version": version, "headers": headers}


def code(policy: HostPolicy, s: dict[str, Any]) -> str | None:
    refused = policy.check(s)
    return None if refused is None else refused[1]


@pytest.mark.parametrize("host", ["localhost", "LocalHost:80", "localhost.:7432", "127.0.0.1", "[::1]",
                                  "[::1]:7432", "10.0.0.5:7432", "memory.example:1", "a.b.corp.example"])
def test_served_hosts(host: str) -> None:
    policy = HostPolicy(("memory.example:8080", ".corp.example"), "10.0.0.5")
    assert code(policy, scope(host)) is None


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "[::1]x",
                                  "[::2]:7432", "localhost:port", "local host", "corp.example.evil",
                                  "xcorp.example", "user@localhost", ""])
def test_refused_hosts(host: str) -> None:
    policy = HostPolicy((".corp.example",), "127.0.0.1")
    assert code(policy, scope(host)) == "HOST_NOT_ALLOWED"


def test_host_count_rules() -> None:
    policy = HostPolicy((), "127.0.0.1")
    assert code(policy, scope(None)) == "INVALID_HOST_HEADER"
    assert code(policy, scope(None, version="1.0")) is None
    two = scope()
    two["headers"].append((b"host", b"127.0.0.1"))
    assert code(policy, two) == "INVALID_HOST_HEADER"


def test_origin_rules() -> None:
    policy = HostPolicy(("*",), "127.0.0.1")
    assert code(policy, scope("anything.example")) is None  # "*" opens Host ...
    for origin in ("http://evil.example", "null", "ftp://localhost", "http://[::1", "localhost"):
        assert code(policy, scope(method="POST", origin=origin)) == "ORIGIN_NOT_ALLOWED", origin
        assert code(policy, scope(method="DELETE", origin=origin)) == "ORIGIN_NOT_ALLOWED", origin
        assert code(policy, scope(method="GET", origin=origin)) is None  # reads are not checked
    for origin in ("http://localhost:3000", "https://127.0.0.1", "http://[::1]:7432"):
        assert code(policy, scope(method="PATCH", origin=origin)) is None, origin
