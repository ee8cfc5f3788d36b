#!/usr/bin/env python3
"""Recall throughput with 1 and with 16 concurrent callers, REST and gRPC, in one run.

    python bench/recall_scaling.py [--quick] [--memories 20000] [--dim 384] [--seconds 4]
                                   [--rounds 3] [--profile DIR] [--writers-per-s 0] [--write-text]
                                   [--out bench/results/recall_scaling.json]

Starts one ``engram start`` (fsync durability, embedder ``none``), fills one space with
``--memories`` clustered unit vectors (base64 remember), then measures, for each
transport (REST with aiohttp, one keep-alive connection per caller; gRPC with grpc.aio,
one channel per caller) and each cue (``embedding``: top 10 by vector, rank
"similarity"; ``text``: a 12-word question), calls per second and P50/P99 at 1 and at
16 callers. The phases are interleaved and repeated ``--rounds`` times, and the ratio
16/1 is taken per round (the machine is shared: a ratio within one round is what
carries over). ``--profile DIR`` records the server with py-spy during one 1-caller and
one 16-caller phase of each transport (``DIR/<phase>.txt``: collapsed stacks).

``--writers-per-s N`` runs a background writer during every phase: one REST client remembering
N memories a second (a new vector each, paced) into the measured space, as agents remember while
others recall. Each phase then also reports the writes acknowledged and, from ``/metrics``, how many
of its recalls a read worker answered (``served``) or the server (``server``), and how the workers'
copies were made current (``caught_up`` / ``reloaded``). Writes make the space grow: pass
``--settings exact_search_max=...`` above the final size to keep it searched exactly (a space
whose HNSW index is in use is not served by workers). ``--write-text`` makes those writes text
only (no vector), as agents write: the server then runs the ``hash`` embedder (``--dim``
dimensions; the filled vectors stay client vectors) and embeds them in the background, so the
space has an embedding backlog most of the time; each phase also reports how many of its
answers said so (``backlog_answers``, sampled from the answers' metadata over REST).

The target (issue 15): throughput at 16 callers >= 1.6x one caller's, REST and gRPC.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import base64
import contextlib
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
from benchlib import (
    RESULTS,
    dataset,
    exit_on_sigterm,
    latency_summary,
    rmtree,
    show,
    stamp,
    tmpdir,
    write_json,
)

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess

SPACE = "scaling"
TARGET = 1.6
WORDS = ("espresso", "printer", "violin", "heron", "quokka", "atrium", "kitchen", "boat", "garden", "lamp",
         "harbour", "lantern", "orchard", "meeting", "budget", "trip", "sister", "doctor", "recipe", "train")
QUESTIONS = (
    "what did my sister say about the budget for the trip to the harbour last spring",
    "when is the meeting with the doctor about the recipe for the orchard festival again",
    "where did we leave the lantern after the boat trip with the printer people",
    "which train did the violin teacher take to the garden party near the atrium",
)


def b64(vec: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode("ascii")


def content(i: int) -> str:
    rng = np.random.default_rng(i)
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), 8)]
    return f"memory {i}: the " + " and the ".join(words)


async def fill(base: str, vecs: np.ndarray, writers: int = 32) -> float:
    next_i = 0
    headers = {"X-Memory-Space": SPACE}
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=0)) as s:

        async def writer() -> None:
            nonlocal next_i
            while next_i < len(vecs):
                i = next_i
                next_i += 1
                body = {"id": f"m{i}", "content": content(i), "embedding": b64(vecs[i])}
                async with s.post("/api/v1/memories/remember", headers=headers, json=body) as r:
                    if r.status != 201:
                        raise RuntimeError(f"remember: {r.status} {(await r.read())[:200]!r}")
                    await r.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return time.perf_counter() - t0


async def wait_indexed(base: str, probe: np.ndarray, timeout: float = 600.0) -> float:
    """Seconds until the space's index (if it has one) covers every stored vector."""
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(base) as s:
        while time.perf_counter() - t0 < timeout:
            async with s.post("/api/v1/memories/recall", headers={"X-Memory-Space": SPACE},
                              json={"embedding": b64(probe), "max_results": 1}) as r:
                index = (await r.json()).get("metadata", {}).get("index") or {}
            if index.get("kind") != "hnsw" or (index.get("ready") and not index.get("pending")):
                break
            await asyncio.sleep(0.2)
    return time.perf_counter() - t0


Call = Callable[[int], Awaitable[None]]


