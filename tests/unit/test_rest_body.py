"""encode.from_body (POST recall's own body reading) against FastAPI's body parameter: for every
body, valid or not, the same model or the same error envelope, byte for byte."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from engram.api.rest import errors
from engram.api.rest.encode import from_body
from engram.core.models import Cue

PATH = "/api/v1/memories/recall"


def answer(cue: Cue) -> Response:
    return Response(json.dumps(cue.model_dump(mode="json"), sort_keys=True), media_type="application/json")


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post(PATH)
    async def recall(cue: Cue) -> Response:  # FastAPI reads and validates the body
        return answer(cue)

    errors.install(app)
    return app


def own_app() -> FastAPI:
    app = FastAPI()

    @app.post(PATH)
    async def recall(request: Request) -> Response:
        return answer(await from_body(request, Cue))

    errors.install(app)
    return app


async def call(app: FastAPI, ctype: str | None, body: bytes) -> tuple[int, bytes]:
    headers = [(b"content-length", str(len(body)).encode())]
    if ctype is not None:
        headers.append((b"content-type", ctype.encode("latin-1")))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
             "root_path": "", "headers": headers, "server": ("127.0.0.1", 7432), "client": ("127.0.0.1", 1)}
    sent: list[dict[str, Any]] = []
    fed = False

    async def receive() -> dict[str, Any]:
        nonlocal fed
        if fed:
            return {"type": "http.disconnect"}
        fed = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


VEC = np.linspace(-1, 1, 8, dtype=np.float32)
JSON = "application/json"
CASES: list[tuple[str | None, bytes]] = [
    (JSON, json.dumps({"embedding": VEC.tolist(), "max_results": 10, "rank": "similarity"}).encode()),
    (JSON, json.dumps({"embedding": base64.b64encode(VEC.tobytes()).decode(), "max_results": 3}).encode()),
    (JSON, b'{"query": "the trip", "max_results": "7", "threshold": 0, "mode": "hybrid", "max_hops": 2}'),
    (JSON, b'{"query": "a", "filter": {"topic": {"$in": ["x", 1, 2.5]}}, "tags": ["t"], '
           b'"trace_activation": true}'),
    (JSON, b'{"query": "a", "time_start": "2026-01-02T03:04:05Z", "time_end": 1767000000}'),
    (JSON, b'{"query": "dup", "query": "last wins", "memory_space_id": "s1"}'),
    (JSON, b'{"query": "caf\\u00e9 \\ud83d\\ude00"}'),
    (JSON, b'{"query": "lone \\ud800"}'),
    (JSON, b'{"query": "x", "nope": 1}'),
    (JSON, b'{"query": 5}'),
    (JSON, b'{"max_results": 0, "query": "x"}'),
    (JSON, b'{"max_results": 1e30, "query": "x"}'),
    (JSON, b'{"rank": "loud", "query": "x"}'),
    (JSON, b'{"embedding": [1, NaN, 2]}'),
    (JSON, b'{"embedding": [Infinity]}'),
    (JSON, b'{"embedding": "not base64!"}'),
    (JSON, b'{"embedding": []}'),
    (JSON, b'{}'),
    (JSON, b'{"threshold": 2, "rank": 1, "mode": null, "tags": "t", "query": "x"}'),
    (JSON, b"[]"),
    (JSON, b"null"),
    (JSON, b"5"),
    (JSON, b'"text"'),
    (JSON, b"{"),
    (JSON, b'{"query": "x",}'),
    (JSON, b"not json"),
    (JSON, b"\xff\xfe{}"),
    (JSON, b'{"query": "x"} trailing'),
    (JSON, b"[" * 5000 + b"]" * 5000),
    (JSON, b""),
    ("application/json; charset=utf-8", b'{"query": "x"}'),
    ("application/json; charset=utf-8", b'{"query": 1}'),
    ("application/vnd.engram+json", b'{"query": "x"}'),
    ("Application/JSON", b'{"query": "x"}'),
    ("text/plain", b'{"query": "x"}'),
    ("application/x-www-form-urlencoded", b"query=x"),
    (None, b'{"query": "x"}'),
    (None, b""),
]


@pytest.mark.parametrize(("ctype", "body"), CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_same_answer_as_fastapi(ctype: str | None, body: bytes) -> None:
    theirs = asyncio.run(call(fastapi_app(), ctype, body))
    ours = asyncio.run(call(own_app(), ctype, body))
    assert ours == theirs


def test_the_cases_cover_both_outcomes() -> None:
    statuses = [asyncio.run(call(own_app(), c, b))[0] for c, b in CASES]
    assert statuses.count(200) >= 8 and {400, 415} <= set(statuses)
