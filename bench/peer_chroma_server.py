#!/usr/bin/env python3
"""Engram's server beside Chroma's server, the same raw HTTP client against both, in one run.

    python bench/peer_chroma_server.py [--quick] [--memories 20000] [--dim 384]
                                       [--settings KEY=VALUE,...]
                                       [--out bench/results/peer_chroma_server.json]

``--settings`` passes Engram settings to its server (as ``ENGRAM_*`` variables), e.g.
``--settings blas_threads=0,vector_float32_max=0`` for the side-by-side with the previous
vector store and BLAS defaults; they are recorded in the results.

Both sides are real servers on loopback, each in its own process, started here on free
ports with temporary data directories:

* Engram: ``engram start`` (fsync durability, group commit, embedder ``none``: the
  vectors come from the client), one memory space.
* Chroma: ``chroma run`` (chromadb 1.5.9, from bench/.venv-chroma, installed by
  bench/peer_chroma.py's ``ensure_chroma_venv``), one collection with cosine HNSW.

One aiohttp client (one keep-alive connection per concurrent caller) sends:

* single ingest: one record per request, ``--writers`` in flight (Engram
  ``POST /api/v1/memories/remember``; Chroma ``add`` with one id); Engram also with the
  vector as base64 float32 (``"embedding": "<base64>"``).
* batched ingest: the whole data set in batches of 256 (Chroma ``add`` with 256 ids;
  Engram ``POST /api/v1/memories/batch {"memories": [...]}``, SPEC §11, vectors as base64
  float32; Chroma takes JSON arrays only). When Engram's
  batch route is not served (404/405), it is reported "not available" and the space is
  filled with single remembers instead.
* recall by embedding, top 10, with 1 and with 16 concurrent clients: QPS, P50, P99
  (Engram ``POST /api/v1/memories/recall {"embedding", "max_results": 10, "rank":
  "similarity"}``; Chroma ``query`` with ``n_results: 10``, documents and distances).
* recall@10 of the one-client answers against exact float32 search.
* RSS of each server process (and its children) after the run, and disk.

Data: ``--memories`` clustered unit vectors of ``--dim`` (bench/benchlib.py ``dataset``),
queries near stored vectors. Ratios are Engram/Chroma within this run: the client and
both servers share the machine's cores, so only ratios carry over between runs.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import asyncio
import base64
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from benchlib import (
    RESULTS,
    dataset,
    exact_topk,
    exit_on_sigterm,
    latency_summary,
    queries_near,
    recall_at_k,
    rmtree,
    show,
    stamp,
    tmpdir,
    write_json,
)
from peer_chroma import CHROMA_VERSION, ensure_chroma_venv

from engram.testing import EngramProcess

SPACE = "peer"
BATCH = 256
TENANT, DATABASE = "default_tenant", "default_database"
Call = Callable[[aiohttp.ClientSession, int], Awaitable[list[str] | None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def b64(vec: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode("ascii")


def tree_rss(pid: int) -> int:
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that exited meanwhile
            total += child.memory_info().rss
    return int(total)


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- load -------------------------------------------------------------------------------
async def drive(base: str, clients: int, items: int, call: Call) -> dict[str, Any]:
    """``items`` calls, ``clients`` at a time (each its own connection); latency per call."""
    lat: list[float] = []
    answers: dict[int, list[str]] = {}
    errors = 0
    next_i = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def worker() -> None:
            nonlocal next_i, errors
            while next_i < items:
                i = next_i
                next_i += 1
                t0 = time.perf_counter()
                try:
                    got = await call(session, i)
                except RuntimeError as exc:
                    errors += 1
                    if errors <= 3:
                        print(f"  error: {exc}", flush=True)
                    continue
                lat.append((time.perf_counter() - t0) * 1000)
                if got is not None:
                    answers[i] = got

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"clients": clients, "calls": items, "errors": errors, "seconds": round(elapsed, 3),
            "per_s": round(len(lat) / elapsed, 1), **latency_summary(lat), "answers": answers}


async def post(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
    async with session.post(path, json=body) as r:
        data = await r.read()
        if r.status >= 300:
            raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
        return data


async def post_json(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
    async with session.post(path, json=body) as r:
        if r.status >= 300:
            raise RuntimeError(f"{path}: {r.status} {(await r.read())[:300]!r}")
        return await r.json()


# -- Engram -----------------------------------------------------------------------------
class EngramSide:
    name = "engram"

    def __init__(self, srv: EngramProcess) -> None:
        self.srv = srv
        self.base = srv.http_url
        self.pid = srv.pid
        self.path = srv.data_dir
        self.batch_available: bool | None = None

    async def setup(self, dim: int) -> None:
        async with aiohttp.ClientSession(self.base) as s:
            for space in (SPACE, SPACE + "-single", SPACE + "-b64"):
                await post(s, "/api/v1/spaces", {"id": space, "dimension": dim,
                                                 "embedder": {"provider": "none"}})

    def single(self, vecs: np.ndarray, space: str, encode: str = "json") -> Call:
        headers = {"X-Memory-Space": space}

        async def call(s: aiohttp.ClientSession, i: int) -> None:
            emb: Any = b64(vecs[i]) if encode == "base64" else vecs[i].tolist()
            async with s.post("/api/v1/memories/remember", headers=headers,
                              json={"id": f"m{i}", "content": f"memory {i}", "embedding": emb}) as r:
                data = await r.read()
                if r.status != 201:
                    raise RuntimeError(f"remember: {r.status} {data[:300]!r}")
            return None

        return call

    async def probe_batch(self) -> bool:
        async with aiohttp.ClientSession(self.base) as s, s.post(
            "/api/v1/memories/batch", json={"memories": []}, headers={"X-Memory-Space": SPACE}
        ) as r:
            await r.read()
            return r.status not in (404, 405)

    def batched(self, vecs: np.ndarray) -> Call:
        headers = {"X-Memory-Space": SPACE}

        async def call(s: aiohttp.ClientSession, b: int) -> None:
            lo, hi = b * BATCH, min(len(vecs), (b + 1) * BATCH)
            # base64 float32 vectors (SPEC §9): what a client that batches for speed sends
            body = {"memories": [{"id": f"m{i}", "content": f"memory {i}", "embedding": b64(vecs[i])}
                                 for i in range(lo, hi)]}
            async with s.post("/api/v1/memories/batch", json=body, headers=headers) as r:
                data = await r.read()
                if r.status >= 300:
                    raise RuntimeError(f"batch: {r.status} {data[:300]!r}")
            return None

        return call

    def query(self, queries: np.ndarray, encode: str = "json") -> Call:
        headers = {"X-Memory-Space": SPACE}

        async def call(s: aiohttp.ClientSession, i: int) -> list[str]:
            q = queries[i % len(queries)]
            emb: Any = b64(q) if encode == "base64" else q.tolist()
            body = {"embedding": emb, "max_results": 10, "rank": "similarity"}
            async with s.post("/api/v1/memories/recall", json=body, headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"recall: {r.status} {(await r.read())[:300]!r}")
                res = await r.json()
            mem = res["memories"]
            items = sorted([*mem["vivid"], *mem["associated"]], key=lambda it: -it["score"])
            return [it["memory"]["id"] for it in items]

        return call

    async def wait_indexed(self, probe: np.ndarray, timeout: float = 600.0) -> float:
        """Seconds until the space's index has caught up with every acknowledged write."""
        t0 = time.perf_counter()
        async with aiohttp.ClientSession(self.base) as s:
            while time.perf_counter() - t0 < timeout:
                res = await post_json(s, "/api/v1/memories/recall",
                                      {"embedding": probe.tolist(), "max_results": 1,
                                       "memory_space_id": SPACE})
                index = res.get("metadata", {}).get("index") or {}
                if index.get("kind") != "hnsw" or (index.get("ready") and not index.get("pending")):
                    return time.perf_counter() - t0
                await asyncio.sleep(0.2)
        return time.perf_counter() - t0


