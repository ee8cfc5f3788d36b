#!/usr/bin/env python3
"""CPU per POST recall body read: FastAPI's body parameter against encode.from_body (Round 6).

    python bench/notes/body_parse.py [--calls 3000]

Two one-route FastAPI apps (tests/unit/test_rest_body.py's: the route answers a fixed
small body, so only the request side differs), driven through ASGI in this process with the
body recall_scaling / peer_chroma_server send: a 384-d embedding as JSON floats and as
base64, ``max_results`` 10, ``rank`` "similarity". Interleaved rounds; prints thread CPU
per call (us) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "unit"))
from test_rest_body import PATH, call  # noqa: E402

from engram.api.rest import errors  # noqa: E402
from engram.api.rest.encode import from_body  # noqa: E402
from engram.core.models import Cue  # noqa: E402


def apps() -> dict[str, FastAPI]:
    fast, own = FastAPI(), FastAPI()

    @fast.post(PATH)
    async def r1(cue: Cue) -> Response:
        return Response(b"{}", media_type="application/json")

    @own.post(PATH)
    async def r2(request: Request) -> Response:
        await from_body(request, Cue)
        return Response(b"{}", media_type="application/json")

    errors.install(fast)
    errors.install(own)
    return {"fastapi": fast, "from_body": own}


async def loop(app: FastAPI, body: bytes, n: int) -> float:
    t0 = time.thread_time()
    for _ in range(n):
        status, _ = await call(app, "application/json", body)
        assert status == 200
    return (time.thread_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    v = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    v /= np.linalg.norm(v)
    bodies = {
        "json_floats": json.dumps({"embedding": v.tolist(), "max_results": 10, "rank": "similarity"}).encode(),
        "base64": json.dumps({"embedding": base64.b64encode(v.tobytes()).decode(), "max_results": 10,
                              "rank": "similarity"}).encode(),
    }
    out: dict[str, list[float]] = {}
    print(json.dumps({"load": os.getloadavg()}))
    for _ in range(args.rounds):
        for bname, body in bodies.items():
            for aname, app in apps().items():
                us = asyncio.run(loop(app, body, args.calls))
                out.setdefault(f"{bname} {aname}", []).append(round(us, 1))
    print(json.dumps(out, indent=1))
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
