"""Noisy tenant: does one tenant flooding writes push another tenant's recall P99 up? (issue 12)

One server with auth required and a per-key rate limit. Tenant B (its own writer key and space)
recalls in a loop, first alone, then while tenant A floods writes from many concurrent
connections with its own key. Prints B's recall P50/P99 in both phases, their ratio, and how
many of A's writes were admitted and refused (429).

    .venv/bin/python bench/noisy_tenant.py [--seconds 10] [--rate 50] [--flooders 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import _pathfix  # noqa: F401  (keeps bench/ from shadowing the standard library)
import httpx

from engram.testing import EngramProcess


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000.0


async def _recalls(client: httpx.AsyncClient, seconds: float, pause: float) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        resp = await client.get("/api/v1/memories/recall", params={"query": "espresso floor 3",
                                                                  "max_results": 5})
        resp.raise_for_status()
        out.append(time.perf_counter() - t)
        await asyncio.sleep(pause)  # B stays well inside its own rate limit
    return out


async def _flood(client: httpx.AsyncClient, seconds: float, counts: dict[int, int]) -> None:
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        resp = await client.post("/api/v1/memories/remember", json={"content": f"noise {i}"})
        counts[resp.status_code] = counts.get(resp.status_code, 0) + 1
        if resp.status_code == 429:
            await asyncio.sleep(float(resp.headers.get("retry-after", "1")) / 10)  # an impatient client
        i += 1


async def main(seconds: float, rate: float, flooders: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="noisy-"))
    srv = EngramProcess.start(root, spaces=["tenant-a", "tenant-b"],
                              settings={"auth": "required", "rate_limit_per_second": rate,
                                        "rate_limit_burst": int(rate)})
    try:
        admin = (srv.data_dir / "_system" / "admin.key").read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(base_url=srv.http_url, headers=auth) as c:
            ka = (await c.post("/api/v1/keys", json={"role": "writer", "spaces": ["tenant-a"]})).json()["key"]
            kb = (await c.post("/api/v1/keys", json={"role": "writer", "spaces": ["tenant-b"]})).json()["key"]
        b = httpx.AsyncClient(base_url=srv.http_url, timeout=60,
                              headers={"Authorization": f"Bearer {kb}", "X-Memory-Space": "tenant-b"})
        a = httpx.AsyncClient(base_url=srv.http_url, timeout=60,
                              limits=httpx.Limits(max_connections=flooders),
                              headers={"Authorization": f"Bearer {ka}", "X-Memory-Space": "tenant-a"})
        i = 0
        while i < 200:
            resp = await b.post("/api/v1/memories/remember",
                                json={"content": f"espresso machine on floor {i % 7}"})
            if resp.status_code == 429:  # B's own rate limit: wait as told
                await asyncio.sleep(float(resp.headers["retry-after"]))
                continue
            resp.raise_for_status()
            i += 1
        await asyncio.sleep(2)
        pause = max(0.04, 2.0 / rate)
        quiet = await _recalls(b, seconds, pause)
        counts: dict[int, int] = {}
        flood = [asyncio.create_task(_flood(a, seconds + 1, counts)) for _ in range(flooders)]
        await asyncio.sleep(0.5)
        noisy = await _recalls(b, seconds, pause)
        await asyncio.gather(*flood)
        await a.aclose()
        await b.aclose()
        print(f"tenant B recall alone:       n={len(quiet)} p50={_p(quiet, 0.5):.2f} ms "
              f"p99={_p(quiet, 0.99):.2f} ms mean={statistics.mean(quiet) * 1000:.2f} ms")
        print(f"tenant B recall with A flood: n={len(noisy)} p50={_p(noisy, 0.5):.2f} ms "
              f"p99={_p(noisy, 0.99):.2f} ms mean={statistics.mean(noisy) * 1000:.2f} ms")
        print(f"p99 ratio {_p(noisy, 0.99) / _p(quiet, 0.99):.2f}; tenant A writes: "
              f"{counts.get(201, 0)} stored, {counts.get(429, 0)} refused 429 "
              f"(rate_limit_per_second={rate}, {flooders} connections)")
    finally:
        srv.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--flooders", type=int, default=16)
    args = ap.parse_args()
    asyncio.run(main(args.seconds, args.rate, args.flooders))
