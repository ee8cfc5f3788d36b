"""Thousands of spaces on a small open-file limit: the space budget, idle threads, pinned spaces.

Real server processes started under a lowered ``ulimit -n`` (``nofile``), talked to over HTTP
and SSE; threads and descriptors are read from ``/proc/<pid>``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram.testing import EngramProcess, scratch_dir

API = "/api/v1"


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _churn(url: str, ids: list[str], hot: str, concurrency: int = 6) -> tuple[list[str], int]:
    """Create, write and read each space once; read ``hot`` in between. Returns (errors, hot reads)."""
    errors: list[str] = []
    hot_reads = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sid in ids:
        queue.put_nowait(sid)

    async def check(resp: httpx.Response, what: str, want: int) -> None:
        if resp.status_code != want:
            errors.append(f"{what}: {resp.status_code} {resp.text[:300]}")

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        nonlocal hot_reads
        i = 0
        while not queue.empty():
            sid = queue.get_nowait()
            h = {"X-Memory-Space": sid}
            r = await client.post(f"{API}/spaces", json={"id": sid})
            await check(r, f"create {sid}", 201)
            r = await client.post(f"{API}/memories/remember", headers=h,
                                  json={"id": "m1", "content": f"note of {sid}",
                                        "embedding": [0.1, 0.2, 0.3]})
            await check(r, f"remember {sid}", 201)
            r = await client.get(f"{API}/memories/m1", headers=h)
            await check(r, f"get {sid}", 200)
            if r.status_code == 200 and r.json()["content"] != f"note of {sid}":
                errors.append(f"get {sid}: wrong content {r.json()['content']!r}")
            i += 1
            if n == 0 and i % 5 == 0:  # the other tenant keeps being served throughout
                r = await client.post(f"{API}/memories/recall", headers={"X-Memory-Space": hot},
                                      json={"embedding": [0.3, 0.2, 0.1], "max_results": 5})
                await check(r, f"recall {hot}", 200)
                hot_reads += 1

    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        await asyncio.gather(*(worker(n, client) for n in range(concurrency)))
    return errors, hot_reads


@pytest.fixture
def ram_data() -> Iterator[Path]:
    """A data dir on tmpfs (``scratch_dir``): these tests are about descriptors, threads and the
    loaded-space budget, not fsync; there, creating, writing and closing a space flush no disk."""
    data = scratch_dir("engram-many-")
    yield data
    shutil.rmtree(data, ignore_errors=True)


def test_a_thousand_spaces_under_nofile_256(tmp_path: Path, ram_data: Path) -> None:
    n = 1000
    with EngramProcess.start(tmp_path, spaces=["hot"], nofile=256, data_dir=ram_data,
                             settings={"embedder": "none", "space_thread_idle_seconds": 0.5,
                                       "durability": "buffered"}) as srv:
        httpx.post(f"{srv.http_url}{API}/memories/remember", headers={"X-Memory-Space": "hot"},
                   json={"content": "hot one", "embedding": [0.3, 0.2, 0.1]}).raise_for_status()
        health = httpx.get(f"{srv.http_url}/health").json()
        budget = health["open_files"]["max_loaded_spaces"]
        assert health["open_files"]["nofile"] == 256 and budget < 100, health["open_files"]
        ids = [f"tenant-{i:05d}" for i in range(n)]
        errors, hot_reads = asyncio.run(_churn(srv.http_url, ids, "hot"))
        assert errors == [], errors[:5]
        assert hot_reads >= 10
        health = httpx.get(f"{srv.http_url}/health", timeout=60).json()
        assert health["status"] == "ok", health
        assert health["spaces_total"] == n + 2  # + hot + default
        assert health["spaces_loaded"] <= budget  # reserved before opening: never over, even racing
        assert fd_count(srv.pid) < 256
        # Unloaded spaces are still described, listed and served.
        first = httpx.get(f"{srv.http_url}{API}/spaces/{ids[0]}", timeout=60)
        assert first.status_code == 200 and first.json()["memory_count"] == 1, first.text
        page = httpx.get(f"{srv.http_url}{API}/spaces", params={"limit": 1000}, timeout=60).json()
        assert len(page["spaces"]) == 1000 and page["next_cursor"]
        again = httpx.get(f"{srv.http_url}{API}/memories/m1", headers={"X-Memory-Space": ids[1]})
        assert again.status_code == 200 and again.json()["content"] == f"note of {ids[1]}"
        assert "Too many open files" not in srv.logs()


def test_idle_loaded_spaces_hold_no_thread(tmp_path: Path, ram_data: Path) -> None:
    with EngramProcess.start(tmp_path, nofile=1024, data_dir=ram_data,
                             settings={"embedder": "none", "space_thread_idle_seconds": 0.3}) as srv:
        url = srv.http_url
        # Warm up: the request path's worker threads exist before the baseline is taken.
        _write_spaces(url, [f"warm-{i}" for i in range(6)])
        baseline = _settled_threads(srv.pid)
        spaces = [f"idle-{i:02d}" for i in range(30)]
        _write_spaces(url, spaces)
        after = _threads_down_to(srv.pid, baseline + 6)  # polled: idle threads leave after 0.3 s
        loaded = {s["id"] for s in httpx.get(f"{url}/api/v1/system/health").json()["spaces"]}
        assert set(spaces) <= loaded  # still loaded ...
        assert after <= baseline + 6, (baseline, after)  # ... and holding no thread each (30 spaces)
        # And they serve again at once: the threads come back on demand.
        _write_spaces(url, spaces[:5], start=1)


def _write_spaces(url: str, ids: list[str], start: int = 0) -> None:
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for sid in ids:
            if start == 0:
                assert client.post(f"{API}/spaces", json={"id": sid}).status_code == 201
            r = client.post(f"{API}/memories/remember", headers={"X-Memory-Space": sid},
                            json={"id": f"m{start}", "content": "x", "embedding": [1.0, 0.0]})
            assert r.status_code == 201, r.text


def _settled_threads(pid: int, timeout: float = 15.0) -> int:
    """The thread count once it stopped falling (idle threads have exited)."""
    deadline = time.monotonic() + timeout
    last = thread_count(pid)
    stable = 0
    while time.monotonic() < deadline and stable < 8:
        time.sleep(0.25)
        now = thread_count(pid)
        stable = stable + 1 if now == last else 0
        last = now
    return last


def _threads_down_to(pid: int, limit: int, timeout: float = 15.0) -> int:
    """The thread count once it is at most ``limit``, or after ``timeout`` (the caller asserts)."""
    deadline = time.monotonic() + timeout
    now = thread_count(pid)
    while now > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        now = thread_count(pid)
    return now


def _sse_open(url: str, space: str) -> tuple[httpx.Client, Any, Any]:
    client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=30.0))
    cm = client.stream("GET", f"{API}/stream/memories", headers={"X-Memory-Space": space})
    resp = cm.__enter__()
    assert resp.status_code == 200
    lines = resp.iter_lines()
    assert next(lines).startswith(": subscribed")
    return client, cm, lines


def _next_event(lines: Any) -> dict[str, str]:
    frame: dict[str, str] = {}
    for line in lines:
        if line == "" and "data" in frame:
            return frame
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        frame[name] = value.strip()
    raise EOFError("stream ended")


def test_unload_never_drops_a_subscribed_space(tmp_path: Path, ram_data: Path) -> None:
    """Budget of 3 loaded spaces: spaces with an open SSE stream stay loaded while 20 others
    churn through; when every loaded space is pinned, a new one gets a retriable 503."""
    with EngramProcess.start(tmp_path, spaces=["watched", "pinned"], data_dir=ram_data,
                             settings={"embedder": "none", "max_loaded_spaces": 3}) as srv:
        url = srv.http_url
        streams = [_sse_open(url, "watched"), _sse_open(url, "pinned")]
        _write_spaces(url, [f"churn-{i:02d}" for i in range(20)])
        # The subscribed spaces were never unloaded: their streams are live and see new writes.
        for (_client, _cm, lines), sid in zip(streams, ["watched", "pinned"], strict=True):
            r = httpx.post(f"{url}{API}/memories/remember", headers={"X-Memory-Space": sid},
                           json={"id": "after-churn", "content": "still here", "embedding": [1.0, 0.0]})
            assert r.status_code == 201, r.text
            event = _next_event(lines)
            assert "after-churn" in event["data"], event
        loaded = {s["id"] for s in httpx.get(f"{url}/api/v1/system/health").json()["spaces"]}
        assert {"watched", "pinned"} <= loaded and len(loaded) <= 3
        # Pin the third slot too: now nothing can be unloaded for a new space.
        streams.append(_sse_open(url, "churn-19"))
        refused = httpx.post(f"{url}{API}/spaces", json={"id": "one-too-many"})
        assert refused.status_code == 503, refused.text
        err = refused.json()["error"]
        assert err["code"] == "SPACE_CAPACITY_EXHAUSTED" and "Retry" in err["suggestion"]
        # ... while the loaded spaces keep serving, and an unloaded one is still described.
        ok = httpx.post(f"{url}{API}/memories/remember", headers={"X-Memory-Space": "watched"},
                        json={"content": "served", "embedding": [1.0, 0.0]})
        assert ok.status_code == 201
        described = httpx.get(f"{url}{API}/spaces/churn-00")
        assert described.status_code == 200 and described.json()["loaded"] is False
        # Close one stream: its space may go, and the refused create succeeds on retry.
        client, cm, _lines = streams.pop()
        cm.__exit__(None, None, None)
        client.close()
        deadline = time.monotonic() + 10
        while True:
            retry = httpx.post(f"{url}{API}/spaces", json={"id": "one-too-many"})
            if retry.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert retry.status_code == 201, retry.text
        for client, cm, _lines in streams:
            cm.__exit__(None, None, None)
            client.close()


def test_descriptor_pressure_unloads_idle_spaces_but_not_subscribed_ones(
        registry_factory: Callable[..., Any]) -> None:
    """Between loads (what the maintenance loop runs each second): above 80 % of the open-file
    limit, least recently used idle spaces are unloaded until below 65 %; a subscribed one stays."""
    from engram.core.models import MemoryInput

    ids = [f"fd-{i:02d}" for i in range(12)]
    reg = registry_factory(bootstrap_spaces=tuple(ids))
    for sid in ids:
        reg.get(sid).remember(MemoryInput(content="x", embedding=[1.0, 0.0]))
    sub = reg.get(ids[0]).events.subscribe()  # the least recently used, but pinned
    assert reg.trim() == 0  # far below the limit: nothing to do
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = fd_count(os.getpid())
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(held / 0.85), hard))  # above 80 %
    try:
        unloaded = reg.trim()
        now = fd_count(os.getpid())
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        sub.close()
    loaded = {s.id for s in reg.loaded()}
    assert unloaded > 0 and now <= 0.65 * limit + 1, (unloaded, now, limit)
    assert ids[0] in loaded and len(loaded) == len(ids) + 1 - unloaded  # + the default space