# -- Chroma -----------------------------------------------------------------------------
class ChromaSide:
    name = "chroma"

    def __init__(self, chroma_bin: Path, root: Path) -> None:
        self.port = free_port()
        self.path = root
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self.log = open(root.parent / "chroma.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [str(chroma_bin), "run", "--path", str(root), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        self.pid = self.proc.pid
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = f"/api/v2/tenants/{TENANT}/databases/{DATABASE}/collections"
        self.ids: dict[str, str] = {}

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(self.base) as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chroma run exited with {self.proc.returncode}")
                try:
                    async with s.get("/api/v2/heartbeat") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("chroma run did not answer /api/v2/heartbeat")

    async def setup(self, dim: int) -> None:
        async with aiohttp.ClientSession(self.base) as s:
            for name in ("peer", "peer-single"):
                res = await post_json(s, self.prefix, {
                    "name": name, "configuration": {"hnsw": {"space": "cosine"}}, "get_or_create": True,
                })
                self.ids[name] = res["id"]

    def single(self, vecs: np.ndarray, name: str) -> Call:
        path = f"{self.prefix}/{self.ids[name]}/add"

        async def call(s: aiohttp.ClientSession, i: int) -> None:
            await post(s, path, {"ids": [f"m{i}"], "embeddings": [vecs[i].tolist()],
                                 "documents": [f"memory {i}"]})
            return None

        return call

    def batched(self, vecs: np.ndarray) -> Call:
        path = f"{self.prefix}/{self.ids['peer']}/add"

        async def call(s: aiohttp.ClientSession, b: int) -> None:
            lo, hi = b * BATCH, min(len(vecs), (b + 1) * BATCH)
            await post(s, path, {"ids": [f"m{i}" for i in range(lo, hi)],
                                 "embeddings": vecs[lo:hi].tolist(),
                                 "documents": [f"memory {i}" for i in range(lo, hi)]})
            return None

        return call

    def query(self, queries: np.ndarray) -> Call:
        path = f"{self.prefix}/{self.ids['peer']}/query"

        async def call(s: aiohttp.ClientSession, i: int) -> list[str]:
            q = queries[i % len(queries)]
            res = await post_json(s, path, {"query_embeddings": [q.tolist()], "n_results": 10,
                                            "include": ["documents", "distances"]})
            return list(res["ids"][0])

        return call

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# -- the run ----------------------------------------------------------------------------
def recall10(answers: dict[int, list[str]], truth: np.ndarray, nq: int) -> float | None:
    found = [[int(x[1:]) for x in answers[i]] for i in range(nq) if i in answers]
    rows = np.asarray([truth[i] for i in range(nq) if i in answers])
    return round(recall_at_k(found, rows), 4) if found else None


def strip(phase: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in phase.items() if k != "answers"}


async def run(args: argparse.Namespace, engram: EngramSide, chroma: ChromaSide, vecs: np.ndarray,
              queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"engram": {}, "chroma": {}}
    e, c = out["engram"], out["chroma"]
    await engram.setup(args.dim)
    await chroma.setup(args.dim)
    single = vecs[: args.single]
    print(f"single ingest: {len(single)} records, {args.writers} writers", flush=True)
    e["single_ingest"] = strip(await drive(engram.base, args.writers, len(single),
                                           engram.single(single, SPACE + "-single")))
    e["single_ingest_base64"] = strip(await drive(engram.base, args.writers, len(single),
                                                  engram.single(single, SPACE + "-b64", "base64")))
    c["single_ingest"] = strip(await drive(chroma.base, args.writers, len(single),
                                           chroma.single(single, "peer-single")))
    batches = (len(vecs) + BATCH - 1) // BATCH
    print(f"batched ingest: {len(vecs)} records in {batches} batches of {BATCH}", flush=True)
    c["batched_ingest"] = strip(await drive(chroma.base, 4, batches, chroma.batched(vecs)))
    c["batched_ingest"]["records_per_s"] = round(len(vecs) / c["batched_ingest"]["seconds"], 1)
    engram.batch_available = await engram.probe_batch()
    if engram.batch_available:
        e["batched_ingest"] = strip(await drive(engram.base, 4, batches, engram.batched(vecs)))
        e["batched_ingest"]["records_per_s"] = round(len(vecs) / e["batched_ingest"]["seconds"], 1)
    else:
        e["batched_ingest"] = {"status": "not available (POST /api/v1/memories/batch answered 404/405)"}
        fill = strip(await drive(engram.base, args.writers, len(vecs), engram.single(vecs, SPACE, "base64")))
        e["fill_by_single_remember_base64"] = {**fill, "records_per_s": fill["per_s"]}
    e["index_catch_up_s"] = round(await engram.wait_indexed(queries[0]), 2)
    nq = len(queries)
    for side, call, call64 in ((e, engram.query(queries), engram.query(queries, "base64")),
                               (c, chroma.query(queries), None)):
        base = engram.base if side is e else chroma.base
        await drive(base, 4, 50, call)  # warm
        one = await drive(base, 1, nq, call)
        side["recall_at_10"] = recall10(one["answers"], truth, nq)
        side["recall_1client"] = strip(one)
        side["recall_16clients"] = strip(await drive(base, 16, max(nq, args.concurrent_queries), call))
        if call64 is not None:
            side["recall_1client_base64"] = strip(await drive(base, 1, nq, call64))
            side["recall_16clients_base64"] = strip(await drive(base, 16, max(nq, args.concurrent_queries),
                                                                call64))
    for side, obj in ((e, engram), (c, chroma)):
        side["rss_mb"] = round(tree_rss(obj.pid) / 2**20, 1)
        side["recall_scaling_16_over_1"] = _ratio(side["recall_16clients"]["per_s"],
                                                  side["recall_1client"]["per_s"])
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def parse_settings(text: str) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` -> a dict of Engram settings (checked by the server at start)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memories", type=int, help="stored vectors (default 20,000; quick 3,000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, help="distinct queries (default 300; quick 100)")
    ap.add_argument("--concurrent-queries", type=int, help="calls in the 16-client phase (default 2,000)")
    ap.add_argument("--single", type=int, help="records in the single-ingest phase (default 3,000)")
    ap.add_argument("--writers", type=int, default=32)
    ap.add_argument("--settings", default="", type=parse_settings,
                    help="Engram server settings, KEY=VALUE,... (e.g. blas_threads=0)")
    ap.add_argument("--out", default=str(RESULTS / "peer_chroma_server.json"))
    args = ap.parse_args()
    args.memories = args.memories or (3_000 if args.quick else 20_000)
    args.queries = args.queries or (100 if args.quick else 300)
    args.concurrent_queries = args.concurrent_queries or (400 if args.quick else 2_000)
    args.single = args.single or (500 if args.quick else 3_000)
    results: dict[str, Any] = {
        **stamp(args.quick), "benchmark": "peer_chroma_server", "dim": args.dim, "memories": args.memories,
        "queries": args.queries, "chromadb_version": CHROMA_VERSION, "client": "aiohttp (one for both)",
        "engram_settings": args.settings,
    }
    chroma_py, install_s = ensure_chroma_venv()
    results["chroma_install_seconds"] = round(install_s, 1)
    vecs = dataset(args.memories, args.dim, 11)
    queries = queries_near(vecs, args.queries, 12)
    truth = exact_topk(vecs, queries, 10)
    tmp = tmpdir("engram-peer-server-")
    srv: EngramProcess | None = None
    chroma: ChromaSide | None = None
    try:
        srv = EngramProcess.start(tmp / "engram", settings={
            "durability": "fsync", "log_level": "warning", "embedder": "none", **args.settings,
        })
        (tmp / "chroma").mkdir()
        chroma = ChromaSide(chroma_py.parent / "chroma", tmp / "chroma" / "data")
        asyncio.run(chroma.wait_ready())
        engram = EngramSide(srv)
        results.update(asyncio.run(run(args, engram, chroma, vecs, queries, truth)))
        results["engram"]["disk_mb"] = round(disk_bytes(engram.path) / 2**20, 1)
        results["chroma"]["disk_mb"] = round(disk_bytes(chroma.path) / 2**20, 1)
    finally:
        if chroma is not None:
            chroma.stop()
        if srv is not None:
            srv.stop()
        rmtree(tmp)
    e, c = results["engram"], results["chroma"]
    batched_e = e["batched_ingest"].get("records_per_s")
    results["ratios_engram_over_chroma"] = {
        "single_ingest_throughput": _ratio(e["single_ingest"]["per_s"], c["single_ingest"]["per_s"]),
        "single_ingest_throughput_base64": _ratio(e["single_ingest_base64"]["per_s"],
                                                  c["single_ingest"]["per_s"]),
        "batched_ingest_throughput": _ratio(batched_e, c["batched_ingest"]["records_per_s"]),
        "recall_1client_p50": _ratio(e["recall_1client"]["p50_ms"], c["recall_1client"]["p50_ms"]),
        "recall_1client_qps": _ratio(e["recall_1client"]["per_s"], c["recall_1client"]["per_s"]),
        "recall_16clients_qps": _ratio(e["recall_16clients"]["per_s"], c["recall_16clients"]["per_s"]),
        "recall_16clients_p99": _ratio(e["recall_16clients"]["p99_ms"], c["recall_16clients"]["p99_ms"]),
        "recall_at_10": _ratio(e["recall_at_10"], c["recall_at_10"]),
        "rss": _ratio(e["rss_mb"], c["rss_mb"]),
        "disk": _ratio(e["disk_mb"], c["disk_mb"]),
    }
    results["targets"] = {
        "recall_1client_p50_at_or_below_chroma": bool(
            e["recall_1client"]["p50_ms"] <= c["recall_1client"]["p50_ms"]),
        "recall_16clients_qps_at_least_chroma": bool(
            e["recall_16clients"]["per_s"] >= c["recall_16clients"]["per_s"]),
        "recall_at_10_at_least_0_99": bool((e["recall_at_10"] or 0) >= 0.99),
        "engram_recall_16_over_1_at_least_1_6": bool((e["recall_scaling_16_over_1"] or 0) >= 1.6),
    }
    show("engram", e)
    show("chroma", c)
    show("ratios Engram/Chroma", results["ratios_engram_over_chroma"])
    show("targets", results["targets"])
    write_json(args.out, results)


if __name__ == "__main__":
    main()
