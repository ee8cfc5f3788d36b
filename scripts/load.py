#!/usr/bin/env python3
"""Bounded mixed-traffic load over many spaces against a real Engram server, with leak checks.

    python scripts/load.py                       # 30 s, 10 spaces, starts its own server
    python scripts/load.py --seconds 120 --concurrency 32 --json reports/load.json
    python scripts/load.py --requests 1500 --sample-every-requests 100   # sized by work, not time
    python scripts/load.py --http-url http://127.0.0.1:7432 --grpc-target 127.0.0.1:50051 --pid 1234

Traffic: half the workers speak REST (aiohttp), half gRPC (grpc.aio); each
loop picks an operation (remember 40%, recall in a random mode 25%, get,
list, forget, recognize, reminisce, associate, consolidate) in a random space.
Every space keeps a bounded working set (the oldest memory is forgotten past
``--working-set``), so a healthy server reaches a steady state; one SSE and
one gRPC event stream per space stay open throughout.

Pass/fail: no request errors, no isolation violations (every memory returned
carries its space's tag), and no unbounded growth of the server's RSS, open
file descriptors or threads (sampled with psutil on the server pid every
second, or every ``--sample-every-requests`` completed requests; the last third
of the samples is compared with the middle third), nor of its asyncio tasks when
the server exports ``engram_asyncio_tasks``. ``--requests N`` sizes the run by
work (it ends once N requests completed) instead of by ``--seconds``, so a busy
machine takes longer but checks the same amount. Prints a summary and writes
JSON (``--json``). Exit status 0 = pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from pathlib import Path
from typing import Any

DIM = 16


def vec(rng: random.Random) -> list[float]:
    return [round(rng.uniform(-1, 1), 3) or 0.1 for _ in range(DIM)]


class Load:
    def __init__(self, args: argparse.Namespace, http_url: str, grpc_target: str) -> None:
        self.args = args
        self.http_url = http_url
        self.grpc_target = grpc_target
        self.spaces = [f"load-{i:02d}" for i in range(args.spaces)]
        self.live: dict[str, deque[str]] = {s: deque() for s in self.spaces}
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.violations: list[str] = []
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.events = 0
        self.stop = asyncio.Event()
        self.seq = 0
        #: request counts at which a resource sample is due (``--sample-every-requests``)
        self.sample_ticks: asyncio.Queue[int] = asyncio.Queue()

    def new_id(self, space: str) -> str:
        self.seq += 1
        return f"{space}.{self.seq}"

    def error(self, op: str, detail: str) -> None:
        self.errors[op] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{op}: {detail[:300]}")

    def check_tags(self, space: str, obj: Any) -> None:
        if isinstance(obj, dict):
            meta = obj.get("metadata")
            if isinstance(meta, dict) and "space" in meta and meta["space"] != space:
                self.violations.append(f"{space} returned a memory of {meta['space']}")
            for v in obj.values():
                self.check_tags(space, v)
        elif isinstance(obj, list):
            for v in obj:
                self.check_tags(space, v)

    # -- workers ------------------------------------------------------------------
    async def rest_worker(self, wid: int) -> None:
        import aiohttp

        rng = random.Random(wid)
        async with aiohttp.ClientSession(self.http_url, timeout=aiohttp.ClientTimeout(total=30)) as http:
            while not self.stop.is_set():
                space = rng.choice(self.spaces)
                h = {"X-Memory-Space": space}
                op, method, path, body, params = self.pick(rng, space)
                t0 = time.perf_counter()
                try:
                    query = {k: v for k, v in params.items() if k != "id"}  # the id is in the path
                    async with http.request(method, path, json=body, params=query, headers=h) as resp:
                        data = await resp.json(content_type=None)
                        # Another worker may delete an id between pick and request: a 404 is the
                        # right answer then, for get, forget and associate alike.
                        gone_ok = op in ("get", "forget", "associate")
                        ok = resp.status < 300 or (resp.status == 404 and gone_ok)
                        if not ok and not (resp.status == 422 and op == "complete"):
                            self.error(op, f"REST {resp.status} {data}")
                        elif resp.status < 300:
                            self.check_tags(space, data)
                except Exception as exc:
                    if not self.stop.is_set():
                        self.error(op, f"REST {type(exc).__name__}: {exc}")
                self.done(op, space, t0, body)

    async def grpc_worker(self, wid: int) -> None:
        import grpc
        from google.protobuf.json_format import MessageToDict, ParseDict

        from engram.api.grpc.gen import service_pb2 as spb
        from engram.api.grpc.gen import service_pb2_grpc

        rng = random.Random(10_000 + wid)
        async with grpc.aio.insecure_channel(self.grpc_target) as ch:
            stub = service_pb2_grpc.EngramServiceStub(ch)
            while not self.stop.is_set():
                space = rng.choice(self.spaces)
                op, _, _, body, params = self.pick(rng, space)
                t0 = time.perf_counter()
                try:
                    if op == "remember":
                        req = ParseDict({"memory": body, "memory_space_id": space}, spb.RememberRequest())
                        await stub.Remember(req, timeout=30)
                    elif op == "recall":
                        cue = dict(body)
                        cue["mode"] = "RECALL_MODE_" + cue["mode"].upper()
                        res = await stub.Recall(
                            ParseDict({"cue": cue, "memory_space_id": space}, spb.RecallRequest()), timeout=30
                        )
                        self.check_tags(space, MessageToDict(res, preserving_proto_field_name=True))
                    elif op == "get":
                        res = await stub.GetMemory(
                            spb.GetMemoryRequest(memory_id=params["id"], memory_space_id=space), timeout=30
                        )
                        self.check_tags(space, MessageToDict(res, preserving_proto_field_name=True))
                    elif op == "forget":
                        await stub.Forget(
                            spb.ForgetRequest(memory_id=params["id"], mode=2, memory_space_id=space),
                            timeout=30,
                        )
                    elif op == "recognize":
                        await stub.Recognize(
                            spb.RecognizeRequest(content=body["content"], memory_space_id=space), timeout=30
                        )
                    elif op == "introspect":
                        await stub.Introspect(spb.IntrospectRequest(memory_space_id=space), timeout=30)
                    else:  # list, reminisce, associate, consolidate over gRPC: list is enough here
                        res = await stub.ListMemories(
                            spb.ListMemoriesRequest(page_size=50, memory_space_id=space), timeout=30
                        )
                        self.check_tags(space, MessageToDict(res, preserving_proto_field_name=True))
                except grpc.aio.AioRpcError as exc:
                    if not (exc.code() == grpc.StatusCode.NOT_FOUND and op in ("get", "forget")):
                        self.error(op, f"gRPC {exc.code().name} {exc.details()}")
                except Exception as exc:
                    if not self.stop.is_set():
                        self.error(op, f"gRPC {type(exc).__name__}: {exc}")
                self.done(op, space, t0, body)

    def pick(self, rng: random.Random, space: str) -> tuple[str, str, str, Any, dict[str, Any]]:
        live = self.live[space]
        r = rng.random()
        if r < 0.40 or len(live) < 5:
            mid = self.new_id(space)
            return (
                "remember",
                "POST",
                "/api/v1/memories/remember",
                {
                    "id": mid,
                    "content": f"note {mid} about topic {rng.randrange(50)}",
                    "embedding": vec(rng),
                    "metadata": {"space": space},
                },
                {},
            )
        if r < 0.65:
            return (
                "recall",
                "POST",
                "/api/v1/memories/recall",
                {
                    "embedding": vec(rng),
                    "query": f"topic {rng.randrange(50)}",
                    "max_results": 10,
                    "mode": rng.choice(["similarity", "spreading", "hybrid"]),
                },
                {},
            )
        if r < 0.75:
            mid = rng.choice(live)
            return ("get", "GET", f"/api/v1/memories/{mid}", None, {"id": mid})
        if r < 0.80:
            return ("list", "GET", "/api/v1/memories", None, {"limit": "50"})
        if r < 0.85:
            mid = live.popleft()
            return ("forget", "DELETE", f"/api/v1/memories/{mid}", None, {"id": mid, "mode": "delete"})
        if r < 0.90:
            return (
                "recognize",
                "POST",
                "/api/v1/memories/recognize",
                {"content": f"topic {rng.randrange(50)}"},
                {},
            )
        if r < 0.94:
            return ("reminisce", "GET", "/api/v1/episodes/reminisce", None, {"topic": "topic"})
        if r < 0.98:
            a, b = rng.sample(list(live), 2)
            return ("associate", "POST", "/api/v1/memories/associate", {"source_id": a, "target_id": b}, {})
        if r < 0.99:
            return ("introspect", "GET", f"/api/v1/spaces/{space}", None, {})
        return ("consolidate", "POST", "/api/v1/consolidate", {}, {})

    def done(self, op: str, space: str, t0: float, body: Any) -> None:
        self.ops[op] += 1
        self.latencies[op].append(time.perf_counter() - t0)
        total = self.ops.total()
        if self.args.sample_every_requests and total % self.args.sample_every_requests == 0:
            self.sample_ticks.put_nowait(total)
        if self.args.requests and total >= self.args.requests:
            self.stop.set()
        if op == "remember" and isinstance(body, dict):
            live = self.live[space]
            live.append(body["id"])
            # Bounded working set: a healthy server must reach a steady state.
            while len(live) > self.args.working_set:
                live.popleft()

    async def sse_listener(self, space: str) -> None:
        import aiohttp

        try:
            async with aiohttp.ClientSession(self.http_url) as http, http.get(
                "/api/v1/stream/memories",
                headers={"X-Memory-Space": space},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as resp:
                async for line in resp.content:
                    if self.stop.is_set():
                        return
                    if line.startswith(b"data:"):
                        self.events += 1
                        d = json.loads(line[5:])
                        if d.get("memory_space_id") not in (None, space):
                            self.violations.append(f"SSE of {space} delivered {d.get('memory_space_id')}")
        except Exception as exc:
            if not self.stop.is_set():
                self.error("sse", f"{type(exc).__name__}: {exc}")

    async def grpc_listener(self, space: str) -> None:
        import grpc

        from engram.api.grpc.gen import service_pb2 as spb
        from engram.api.grpc.gen import service_pb2_grpc

        try:
            async with grpc.aio.insecure_channel(self.grpc_target) as ch:
                call = service_pb2_grpc.EngramServiceStub(ch).Stream(spb.StreamRequest(memory_space_id=space))
                stopper = asyncio.ensure_future(self.stop.wait())
                try:
                    async for msg in call:
                        if msg.HasField("event"):
                            self.events += 1
                            if msg.event.memory_space_id != space:
                                self.violations.append(
                                    f"gRPC stream of {space} delivered {msg.event.memory_space_id}"
                                )
                        if self.stop.is_set():
                            break
                finally:
                    call.cancel()
                    stopper.cancel()
        except Exception as exc:
            if not self.stop.is_set() and "CANCELLED" not in str(exc):
                self.error("grpc-stream", f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- resource sampling


async def sample_server(pid: int, http_url: str, stop: asyncio.Event, every: float,
                        ticks: asyncio.Queue[int] | None = None) -> list[dict[str, float]]:
    """Samples at the start, then every ``every`` seconds until ``stop``; or, given ``ticks``, once
    per tick (a request count), every tick taken, those queued when the run stopped too."""
    import aiohttp
    import psutil

    proc = psutil.Process(pid)
    out = []

    async def sample(http: aiohttp.ClientSession, at: int | None) -> None:
        s: dict[str, float] = {
            "t": time.time(),
            "rss_mb": proc.memory_info().rss / 2**20,
            "fds": proc.num_fds(),
            "threads": proc.num_threads(),
            "cpu": proc.cpu_percent(),
        }
        if at is not None:
            s["requests"] = at
        try:
            async with http.get("/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("engram_asyncio_tasks "):
                        s["tasks"] = float(line.split()[1])
        except Exception:
            pass
        out.append(s)

    async with aiohttp.ClientSession(http_url) as http:
        await sample(http, 0 if ticks is not None else None)
        stopped = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            if ticks is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopped), every)
                if not stop.is_set():
                    await sample(http, None)
                continue
            tick = asyncio.ensure_future(ticks.get())
            await asyncio.wait([tick, stopped], return_when=asyncio.FIRST_COMPLETED)
            if tick.done():
                await sample(http, tick.result())
            else:
                tick.cancel()
        stopped.cancel()
        while ticks is not None and not ticks.empty():
            await sample(http, ticks.get_nowait())
    return out


def growth(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Middle third vs last third of the run: a leak keeps climbing, a steady state does not."""
    n = len(samples)
    if n < 6:
        return {"ok": True, "note": f"only {n} samples"}
    mid = samples[n // 3 : 2 * n // 3]
    last = samples[2 * n // 3 :]
    out: dict[str, Any] = {"ok": True}
    limits = {
        "rss_mb": lambda a: max(a * 0.25, 40.0),
        "fds": lambda a: 16.0,
        "threads": lambda a: 8.0,
        "tasks": lambda a: max(a * 0.5, 50.0),
    }
    for key, limit in limits.items():
        if key not in samples[-1]:
            continue
        a = statistics.median(s[key] for s in mid if key in s)
        b = max(s[key] for s in last if key in s)
        out[key] = {
            "middle_median": round(a, 2),
            "last_max": round(b, 2),
            "allowed_growth": round(limit(a), 2),
        }
        if b - a > limit(a):
            out["ok"] = False
            out[key]["unbounded"] = True
    return out


async def main_async(args: argparse.Namespace, http_url: str, grpc_target: str, pid: int) -> dict[str, Any]:
    import aiohttp

    load = Load(args, http_url, grpc_target)
    async with aiohttp.ClientSession(http_url) as http:
        for sp in load.spaces:
            async with http.post("/api/v1/spaces", json={"id": sp}) as resp:
                assert resp.status in (200, 201), await resp.text()
    stop_sampling = asyncio.Event()
    ticks = load.sample_ticks if args.sample_every_requests else None
    sampler = asyncio.ensure_future(sample_server(pid, http_url, stop_sampling, args.sample_every, ticks))
    listeners = [asyncio.ensure_future(load.sse_listener(sp)) for sp in load.spaces] + [
        asyncio.ensure_future(load.grpc_listener(sp)) for sp in load.spaces
    ]
    workers = [
        asyncio.ensure_future(load.rest_worker(i) if i % 2 == 0 else load.grpc_worker(i))
        for i in range(args.concurrency)
    ]
    t0 = time.time()
    if args.requests:  # sized by work: the workers stop it at the N-th completed request
        await load.stop.wait()
    else:
        await asyncio.sleep(args.seconds)  # the run's length, not synchronisation
    load.stop.set()
    await asyncio.wait(workers, timeout=60)
    for t in listeners:
        t.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    stop_sampling.set()
    samples = await sampler
    elapsed = time.time() - t0
    total = sum(load.ops.values())
    g = growth(samples)
    lat = {
        op: {
            "p50_ms": round(1000 * statistics.median(v), 2),
            "p99_ms": round(1000 * sorted(v)[int(0.99 * (len(v) - 1))], 2),
            "n": len(v),
        }
        for op, v in sorted(load.latencies.items())
        if v
    }
    return {
        "passed": not load.errors and not load.violations and g["ok"],
        "seconds": round(elapsed, 1),
        "spaces": len(load.spaces),
        "concurrency": args.concurrency,
        "requests": total,
        "requests_asked": args.requests,
        "requests_per_second": round(total / elapsed, 1),
        "sample_every_requests": args.sample_every_requests,
        "samples_taken": len(samples),
        "ops": dict(load.ops),
        "errors": dict(load.errors),
        "error_samples": load.error_samples,
        "isolation_violations": load.violations[:20],
        "events_received": load.events,
        "growth": g,
        "latency": lat,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="the run's length (unless --requests)")
    p.add_argument("--requests", type=int, default=None,
                   help="end the run once this many requests completed (instead of --seconds)")
    p.add_argument("--spaces", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--working-set", type=int, default=150, help="live memories kept per space")
    p.add_argument("--sample-every", type=float, default=1.0, help="seconds between resource samples")
    p.add_argument("--sample-every-requests", type=int, default=None,
                   help="sample every this many completed requests instead of every --sample-every s")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--http-url")
    p.add_argument("--grpc-target")
    p.add_argument("--pid", type=int)
    args = p.parse_args(argv)
    srv = None
    if args.http_url:
        if not (args.grpc_target and args.pid):
            p.error("--http-url needs --grpc-target and --pid")
        http_url, grpc_target, pid = args.http_url, args.grpc_target, args.pid
    else:
        from engram.testing import EngramProcess

        root = tempfile.mkdtemp(prefix="engram-load-")
        srv = EngramProcess.start(
            root,
            (),
            {"consolidation_interval_seconds": 0, "log_level": "warning"},
        )
        http_url, grpc_target, pid = srv.http_url, srv.grpc_target, srv.pid
    result: dict[str, Any] = {"passed": False}
    try:
        result = asyncio.run(main_async(args, http_url, grpc_target, pid))
    finally:
        if srv is not None:
            srv.stop()
            if result["passed"]:  # its data and logs (every run left them in /tmp); kept on failure
                shutil.rmtree(srv.root, ignore_errors=True)
            else:
                print(f"server data and logs kept in {srv.root}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k not in ("samples", "latency")}
    print(json.dumps(summary, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
