#!/usr/bin/env python3
"""SSE fan-out cost against a real server: prints figures and writes JSON.

    python bench/subscribers.py [--quick] [--subscribers 500] [--out bench/results/subscribers.json]

One ``engram start`` process (fsync durability, hash embedder) with spaces ``fan-a``
(the subscribed one) and ``fan-b`` (another tenant, pre-filled). The subscribers are
raw asyncio SSE connections (``engram.testing.sse_raw``), all on ``fan-a``, held by a
child process so that reading them does not share an event loop with the writers. Phases:

1. ``recall_b_0``        sequential recall P50/P99 on ``fan-b``, no subscriber anywhere
2. ``recall_b_idle``     the same with N idle subscribers on ``fan-a`` (nothing written there)
3. ``write_a_0``         remember rate on ``fan-a``, 16 concurrent aiohttp writers, no subscriber
4. ``write_a_consumed``  the same with N subscribers reading every event, plus what they got
5. ``recall_b_busy``     recall P50 on ``fan-b`` while ``fan-a`` is written with N consuming
                         subscribers (a harder case than the issue's target; informational)

Issue 11 target: N = 500 idle subscribers on one space cost another space's recall P50 at
most 20 %. Client and server share the machine's cores, so the ratios carry over, not the
absolute figures.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchlib import RESULTS, latency_summary, overhead_pct, show, stamp, tmpdir, write_json

TARGET_PCT = 20.0
WORDS = ("espresso", "printer", "violin", "heron", "quokka", "atrium", "kitchen", "boat", "garden", "lamp")


async def fill(session: Any, space: str, n: int) -> None:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            body = {"content": f"note {i} about the {WORDS[i % 10]} and the {WORDS[(i * 7) % 10]}"}
            async with session.post("/api/v1/memories/remember", json=body,
                                    headers={"X-Memory-Space": space}) as r:
                assert r.status == 201, await r.text()

    await asyncio.gather(*(one(i) for i in range(n)))
    # wait until the background embedder has caught up, so recall measures a steady space
    async with session.post("/api/v1/memories/recall", json={"query": "heron", "wait_for_embeddings": True},
                            headers={"X-Memory-Space": space}) as r:
        await r.read()


async def recall_latency(session: Any, space: str, n: int) -> dict[str, Any]:
    ms: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        params = {"query": WORDS[i % 10], "max_results": "10"}
        headers = {"X-Memory-Space": space}
        async with session.get("/api/v1/memories/recall", params=params, headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        ms.append((time.perf_counter() - t0) * 1000)
    return latency_summary(ms)


async def write_rate(session: Any, space: str, seconds: float, writers: int = 16) -> dict[str, Any]:
    stop = time.perf_counter() + seconds
    errors = 0

    async def writer(w: int) -> int:
        nonlocal errors
        n = 0
        while time.perf_counter() < stop:
            async with session.post("/api/v1/memories/remember", json={"content": f"w{w} {n} fan-out"},
                                    headers={"X-Memory-Space": space}) as r:
                await r.read()
                errors += r.status != 201
            n += 1
        return n

    t0 = time.perf_counter()
    done = sum(await asyncio.gather(*(writer(w) for w in range(writers))))
    elapsed = time.perf_counter() - t0
    return {"writes": done, "errors": errors, "seconds": round(elapsed, 2),
            "rate_per_s": round(done / elapsed, 1), "writers": writers}


def swarm_process(url: str, conn: Any) -> None:
    """Child process: holds the SSE subscribers, so their reading does not share the writers' loop."""
    asyncio.run(_swarm(url, conn))


async def _swarm(url: str, conn: Any) -> None:
    from engram.testing.sse_raw import RawSubscriber

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
    loop = asyncio.get_running_loop()
    subs: list[RawSubscriber] = []
    readers: list[asyncio.Future[None]] = []
    while True:
        cmd, arg = await loop.run_in_executor(None, conn.recv)
        if cmd == "open":
            subs = []
            for start in range(0, arg, 50):  # in waves: the accept backlog is not the subject
                subs += await asyncio.gather(*(RawSubscriber.open(host, port, "fan-a")
                                               for _ in range(min(50, arg - start))))
            for sub in subs:
                sub.light = True
                sub.watch_ids.add("fan-marker")
            readers = [asyncio.ensure_future(sub.consume()) for sub in subs]
            conn.send(sum(sub.status != 200 for sub in subs))
        elif cmd == "watch":
            t0 = time.perf_counter()
            got = await asyncio.gather(*(sub.wait_for(lambda x: "fan-marker" in x.stored_ids, arg)
                                         for sub in subs if sub.status == 200))
            conn.send({
                "drain_seconds": round(time.perf_counter() - t0, 2),
                "subscribers_reached_marker": sum(got),
                "events_delivered_mean": round(sum(x.counts.get("stored", 0) for x in subs) / len(subs), 1),
                "lagged_notices": sum(x.counts.get("lagged", 0) for x in subs),
                "ended": sum(x.counts.get("end", 0) for x in subs),
            })
        elif cmd == "close":
            for sub in subs:
                sub.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            conn.send(None)
        else:
            return


