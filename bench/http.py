#!/usr/bin/env python3
"""REST throughput against a real server, with the echo-route ceiling measured in the same run.

    python bench/http.py [--clients 32] [--seconds 5] [--out bench/results/http.json]

Starts one ``engram start`` process (fsync durability, fresh data root, spaces
``bench-0`` .. ``bench-9``) and runs, each for ``--seconds``, aiohttp workers
(one keep-alive connection each) issuing requests back to back:

* ``echo``               POST /api/v1/echo with a remember-sized JSON body (the ceiling:
                         same server, same middleware, no work)
* ``remember``           POST /api/v1/memories/remember, durable (group commit), one space
* ``recall``             GET  /api/v1/memories/recall?query=... (full text), one space
* ``remember_10``        the same spread round-robin over 10 spaces
* ``recall_10``          the same spread over 10 spaces

at ``--clients`` concurrent clients, and echo / remember / recall again with a
single client (latency without queueing). Reports requests/s and P50/P99, and
the target ratio: remember >= 60% of echo at 32 clients. Not a test: the
client and the server share the machine's cores, so absolute numbers depend
on the machine; the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory is sys.path[0] and this module would shadow the stdlib `http`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "src"))

import aiohttp  # noqa: E402

from engram.testing import EngramProcess  # noqa: E402

SPACES = tuple(f"bench-{i}" for i in range(10))
WORDS = ("espresso", "printer", "violin", "heron", "quokka", "atrium", "kitchen", "boat", "garden", "lamp")
TARGET = 0.60

Request = Callable[[aiohttp.ClientSession, int, int], Awaitable[int]]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def memory_body(i: int, n: int) -> dict[str, Any]:
    word = WORDS[(i + n) % len(WORDS)]
    return {
        "content": f"benchmark memory {i}-{n} about the {word} on the third floor, near the kitchen",
        "confidence": 0.8,
        "tags": ["bench", word],
    }


async def phase(base: str, clients: int, seconds: float, make: Request) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        # One request per worker first: connections open, code paths warm.
        await asyncio.gather(*(make(session, i, -1) for i in range(clients)))
        stop = time.perf_counter() + seconds

        async def worker(idx: int) -> int:
            nonlocal errors
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = await make(session, idx, n)
                lat.append(time.perf_counter() - t0)
                if status >= 300:
                    errors += 1
                n += 1
            return n

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - t0
    ops = sum(counts)
    return {
        "clients": clients,
        "requests": ops,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rate": round(ops / elapsed, 1),
        "p50_ms": round(pct(lat, 0.50), 3),
        "p99_ms": round(pct(lat, 0.99), 3),
    }


def requests_for(spread: int) -> dict[str, Request]:
    async def echo(s: aiohttp.ClientSession, i: int, n: int) -> int:
        async with s.post("/api/v1/echo", json=memory_body(i, n)) as r:
            await r.read()
            return r.status

    async def remember(s: aiohttp.ClientSession, i: int, n: int) -> int:
        space = SPACES[(i + max(n, 0)) % spread]
        async with s.post(
            "/api/v1/memories/remember", json=memory_body(i, n), headers={"X-Memory-Space": space}
        ) as r:
            await r.read()
            return r.status

    async def recall(s: aiohttp.ClientSession, i: int, n: int) -> int:
        space = SPACES[(i + max(n, 0)) % spread]
        params = {"query": WORDS[(i + n) % len(WORDS)], "max_results": "10"}
        async with s.get("/api/v1/memories/recall", params=params, headers={"X-Memory-Space": space}) as r:
            await r.read()
            return r.status

    return {"echo": echo, "remember": remember, "recall": recall}


async def run(base: str, clients: int, seconds: float) -> dict[str, Any]:
    one, ten = requests_for(1), requests_for(10)
    results: dict[str, Any] = {}
    results["echo"] = await phase(base, clients, seconds, one["echo"])
    results["remember"] = await phase(base, clients, seconds, one["remember"])
    results["recall"] = await phase(base, clients, seconds, one["recall"])
    results["remember_10"] = await phase(base, clients, seconds, ten["remember"])
    results["recall_10"] = await phase(base, clients, seconds, ten["recall"])
    results["echo_1client"] = await phase(base, 1, seconds, one["echo"])
    results["remember_1client"] = await phase(base, 1, seconds, one["remember"])
    results["recall_1client"] = await phase(base, 1, seconds, one["recall"])
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="engram-bench-http-") as tmp:
        srv = EngramProcess.start(
            Path(tmp), spaces=SPACES, settings={"durability": "fsync", "log_level": "warning"}
        )
        try:
            results = asyncio.run(run(srv.http_url, args.clients, args.seconds))
        finally:
            srv.stop()

    echo = results["echo"]["rate"]
    ratio = {
        name: round(results[name]["rate"] / echo, 3) if echo else None
        for name in ("remember", "recall", "remember_10", "recall_10")
    }
    report = {
        "benchmark": "http",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "durability": "fsync",
            "client": "aiohttp",
        },
        "results": results,
        "ratio_to_echo": ratio,
        "target": {
            "remember_over_echo": TARGET,
            "met": bool(ratio["remember"] and ratio["remember"] >= TARGET),
        },
    }
    print(f"{'phase':<18}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'x echo':>8}")
    for name, r in results.items():
        rel = ratio.get(name)
        print(
            f"{name:<18}{r['clients']:>8}{r['rate']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
            f"{'' if rel is None else format(rel, '.2f'):>8}"
        )
    met = "met" if report["target"]["met"] else "NOT met"
    print(f"remember / echo = {ratio['remember']:.2f} (target >= {TARGET:.2f}: {met})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