async def timed(callers: int, seconds: float, make: Callable[[int], Call]) -> dict[str, Any]:
    calls = [make(i) for i in range(callers)]
    await asyncio.gather(*(c(-1) for c in calls))  # connections open, paths warm
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(call: Call) -> int:
        n = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await call(n)
            lat.append((time.perf_counter() - t0) * 1000)
            n += 1
        return n

    t0 = time.perf_counter()
    done = sum(await asyncio.gather(*(worker(c) for c in calls)))
    elapsed = time.perf_counter() - t0
    return {"callers": callers, "calls": done, "per_s": round(done / elapsed, 1), **latency_summary(lat)}


def rest_caller(base: str, queries: np.ndarray, cue: str, sessions: list[aiohttp.ClientSession],
                backlog: list[int] | None = None) -> Callable[[int], Call]:
    headers = {"X-Memory-Space": SPACE}
    floats = [q.tolist() for q in queries] if cue == "embedding_floats" else []

    def make(idx: int) -> Call:
        s = aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=1))
        sessions.append(s)

        async def call(n: int) -> None:
            k = (idx * 7919 + n) % len(queries)
            body: dict[str, Any] = (
                {"embedding": b64(queries[k]), "max_results": 10, "rank": "similarity"} if cue == "embedding"
                # as JSON floats (what peer_chroma_server's headline recall sends); REST only
                else {"embedding": floats[k], "max_results": 10, "rank": "similarity"}
                if cue == "embedding_floats"
                else {"query": QUESTIONS[k % len(QUESTIONS)], "max_results": 10}
            )
            async with s.post("/api/v1/memories/recall", json=body, headers=headers) as r:
                data = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"recall: {r.status} {data[:200]!r}")
                if backlog is not None and b'"embedding_backlog":' in data:
                    backlog[0] += 1
                    backlog[1] += int(_BACKLOG.search(data).group(1) != b"0")  # type: ignore[union-attr]

        return call

    return make


def grpc_caller(target: str, queries: np.ndarray, cue: str, channels: list[Any]) -> Callable[[int], Call]:
    def make(idx: int) -> Call:
        ch = grpc.aio.insecure_channel(target)
        channels.append(ch)
        stub = spb_grpc.EngramServiceStub(ch)

        async def call(n: int) -> None:
            k = (idx * 7919 + n) % len(queries)
            if cue == "embedding":
                c = pb.Cue(embedding=queries[k].tolist(), max_results=10, rank=pb.RANK_MODE_SIMILARITY)
            else:
                c = pb.Cue(query=QUESTIONS[k % len(QUESTIONS)], max_results=10)
            await stub.Recall(spb.RecallRequest(cue=c, memory_space_id=SPACE))

        return call

    return make


_BACKLOG = re.compile(rb'"embedding_backlog":\s*(\d+)')
_METRIC = re.compile(
    r'^engram_(recall_worker|read_worker_copies)_total\{(?:outcome|how)="(\w+)"\} ([0-9.e+]+)$', re.M)


async def worker_counts(base: str) -> dict[str, float]:
    """The read-worker counters of ``/metrics``: served / server recalls, caught_up / reloaded copies."""
    async with aiohttp.ClientSession(base) as s, s.get("/metrics") as r:
        text = await r.text()
    return {m.group(2): float(m.group(3)) for m in _METRIC.finditer(text)}


async def steady_writer(base: str, per_s: float, dim: int, stop: asyncio.Event, acked: list[float],
                        text: bool = False) -> None:
    """Remember ``per_s`` memories a second (paced from the start, not from each answer) until ``stop``;
    ``text``: text only, for the server to embed."""
    rng = np.random.default_rng(int(time.time()))
    headers = {"X-Memory-Space": SPACE}
    t0 = time.perf_counter()
    n = 0
    async with aiohttp.ClientSession(base) as s:
        while not stop.is_set():
            v = rng.standard_normal(dim).astype(np.float32)
            body: dict[str, Any] = {"content": f"written during the phase {n}: " + content(n + 10_000_000)}
            if not text:
                body["embedding"] = b64(v / np.linalg.norm(v))
            sent = time.perf_counter()
            async with s.post("/api/v1/memories/remember", headers=headers, json=body) as r:
                if r.status != 201:
                    raise RuntimeError(f"remember: {r.status} {(await r.read())[:200]!r}")
                await r.read()
            acked.append((time.perf_counter() - sent) * 1000)
            n += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, t0 + n / per_s - time.perf_counter()))


