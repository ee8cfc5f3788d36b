#!/usr/bin/env python3
"""gRPC throughput against a real server, with the transport ceilings measured in the same run.

    python bench/grpc.py [--clients 32] [--seconds 5] [--out bench/results/grpc.json]

Starts one ``engram start`` process (fsync durability, fresh data root), then
runs, each for ``--seconds`` with ``--clients`` concurrent clients on one
grpc.aio channel each:

* ``echo``               unary Echo (no work: the unary ceiling)
* ``remember``           unary Remember, durable (group commit)
* ``remember_vector``    unary Remember of a memory with a 384-d client vector, into a space
                         that takes client vectors only (the write path with a vector)
* ``recall``             unary Recall (text query) over what was stored
* ``echo_stream``        EchoStream, one bidi stream per client (the streaming ceiling)
* ``streaming_remember`` StreamingRemember, one bidi stream per client, pipelined; counts
                         durable memories acknowledged per second

and reports RPC/s (or messages/s) with P50/P99 latency, the server's CPU time per operation
(user + system, read from ``/proc`` for the server process and its children around each
phase: what an operation costs the server, whatever the client's share of the cores; and
separately its main thread's, the event loop's: ``loop_cpu_us_per_op``, and split into user
and system time ``loop_user_sys_us_per_op``), plus
the ratios the issue targets: Remember >= 60% of Echo, StreamingRemember >= 50% of EchoStream.
``--only remember,echo`` runs just those phases (for interleaved runs of two builds).
Not a test: numbers depend on the machine (client and server share its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory is sys.path[0] and this module would shadow `grpc`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "src"))

import grpc  # noqa: E402

from engram.api.grpc.gen import memory_pb2 as pb  # noqa: E402
from engram.api.grpc.gen import service_pb2 as spb  # noqa: E402
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc  # noqa: E402
from engram.testing import EngramProcess  # noqa: E402

SPACE = "bench"
VECTOR_SPACE = "bench-vec"
WINDOW = 64  # in-flight messages per bidi stream


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant (from ``/proc``)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return total


def loop_cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of the server's main thread (its event loop: the thread id is the pid)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def with_cpu(pid: int, result: dict[str, Any], cpu: float,
             loop_cpu: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    count = result.get("ops", result.get("messages", 0))
    result["server_cpu_s"] = round(cpu, 3)
    result["server_cpu_us_per_op"] = round(cpu * 1e6 / count, 1) if count else None
    result["loop_cpu_us_per_op"] = round(sum(loop_cpu) * 1e6 / count, 1) if count else None
    result["loop_user_sys_us_per_op"] = [round(x * 1e6 / count, 1) for x in loop_cpu] if count else None
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def unary_phase(stubs: list[Any], seconds: float, make: Callable[[Any, int, int], Awaitable[Any]]) -> dict[str, Any]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(idx: int, stub: Any) -> int:
        n = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await make(stub, idx, n)
            lat.append(time.perf_counter() - t0)
            n += 1
        return n

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(i, s) for i, s in enumerate(stubs)))
    elapsed = time.perf_counter() - t0
    return {"ops": sum(counts), "seconds": round(elapsed, 3), "rate": round(sum(counts) / elapsed, 1),
            "p50_ms": round(pct(lat, 0.50), 3), "p99_ms": round(pct(lat, 0.99), 3)}


async def bidi_phase(stubs: list[Any], seconds: float, method: str,
                     make: Callable[[int, int], Any], ok: Callable[[Any], bool]) -> dict[str, Any]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    errors = 0

    async def worker(idx: int, stub: Any) -> int:
        nonlocal errors
        sent: dict[int, float] = {}
        window = asyncio.Semaphore(WINDOW)
        done = 0

        async def requests() -> Any:
            seq = 0
            while time.perf_counter() < stop:
                await window.acquire()
                seq += 1
                sent[seq] = time.perf_counter()
                yield make(idx, seq)

        async for resp in getattr(stub, method)(requests()):
            lat.append(time.perf_counter() - sent.pop(resp.sequence))
            if ok(resp):
                done += 1
            else:
                errors += 1
            window.release()
        return done

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(i, s) for i, s in enumerate(stubs)))
    elapsed = time.perf_counter() - t0
    return {"messages": sum(counts), "errors": errors, "seconds": round(elapsed, 3),
            "rate": round(sum(counts) / elapsed, 1), "p50_ms": round(pct(lat, 0.50), 3),
            "p99_ms": round(pct(lat, 0.99), 3)}


async def run(target: str, clients: int, seconds: float, pid: int,
              only: set[str] | None = None) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
    stubs = [spb_grpc.EngramServiceStub(ch) for ch in channels]
    await stubs[0].CreateSpace(spb.CreateSpaceRequest(memory_space_id=SPACE))
    await stubs[0].CreateSpace(spb.CreateSpaceRequest(
        memory_space_id=VECTOR_SPACE, dimension=384, embedder=spb.EmbedderChoice(provider="none")))
    rng = random.Random(5)
    vectors = []
    for _ in range(256):  # unit vectors, sent as gRPC's packed floats
        v = [rng.gauss(0.0, 1.0) for _ in range(384)]
        norm = sum(x * x for x in v) ** 0.5
        vectors.append([x / norm for x in v])
    payload = b"x" * 100
    content = "benchmark memory about espresso machines and the third floor kitchen "  # ~70 chars
    results: dict[str, Any] = {}

    async def echo(stub: Any, i: int, n: int) -> Any:
        return await stub.Echo(spb.EchoRequest(payload=payload))

    async def remember(stub: Any, i: int, n: int) -> Any:
        return await stub.Remember(spb.RememberRequest(memory=pb.MemoryInput(content=f"{content} {i} {n}"),
                                                       memory_space_id=SPACE))

    async def remember_vector(stub: Any, i: int, n: int) -> Any:
        return await stub.Remember(spb.RememberRequest(
            memory=pb.MemoryInput(content=f"vector memory {i} {n}", embedding=vectors[(i * 31 + n) % 256]),
            memory_space_id=VECTOR_SPACE))

    async def recall(stub: Any, i: int, n: int) -> Any:
        return await stub.Recall(spb.RecallRequest(cue=pb.Cue(query=f"espresso {n % 50}", max_results=10),
                                                   memory_space_id=SPACE))

    def wanted(name: str) -> bool:
        return only is None or name in only

    async def phase(name: str, run_it: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        if wanted(name):
            before, loop_before = cpu_seconds(pid), loop_cpu_seconds(pid)
            result = await run_it()
            loop_after = loop_cpu_seconds(pid)
            results[name] = with_cpu(pid, result, cpu_seconds(pid) - before,
                                     (loop_after[0] - loop_before[0], loop_after[1] - loop_before[1]))

    # warm-up (connections, code paths)
    await unary_phase(stubs, 0.5, echo)
    await phase("echo", lambda: unary_phase(stubs, seconds, echo))
    await phase("remember", lambda: unary_phase(stubs, seconds, remember))
    await phase("remember_vector", lambda: unary_phase(stubs, seconds, remember_vector))
    await phase("recall", lambda: unary_phase(stubs, seconds, recall))
    await phase("echo_stream", lambda: bidi_phase(
        stubs, seconds, "EchoStream", lambda i, s: spb.EchoStreamRequest(sequence=s, payload=payload),
        lambda r: True))
    await phase("streaming_remember", lambda: bidi_phase(
        stubs, seconds, "StreamingRemember",
        lambda i, s: spb.StreamingRememberRequest(sequence=s, memory=pb.MemoryInput(content=f"{content} s{i} {s}"),
                                                  memory_space_id=SPACE),
        lambda r: r.HasField("receipt") and r.receipt.durability == pb.DURABILITY_FSYNC))
    for ch in channels:
        await ch.close()
    ratios: dict[str, Any] = {"remember_target": 0.60, "streaming_remember_target": 0.50}
    if "remember" in results and "echo" in results:
        ratios["remember_vs_echo"] = round(results["remember"]["rate"] / results["echo"]["rate"], 3)
    if "streaming_remember" in results and "echo_stream" in results:
        ratios["streaming_remember_vs_echo_stream"] = round(
            results["streaming_remember"]["rate"] / results["echo_stream"]["rate"], 3)
    results["ratios"] = ratios
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "grpc.json"))
    parser.add_argument("--only", default="", help="comma-separated phases to run (default: all)")
    parser.add_argument("--embedder", default="hash",
                        help="the server's embedder: hash (default: text is embedded in the background, "
                             "as in use) or none (the write path alone)")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a server setting (repeatable), e.g. --setting gc_young_threshold=0")
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.setting)
    only = {p.strip() for p in args.only.split(",") if p.strip()} or None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        settings = {"log_level": "warning", "embedder": args.embedder, **extra}
        with EngramProcess.start(Path(tmp), settings=settings) as srv:
            results = asyncio.run(run(srv.grpc_target, args.clients, args.seconds, srv.pid, only))
    report = {"benchmark": "grpc", "clients": args.clients, "embedder": args.embedder, "settings": extra,
              "seconds_per_phase": args.seconds,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "load_average": {"before": [round(x, 2) for x in load_before],
                               "after": [round(x, 2) for x in os.getloadavg()]},
              "results": results}
    for name in ("echo", "remember", "remember_vector", "recall", "echo_stream", "streaming_remember"):
        if name not in results:
            continue
        r = results[name]
        print(f"{name:20s} {r['rate']:>10.1f}/s   p50 {r['p50_ms']:>7.2f} ms   p99 {r['p99_ms']:>7.2f} ms"
              f"   server CPU {r['server_cpu_us_per_op'] or 0:>7.1f} us/op"
              f" (event loop {r.get('loop_cpu_us_per_op') or 0:.1f})")
    ratios = results["ratios"]
    if "remember_vs_echo" in ratios:
        print(f"Remember / Echo                 = {ratios['remember_vs_echo']:.2f} (target >= 0.60)")
    if "streaming_remember_vs_echo_stream" in ratios:
        print(f"StreamingRemember / EchoStream  = {ratios['streaming_remember_vs_echo_stream']:.2f} "
              "(target >= 0.50)")
    print("load average before {} after {}".format(*report["load_average"].values()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