async def run(url: str, subscribers: int, recalls: int, seconds: float, fill_n: int) -> dict[str, Any]:
    import multiprocessing

    import aiohttp

    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=swarm_process, args=(url, child_conn), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()

    def answer() -> Any:
        while not conn.poll(1.0):
            if not child.is_alive():
                raise RuntimeError(f"the subscriber process died (exit code {child.exitcode})")
        return conn.recv()

    async def ask(cmd: str, arg: Any = None) -> Any:
        conn.send((cmd, arg))
        return await loop.run_in_executor(None, answer)

    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=120)) as s:
            await fill(s, "fan-b", fill_n)
            await recall_latency(s, "fan-b", 20)  # warm
            out["recall_b_0"] = await recall_latency(s, "fan-b", recalls)
            show("recall_b_0", out["recall_b_0"])

            t0 = time.perf_counter()
            refused = await ask("open", subscribers)
            out["connect"] = {"subscribers": subscribers, "refused": refused,
                              "seconds": round(time.perf_counter() - t0, 2)}
            show("connect", out["connect"])
            await asyncio.sleep(1.0)
            out["recall_b_idle"] = await recall_latency(s, "fan-b", recalls)
            show("recall_b_idle", out["recall_b_idle"])
            await ask("close")
            await asyncio.sleep(1.0)

            out["write_a_0"] = await write_rate(s, "fan-a", seconds)
            show("write_a_0", out["write_a_0"])

            await ask("open", subscribers)
            await asyncio.sleep(1.0)
            res = await write_rate(s, "fan-a", seconds)
            async with s.post("/api/v1/memories/remember", json={"id": "fan-marker", "content": "end"},
                              headers={"X-Memory-Space": "fan-a"}) as r:
                assert r.status == 201
            res.update(await ask("watch", 120.0))
            out["write_a_consumed"] = res
            show("write_a_consumed", res)

            busy = asyncio.ensure_future(write_rate(s, "fan-a", seconds + 60, writers=8))
            await asyncio.sleep(0.5)
            out["recall_b_busy"] = await recall_latency(s, "fan-b", max(50, recalls // 2))
            show("recall_b_busy", out["recall_b_busy"])
            busy.cancel()
            await asyncio.gather(busy, return_exceptions=True)
            await ask("close")
    finally:
        conn.send(("exit", None))
        child.join(10)
        if child.is_alive():
            child.kill()
    return out


def main() -> None:
    from benchlib import exit_on_sigterm

    from engram.testing import EngramProcess

    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--subscribers", type=int, help="subscribers on fan-a (default 500; quick 200)")
    ap.add_argument("--recalls", type=int, help="recalls per latency phase (default 300; quick 100)")
    ap.add_argument("--seconds", type=float, help="seconds per write phase (default 6; quick 2)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    n = args.subscribers or (200 if args.quick else 500)
    recalls = args.recalls or (100 if args.quick else 300)
    seconds = args.seconds or (2.0 if args.quick else 6.0)
    out_path = args.out or (RESULTS / "quick" if args.quick else RESULTS) / "subscribers.json"
    root = tmpdir("engram-bench-subs-")
    settings = {
        "durability": "fsync", "log_level": "warning",
        # the caps are the subject of other tests; here they must let N subscribers in
        "max_subscribers_per_space": n + 16, "max_subscribers_per_client": n + 16, "max_subscribers": n + 16,
    }
    srv = EngramProcess.start(root, spaces=["fan-a", "fan-b"], settings=settings)
    try:
        res = asyncio.run(run(srv.http_url, n, recalls, seconds, 300 if args.quick else 1000))
    finally:
        srv.stop()
    idle = overhead_pct(res["recall_b_idle"]["p50_ms"], res["recall_b_0"]["p50_ms"])
    busy = overhead_pct(res["recall_b_busy"]["p50_ms"], res["recall_b_0"]["p50_ms"])
    ratio = res["write_a_consumed"]["rate_per_s"] / max(1e-9, res["write_a_0"]["rate_per_s"])
    summary = {
        "subscribers": n,
        "recall_b_p50_ms": {"none": res["recall_b_0"]["p50_ms"], "idle": res["recall_b_idle"]["p50_ms"],
                            "a_written_and_consumed": res["recall_b_busy"]["p50_ms"]},
        "recall_b_p50_overhead_idle_pct": idle,
        "recall_b_p50_overhead_busy_pct": busy,
        "write_a_per_s": {"none": res["write_a_0"]["rate_per_s"],
                          "consumed": res["write_a_consumed"]["rate_per_s"]},
        "write_a_ratio_consumed": round(ratio, 3),
        "target": {"recall_b_idle_overhead_max_pct": TARGET_PCT,
                   "met": idle is not None and idle <= TARGET_PCT},
    }
    show("summary", summary)
    write_json(out_path, {"benchmark": "subscribers", **stamp(args.quick),
                          "config": {"subscribers": n, "recalls": recalls, "write_seconds": seconds,
                                     "writers": 16, "settings": settings},
                          "results": res, "summary": summary})


if __name__ == "__main__":
    main()