async def phase(srv: EngramProcess, transport: str, cue: str, callers: int, seconds: float,
                queries: np.ndarray, writes_per_s: float = 0.0, write_text: bool = False) -> dict[str, Any]:
    import psutil

    sessions: list[aiohttp.ClientSession] = []
    channels: list[Any] = []
    backlog = [0, 0]  # answers that carried embedding_backlog, of them with a backlog
    make = (rest_caller(srv.http_url, queries, cue, sessions, backlog) if transport == "rest"
            else grpc_caller(srv.grpc_target, queries, cue, channels))
    server = psutil.Process(srv.pid)

    def server_cpu() -> float:
        """The server's CPU seconds, its read workers' (child processes, read_workers) included."""
        total = sum(server.cpu_times()[:2])
        for child in server.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker that left meanwhile
                total += sum(child.cpu_times()[:2])
        return total

    stop = asyncio.Event()
    acked: list[float] = []
    writer = None
    try:
        counts0 = await worker_counts(srv.http_url)
        if writes_per_s > 0:
            writer = asyncio.create_task(
                steady_writer(srv.http_url, writes_per_s, queries.shape[1], stop, acked, write_text))
        s0, c0 = server_cpu(), time.process_time()
        out = await timed(callers, seconds, make)
        s1, c1 = server_cpu(), time.process_time()
        stop.set()
        if writer is not None:
            await writer
        counts1 = await worker_counts(srv.http_url)
        # CPU per call (load-independent, unlike rates on a shared machine): where the time goes.
        calls = max(1, out["calls"] + callers)
        out["server_cpu_ms_per_call"] = round(1000 * (s1 - s0) / calls, 3)
        out["client_cpu_ms_per_call"] = round(1000 * (c1 - c0) / calls, 3)
        out["workers"] = {k: int(counts1.get(k, 0) - counts0.get(k, 0))
                          for k in ("served", "server", "caught_up", "reloaded")}
        if writes_per_s > 0:
            out["writes"] = len(acked)
            out["write_p50_ms"] = round(statistics.median(acked), 2) if acked else None
        if backlog[0]:
            out["backlog_answers"] = f"{backlog[1]}/{backlog[0]}"
        return out
    finally:
        stop.set()
        if writer is not None and not writer.done():
            writer.cancel()
        for s in sessions:
            await s.close()
        for ch in channels:
            await ch.close()


