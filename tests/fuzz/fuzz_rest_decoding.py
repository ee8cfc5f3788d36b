"""atheris target: REST request decoding through the real FastAPI app, in-process over ASGI.

Each input becomes one HTTP request: a method and route from the SPEC §3
table (with a fuzzed path segment), a fuzzed query string, fuzzed space
headers (any of the three aliases, valid, invalid, conflicting or absent)
and a fuzzed body (raw bytes, or JSON assembled from fuzzed values so the
pydantic models see type confusion, unknown fields and wrong lengths).

Invariant (SPEC §3): every answer is 2xx, 3xx or 4xx, and every 4xx carries
the one error envelope ``{"error": {"code", "message", "suggestion", "example"}}``.
A 5xx, a missing envelope or an exception out of the app is a finding.

    python tests/fuzz/fuzz_rest_decoding.py tests/fuzz/corpus/rest_decoding -atheris_runs=20000
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _instrument import UNDER_TEST, instrument_only

with instrument_only(*UNDER_TEST["rest_decoding"]):
    from engram.api.rest.app import create_app

from _common import SPACES, make_service

SERVICE, LOOP = make_service(max_body_bytes=4096)
APP = create_app(SERVICE)

ROUTES = [
    ("POST", "/api/v1/memories/remember"),
    ("POST", "/api/v1/episodes/remember"),
    ("POST", "/api/v1/memories/recall"),
    ("GET", "/api/v1/memories/recall"),
    ("GET", "/api/v1/memories"),
    ("GET", "/api/v1/memories/{id}"),
    ("DELETE", "/api/v1/memories/{id}"),
    ("POST", "/api/v1/memories/recognize"),
    ("POST", "/api/v1/memories/associate"),
    ("GET", "/api/v1/episodes/reminisce"),
    ("POST", "/api/v1/consolidate"),
    ("GET", "/api/v1/consolidations"),
    ("GET", "/api/v1/consolidations/{id}"),
    ("POST", "/api/v1/complete"),
    ("GET", "/api/v1/spaces"),
    ("POST", "/api/v1/spaces"),
    ("GET", "/api/v1/spaces/{id}"),
    ("GET", "/api/v1/system/health"),
    ("GET", "/health"),
]
HEADER_NAMES = [b"x-memory-space", b"x-engram-memory-space", b"x-memory-space-id"]
FIELDS = [
    "content",
    "embedding",
    "id",
    "confidence",
    "tags",
    "metadata",
    "memory_type",
    "query",
    "mode",
    "threshold",
    "max_results",
    "when",
    "what",
    "who",
    "source_id",
    "target_id",
    "strength",
    "memory_space_id",
    "time_start",
    "time_end",
    "min_cluster",
    "similarity",
    "trace_activation",
    "auto_link",
    "decay_rate",
    "importance",
    "limit",
    "cursor",
    "topic",
    "unknown_field",
]


def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 2 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind in (4, 5):
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if kind in (6, 7):
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    if kind == 8:
        return [fdp.ConsumeRegularFloat() for _ in range(fdp.ConsumeIntInRange(0, 8))]
    return {
        fdp.ConsumeUnicodeNoSurrogates(8): value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))
    }


def space_value(fdp: atheris.FuzzedDataProvider) -> bytes:
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        return SPACES[fdp.ConsumeIntInRange(0, len(SPACES) - 1)].encode()
    if choice == 1:
        return b"no-such-space"
    # Header values on the wire cannot hold CR, LF or NUL (the HTTP parser rejects them).
    return bytes(b for b in fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70)) if b not in (0, 10, 13))


async def call(
    method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await APP(scope, receive, send)
    return status, b"".join(chunks)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    method, path = ROUTES[fdp.ConsumeIntInRange(0, len(ROUTES) - 1)]
    if "{id}" in path:
        seg = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 30)).replace("/", "_") or "x"
        seg = unquote(quote(seg, safe=""))  # the server sees the percent-decoded path
        path = path.replace("{id}", seg)
    headers: list[tuple[bytes, bytes]] = [(b"host", b"localhost")]
    for _ in range(fdp.ConsumeIntInRange(0, 2)):
        headers.append((HEADER_NAMES[fdp.ConsumeIntInRange(0, 2)], space_value(fdp)))
    # What reaches the app over the wire: uvicorn rejects raw non-ASCII request lines (400 before the
    # app), so query strings are percent-encoded; their decoded bytes are still arbitrary.
    query = (
        quote_from_bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60)), safe="=&").encode()
        if fdp.ConsumeBool()
        else b""
    )
    if fdp.ConsumeBool():
        query = b"space=" + quote_from_bytes(space_value(fdp)).encode() + (b"&" + query if query else b"")
    body = b""
    if method in ("POST", "DELETE"):
        if fdp.ConsumeIntInRange(0, 4) == 0:
            body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
        else:
            obj = {
                FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)]: value(fdp)
                for _ in range(fdp.ConsumeIntInRange(0, 6))
            }
            body = json.dumps(obj).encode()  # NaN / Infinity tokens included: sloppy clients send them
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
    if path.endswith("/spaces") and method == "POST":
        return  # creating spaces from random input would only fill the disk
    status, resp = LOOP.run_until_complete(call(method, path, query, headers, body))
    assert 200 <= status < 500, (
        f"{method} {path}?{query!r} headers={headers!r} body={body[:200]!r} -> {status} {resp[:500]!r}"
    )
    if status >= 400:
        doc = json.loads(resp)
        err = doc["error"]
        assert {"code", "message", "suggestion", "example"} <= err.keys(), doc


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
