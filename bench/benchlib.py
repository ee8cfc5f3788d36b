"""Helpers shared by the suite-level benchmarks (multispace, startup, scale, peer).

Only measurement plumbing lives here: data sets, percentiles, exact ground truth,
RSS, machine facts and JSON output. Each benchmark's logic stays in its own module.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

DIM = 768


def exit_on_sigterm() -> None:
    """Turn SIGTERM (bench/run.py's time limit) into SystemExit, so ``finally`` blocks stop servers."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- data ------------------------------------------------------------------------
def dataset(n: int, dim: int, seed: int, clusters: int = 256) -> np.ndarray:
    """Clustered unit vectors (float32): closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 50_000
    for start in range(0, n, step):
        m = min(step, n - start)
        block = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries_near(data: np.ndarray, count: int, seed: int, noise: float = 0.3) -> np.ndarray:
    """Queries that are perturbed copies of stored vectors (unit length)."""
    rng = np.random.default_rng(seed)
    base = data[rng.integers(0, len(data), count)]
    q = base + noise * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(data.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row indices of the k most cosine-similar vectors (data and queries unit length)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        sims = queries[start : start + 64] @ data.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + 64] = np.take_along_axis(part, order, axis=1)
    return out


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = 10) -> float:
    hits = sum(len(set(list(f)[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth)) if len(truth) else float("nan")


# -- statistics ------------------------------------------------------------------
def pct(values: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) if len(values) else float("nan")


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(pct(ms, 50), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "mean_ms": round(float(np.mean(ms)), 3) if len(ms) else None,
        "samples": len(ms),
    }


def overhead_pct(value: float, base: float) -> float | None:
    if not base or base != base or value != value:
        return None
    return round(100.0 * (value - base) / base, 1)


# -- processes ---------------------------------------------------------------------
def rss_bytes(pid: int | None = None) -> int:
    import psutil

    return int(psutil.Process(pid or os.getpid()).memory_info().rss)


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("ENGRAM_BENCH_TMP")))


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def make_service(data_dir: Path, spaces: Iterable[str] = (), **overrides: Any) -> Any:
    from engram.service import EngramService
    from engram.settings import load_settings

    settings = load_settings(
        overrides={"data_dir": data_dir, "bootstrap_spaces": tuple(spaces), **overrides}, use_env=False
    )
    return EngramService(settings)


async def remember_vectors(
    svc: Any, space: str, vecs: np.ndarray, writers: int = 32, id_prefix: str = "m", offset: int = 0
) -> float:
    """Durably store ``vecs`` as memories ``{id_prefix}{offset+i}`` with ``writers`` concurrent tasks."""
    from engram.core.models import MemoryInput

    next_i = 0

    async def writer() -> None:
        nonlocal next_i
        while next_i < len(vecs):
            i = next_i
            next_i += 1
            n = offset + i
            await svc.remember(
                space,
                MemoryInput(
                    id=f"{id_prefix}{n}",
                    content=f"memory {n} about topic {n % 97}",
                    embedding=vecs[i].tolist(),
                ),
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - t0


def wait_index_ready(svc: Any, space: str, timeout: float) -> float | None:
    """Seconds until the space's HNSW index has caught up (None if it has none / timed out)."""
    sp = svc.space(space)
    t0 = time.perf_counter()
    if sp.ann is None or len(sp.vectors) < svc.settings.exact_search_max:
        return None
    while time.perf_counter() - t0 < timeout:
        st = sp.ann.state()
        if sp.ann.ready and not st.get("pending", 0):
            return time.perf_counter() - t0
        time.sleep(0.25)
    return None


# -- facts about the run -------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    try:
        import psutil

        ram = int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover
        ram = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in load] if load else None,
    }


def versions(
    names: Iterable[str] = ("engram", "numpy", "usearch", "grpcio", "fastapi", "uvicorn", "aiohttp"),
) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def stamp(quick: bool) -> dict[str, Any]:
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "machine": machine_info(),
    }


def write_json(path: Path | str, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path


def show(label: str, value: Any) -> None:
    print(f"{label}: {json.dumps(value, default=str)}", flush=True)


# -- many spaces on disk -----------------------------------------------------------------
def populate_spaces(
    data_dir: Path, count: int, prefix: str = "idle", memories: int = 5, dim: int = DIM
) -> float:
    """Put ``count`` real (closed) spaces with a few memories each under ``data_dir``; returns seconds.

    One template space is created through the engine, then copied with its marker
    rewritten: identical on disk to spaces created one by one, without paying
    10,000 rounds of create-time fsyncs in a benchmark's set-up.
    """
    t0 = time.perf_counter()
    tpl_root = tmpdir("engram-tpl-")
    try:
        svc = make_service(tpl_root, ["tpl"])
        asyncio.run(remember_vectors(svc, "tpl", dataset(memories, dim, 99), writers=1))
        svc.close()
        src = tpl_root / "tpl"
        marker = json.loads((src / "space.json").read_text())
        data_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            sid = f"{prefix}-{i:05d}"
            dst = data_dir / sid
            shutil.copytree(src, dst)
            (dst / "space.json").write_text(json.dumps({**marker, "id": sid}))
    finally:
        rmtree(tpl_root)
    return time.perf_counter() - t0


# -- a real server process ------------------------------------------------------------------
class ServerProcess:
    """A bare ``engram start`` on free ports, polled every 5 ms until ``/health/alive`` answers.

    ``seconds`` is exec -> alive. Whatever interrupts the start (timeout, SIGTERM turned into
    SystemExit, Ctrl-C) kills the child before propagating, so no server outlives its benchmark.
    """

    def __init__(self, root: Path, data_dir: Path, timeout: float = 120.0) -> None:
        import signal
        import subprocess
        import urllib.request

        self._signal, self._subprocess = signal, subprocess
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.data_dir = root, data_dir
        state = root / f"state-{time.time_ns()}.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        cmd = [sys.executable, "-m", "engram", "start", "--data-dir", str(data_dir), "--http-port", "0",
               "--grpc-port", "0", "--state-file", str(state)]  # fmt: skip
        self.log = open(root / "server.log", "ab")  # noqa: SIM115 - closed in stop()/kill()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
        self.url = ""
        try:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"engram exited {self.proc.returncode}: {(root / 'server.log').read_text()[-2000:]}"
                    )
                if not self.url:
                    try:
                        st = json.loads(state.read_text())
                        if st.get("pid") == self.proc.pid:
                            self.url = f"http://{st.get('host', '127.0.0.1')}:{st['http_port']}"
                    except (OSError, ValueError, KeyError):
                        pass
                if self.url:
                    try:
                        with urllib.request.urlopen(self.url + "/health/alive", timeout=2) as resp:
                            if resp.status == 200:
                                self.seconds = time.perf_counter() - t0
                                return
                    except OSError:
                        pass
                time.sleep(0.005)
            raise RuntimeError(f"engram did not answer /health/alive within {timeout} s")
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 60 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(self._signal.SIGTERM)
            try:
                self.proc.wait(60)
            except self._subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup of any kind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def restart(self, timeout: float = 300.0) -> ServerProcess:
        if self.running:
            self.stop()
        return ServerProcess(self.root, self.data_dir, timeout)