def profile_start(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found on PATH: no profile", flush=True)
        return None
    # --gil: only the thread holding the GIL is sampled, so shares are shares of the GIL's time.
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "200", "--format", "raw", "--gil", "--output", str(out),
                             "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def served_share(phases: list[dict[str, Any]]) -> float:
    """The share of the phases' recalls a read worker answered."""
    served = sum(p["workers"]["served"] for p in phases)
    return round(served / max(1, served + sum(p["workers"]["server"] for p in phases)), 3)


async def measure(srv: EngramProcess, args: argparse.Namespace, queries: np.ndarray) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        got: dict[str, Any] = {}
        for transport in ("rest", "grpc"):
            for cue in args.cues:
                for callers in (1, 16):
                    name = f"{transport}_{cue}_{callers}"
                    spy = None
                    if args.profile and r == 0:
                        spy = profile_start(srv.pid, args.profile / f"{name}.txt", args.seconds)
                    got[name] = await phase(srv, transport, cue, callers, args.seconds, queries,
                                            args.writers_per_s, args.write_text)
                    if spy is not None:
                        spy.wait(30)
                    g = got[name]
                    w = g["workers"]
                    wrote = f"  writes {g['writes']} (P50 {g['write_p50_ms']} ms)" if "writes" in g else ""
                    if "backlog_answers" in g:
                        wrote += f"  answers with a backlog {g['backlog_answers']}"
                    print(f"round {r}: {name:<24} {g['per_s']:>8.1f}/s  P50 {g['p50_ms']:.2f} ms"
                          f"  P99 {g['p99_ms']:.2f} ms  server CPU {g['server_cpu_ms_per_call']:.2f} ms"
                          f"  client CPU {g['client_cpu_ms_per_call']:.2f} ms  worker served {w['served']}"
                          f" / server {w['server']}  copies caught up {w['caught_up']} / reloaded"
                          f" {w['reloaded']}{wrote}", flush=True)
        rounds.append(got)
    summary: dict[str, Any] = {}
    for transport in ("rest", "grpc"):
        for cue in args.cues:
            ratios = [rd[f"{transport}_{cue}_16"]["per_s"] / rd[f"{transport}_{cue}_1"]["per_s"]
                      for rd in rounds if rd[f"{transport}_{cue}_1"]["per_s"]]
            summary[f"{transport}_{cue}"] = {
                "per_s_1": statistics.median(rd[f"{transport}_{cue}_1"]["per_s"] for rd in rounds),
                "per_s_16": statistics.median(rd[f"{transport}_{cue}_16"]["per_s"] for rd in rounds),
                "p50_ms_1": statistics.median(rd[f"{transport}_{cue}_1"]["p50_ms"] for rd in rounds),
                "p50_ms_16": statistics.median(rd[f"{transport}_{cue}_16"]["p50_ms"] for rd in rounds),
                "p99_ms_16": statistics.median(rd[f"{transport}_{cue}_16"]["p99_ms"] for rd in rounds),
                "ratio_16_over_1_per_round": [round(x, 3) for x in ratios],
                "ratio_16_over_1_median": round(statistics.median(ratios), 3) if ratios else None,
                "worker_served_share": {n: served_share([rd[f"{transport}_{cue}_{n}"] for rd in rounds])
                                        for n in (1, 16)},
            }
    return {"rounds": rounds, "summary": summary}


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memories", type=int, help="stored vectors (default 20,000; quick 2,000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--seconds", type=float, help="per phase (default 4; quick 1.5)")
    ap.add_argument("--rounds", type=int, help="interleaved repetitions (default 3; quick 1)")
    ap.add_argument("--cues", default="embedding,text")
    ap.add_argument("--profile", type=Path, help="directory for py-spy profiles of the first round")
    ap.add_argument("--settings", default="", help="extra server settings, k=v,k=v (for experiments)")
    ap.add_argument("--read-workers", default="0,1",
                    help="the read_workers settings to measure, one server each (default 0,1); the "
                         "summary's keys take the suffix _workersN for N > 0")
    ap.add_argument("--writers-per-s", type=float, default=0.0,
                    help="a background client remembering this many memories a second into the "
                         "measured space during every phase (default 0: none)")
    ap.add_argument("--write-text", action="store_true",
                    help="the background writes are text only, embedded by the server (hash embedder)")
    ap.add_argument("--out", default=str(RESULTS / "recall_scaling.json"))
    args = ap.parse_args()
    args.memories = args.memories or (2_000 if args.quick else 20_000)
    args.seconds = args.seconds or (1.5 if args.quick else 4.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.cues = [c for c in args.cues.split(",") if c]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    extra = dict(kv.split("=", 1) for kv in args.settings.split(",") if kv)
    vecs = dataset(args.memories, args.dim, 21)
    queries = vecs[np.random.default_rng(22).integers(0, len(vecs), 256)]
    results: dict[str, Any] = {**stamp(args.quick), "benchmark": "recall_scaling", "memories": args.memories,
                               "dim": args.dim, "seconds": args.seconds, "settings": extra,
                               "writers_per_s": args.writers_per_s, "write_text": args.write_text,
                               "rounds_by_config": {}, "summary": {}}
    for workers in [int(w) for w in args.read_workers.split(",") if w]:
        suffix = f"_workers{workers}" if workers else ""
        tmp = tmpdir("engram-scaling-")
        srv: EngramProcess | None = None
        try:
            srv = EngramProcess.start(tmp, spaces=(SPACE,), settings={
                "durability": "fsync", "log_level": "warning", "embedder": "none",
                **({"embedder": "hash", "hash_dimension": args.dim} if args.write_text else {}), **extra,
                "read_workers": workers})
            results[f"fill_seconds{suffix}"] = round(asyncio.run(fill(srv.http_url, vecs)), 2)
            waited = asyncio.run(wait_indexed(srv.http_url, vecs[0]))
            results[f"index_wait_seconds{suffix}"] = round(waited, 2)
            print(f"read_workers = {workers}", flush=True)
            got = asyncio.run(measure(srv, args, queries))
        finally:
            if srv is not None:
                srv.stop()
            rmtree(tmp)
        results["rounds_by_config"][f"read_workers={workers}"] = got["rounds"]
        results["summary"].update({k + suffix: v for k, v in got["summary"].items()})
    by_config = results["rounds_by_config"]  # the server alone's rounds, else the first config's
    results["rounds"] = by_config.get("read_workers=0") or next(iter(by_config.values()), [])
    results["target"] = {
        "ratio_16_over_1": TARGET,
        "met": {k: bool((v["ratio_16_over_1_median"] or 0) >= TARGET) for k, v in results["summary"].items()},
    }
    show("summary", results["summary"])
    write_json(args.out, results)


if __name__ == "__main__":
    main()
