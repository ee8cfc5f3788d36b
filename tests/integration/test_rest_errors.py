"""One error envelope for every kind of REST error, against a real server; never a 500, never a
dropped connection: malformed JSON, wrong types, wrong embedding length, unknown enum values and
fields, unknown routes and methods, non-JSON bodies, and the body-size limit (incl. chunked)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

API = "/api/v1"
REMEMBER = f"{API}/memories/remember"
SPACE = {"X-Memory-Space": "alpha"}


@pytest.fixture(scope="module")
def http(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, headers=SPACE, timeout=30) as client:
        yield client


def envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one envelope: exactly these keys (plus optional details), all strings, all filled in."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) - {"details"} == {"code", "message", "suggestion", "example"}
    assert err["code"] == code, err
    for key in ("message", "suggestion", "example"):
        assert isinstance(err[key], str) and err[key], (key, err)
    return err


def raw(
    http: httpx.Client,
    content: bytes,
    content_type: str = "application/json",
    path: str = REMEMBER,
    **headers: str,
) -> httpx.Response:
    return http.post(path, content=content, headers={"content-type": content_type, **headers})


@pytest.mark.parametrize(
    "content",
    [b'{"content": "x",', b"{content: 'x'}", b"not json at all", b'{"a": 1}}', b"\xff\xfe\x00garbage"],
)
def test_malformed_json(http: httpx.Client, content: bytes) -> None:
    err = envelope(raw(http, content), 400, "MALFORMED_JSON")
    assert "not valid JSON" in err["message"]
    assert '"content"' in err["example"], "the example is a correct request for this route"


def test_json_that_is_not_an_object(http: httpx.Client) -> None:
    for content in (b"[1, 2, 3]", b'"just a string"', b"42", b"null"):
        envelope(raw(http, content), 400, "INVALID_INPUT")


def test_empty_body(http: httpx.Client) -> None:
    err = envelope(raw(http, b""), 400, "INVALID_INPUT")
    assert "body" in err["message"]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"content": "x", "confidence": "high"}, "body.confidence", "valid number"),
        ({"content": "x", "confidence": 1.5}, "body.confidence", "less than or equal to 1"),
        ({"content": 123}, "body.content", "valid string"),
        ({"content": "x", "tags": "office"}, "body.tags", "valid list"),
        ({"content": "x", "metadata": {"k": {"a": 1}}}, "body.metadata", "metadata.k: got an object"),
        ({"content": "x", "embedding": ["a", "b"]}, "body.embedding.0", "valid number"),
        ({"content": "x", "embedding": []}, "body.embedding", "must not be empty"),
        ({"content": "x", "embedding": [0.0, 0.0]}, "body.embedding", "all zeros"),
        ({"content": ""}, "body", "needs content, an embedding"),
    ],
)
def test_wrong_types_and_values(http: httpx.Client, body: dict[str, Any], field: str, words: str) -> None:
    err = envelope(http.post(REMEMBER, json=body), 400, "INVALID_INPUT")
    fields = [e["field"] for e in err["details"]["errors"]]
    assert field in fields, err
    assert words in json.dumps(err), err


def test_non_finite_numbers(http: httpx.Client) -> None:
    err = envelope(raw(http, b'{"content": "x", "embedding": [NaN, 1.0]}'), 400, "INVALID_INPUT")
    assert "finite" in err["message"]
    envelope(raw(http, b'{"content": "x", "confidence": Infinity}'), 400, "INVALID_INPUT")


def test_unknown_enum_values(http: httpx.Client) -> None:
    err = envelope(http.post(REMEMBER, json={"content": "x", "memory_type": "dreamy"}), 400, "INVALID_INPUT")
    assert "'episodic', 'semantic', 'procedural' or 'working'" in err["message"]
    assert err["details"]["errors"][0]["received"] == "dreamy"
    err = envelope(
        http.post(f"{API}/memories/recall", json={"query": "x", "mode": "telepathy"}), 400, "INVALID_INPUT"
    )
    assert "similarity" in err["message"] and "hybrid" in err["message"]
    envelope(
        http.get(f"{API}/memories/recall", params={"query": "x", "mode": "telepathy"}), 400, "INVALID_INPUT"
    )
    envelope(http.delete(f"{API}/memories/m1", params={"mode": "shred"}), 400, "INVALID_INPUT")
    err = envelope(
        http.get(f"{API}/stream/memories", params={"types": "stored,telepathy"}), 400, "INVALID_INPUT"
    )
    assert "telepathy" in err["message"] and "stored, recalled" in err["message"]


def test_unknown_fields(http: httpx.Client) -> None:
    err = envelope(
        http.post(REMEMBER, json={"content": "x", "colour": "red", "size": 3}), 400, "INVALID_INPUT"
    )
    assert "unknown field" in err["message"] and "(and 1 more)" in err["message"]
    assert sorted(e["field"] for e in err["details"]["errors"]) == ["body.colour", "body.size"]


def test_wrong_embedding_length(rest_server, http: httpx.Client) -> None:
    with httpx.Client(base_url=rest_server.http_url, timeout=30) as admin:
        assert admin.post(f"{API}/spaces", json={"id": "dim3", "dimension": 3}).status_code == 201
    hdr = {"X-Memory-Space": "dim3"}
    assert http.post(REMEMBER, headers=hdr, json={"embedding": [1.0, 0.0, 0.0]}).status_code == 201
    err = envelope(
        http.post(REMEMBER, headers=hdr, json={"embedding": [1.0, 0.0, 0.0, 0.5]}),
        400,
        "EMBEDDING_DIMENSION_MISMATCH",
    )
    assert "3" in err["message"] and "4" in err["message"]
    envelope(
        http.post(f"{API}/memories/recall", headers=hdr, json={"embedding": [1.0, 0.0]}),
        400,
        "EMBEDDING_DIMENSION_MISMATCH",
    )


def test_bad_query_parameters(http: httpx.Client) -> None:
    err = envelope(http.get(f"{API}/memories", params={"limit": "lots"}), 400, "INVALID_INPUT")
    assert "query.limit" in err["message"]
    envelope(http.get(f"{API}/memories", params={"limit": 10**9}), 400, "INVALID_INPUT")
    envelope(
        http.get(f"{API}/memories/recall", params={"query": "x", "max_results": 0}), 400, "INVALID_INPUT"
    )
    envelope(http.get(f"{API}/memories/recall", params={"time_start": "yesterday-ish"}), 400, "INVALID_INPUT")
    envelope(
        http.get(f"{API}/memories/recall", params={"query": "x", "threshold": "nan"}), 400, "INVALID_INPUT"
    )
    envelope(http.get(f"{API}/stream/activities", params={"min_importance": 2}), 400, "INVALID_INPUT")


def test_not_json_content_type(http: httpx.Client) -> None:
    err = envelope(raw(http, b'{"content": "x"}', "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "text/plain" in err["message"]
    envelope(http.post(REMEMBER, data={"content": "x"}), 415, "UNSUPPORTED_MEDIA_TYPE")
    resp = http.post(REMEMBER, content=b'{"content": "x"}', headers={"content-type": ""})
    envelope(resp, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_unknown_route_and_method(http: httpx.Client) -> None:
    err = envelope(http.get("/api/v1/nothing-here"), 404, "ROUTE_NOT_FOUND")
    assert "/api/v1/nothing-here" in err["message"]
    err = envelope(http.put(f"{API}/spaces"), 405, "METHOD_NOT_ALLOWED")
    assert "PUT" in err["message"]
    envelope(http.post(f"{API}/memories/m1"), 405, "METHOD_NOT_ALLOWED")  # GET, PUT, PATCH, DELETE only


def test_hostile_json(http: httpx.Client) -> None:
    deep = b'{"content": "x", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = raw(http, deep)
    assert resp.status_code == 400 and resp.json()["error"]["code"] in ("MALFORMED_BODY", "INVALID_INPUT")
    envelope(raw(http, b'{"content": "x", "confidence": ' + b"9" * 5000 + b"}"), 400, "MALFORMED_BODY")
    err = envelope(raw(http, b'{"content": "\\ud800"}'), 400, "INVALID_INPUT")  # a lone surrogate
    assert "body.content" in err["message"]
    envelope(http.post(REMEMBER, json={"content": "x", "id": "bad\x00id"}), 400, "INVALID_INPUT")


def test_body_limit_default_1mib(http: httpx.Client) -> None:
    big = json.dumps({"content": "a" * (1024 * 1024 + 100)}).encode()
    err = envelope(raw(http, big), 413, "PAYLOAD_TOO_LARGE")
    assert "1048576" in err["message"] and "max_body_bytes" in err["suggestion"]
    # the connection survived: the same client keeps working
    assert http.get("/health/alive").status_code == 200
    just_under = json.dumps({"content": "b" * 60_000}).encode()
    assert raw(http, just_under).status_code == 201


def test_body_limit_chunked(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold on the raw stream
        yield b'{"content": "'
        for _ in range(40):
            yield b"c" * 32_768
        yield b'"}'

    err = envelope(
        http.post(REMEMBER, content=chunks(), headers={"content-type": "application/json"}),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert "1048576" in err["message"]
    assert http.get("/health/alive").status_code == 200

    def small() -> Iterator[bytes]:
        yield b'{"content": '
        yield b'"chunked but small"}'

    ok = http.post(REMEMBER, content=small(), headers={"content-type": "application/json"})
    assert ok.status_code == 201, ok.text


def test_body_limit_is_configurable_and_connection_kept(module_server_factory) -> None:
    srv = module_server_factory(spaces=["alpha"], settings={"max_body_bytes": 2048}, name="small-limit")
    body = json.dumps({"content": "d" * 3000}).encode()
    # Raw socket: the 413 arrives as a complete HTTP response, and the connection stays usable.
    host, port = srv.http_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = (
            f"POST {REMEMBER} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Memory-Space: alpha\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sock.sendall(request)
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 413"), first[:200]
        assert b"PAYLOAD_TOO_LARGE" in first
        small = b'{"content": "fits"}'
        sock.sendall(
            (
                f"POST {REMEMBER} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Memory-Space: alpha\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(small)}\r\n\r\n"
            ).encode()
            + small
        )
        second = _read_response(sock)
        assert second.startswith(b"HTTP/1.1 201"), second[:200]
    with httpx.Client(base_url=srv.http_url, headers=SPACE, timeout=30) as http:
        err = envelope(raw(http, body), 413, "PAYLOAD_TOO_LARGE")
        assert "2048" in err["message"]


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection dropped"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection dropped"
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_errors_are_counted_not_500(http: httpx.Client) -> None:
    metrics = http.get("/metrics").text
    assert 'status="413"' in metrics and 'status="400"' in metrics
    assert 'status="500"' not in metrics
