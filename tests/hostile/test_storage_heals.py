"""Transient storage errors heal without a restart; damage does not pretend to; files are private.

The server-level injection lowers the open-file limit of the *running* server
(``prlimit``, allowed on one's own processes): opening a space then fails with
EMFILE, exactly as when connections or other spaces have used every descriptor.
"""

from __future__ import annotations

import os
import resource
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram.core.models import MemoryInput
from engram.errors import StorageUnavailable
from engram.testing import EngramProcess, make_service

API = "/api/v1"


def _remember(client: httpx.Client, space: str, content: str) -> httpx.Response:
    return client.post(f"{API}/memories/remember", headers={"X-Memory-Space": space},
                       json={"content": content, "embedding": [1.0, 0.0, 0.5]})


def test_fd_exhaustion_degrades_spaces_and_they_heal_without_restart(tmp_path: Path) -> None:
    cold = ["cold-a", "cold-b", "cold-c"]
    make_service(tmp_path / "data", cold).close()  # the cold spaces exist on disk, made offline
    srv = EngramProcess.start(tmp_path, spaces=["alpha"], nofile=256, data_dir=tmp_path / "data",
                              settings={"embedder": "none", "storage_retry_max_seconds": 0.5})
    try:
        pid = srv.pid
        loaded = {s["id"] for s in httpx.get(f"{srv.http_url}{API}/system/health").json()["spaces"]}
        assert not set(cold) & loaded, loaded  # ... and are not loaded: each must open a file later
        with httpx.Client(base_url=srv.http_url, timeout=30.0) as client:
            assert _remember(client, "alpha", "before").status_code == 201  # alpha loaded, connection open
            assert client.get(f"{API}/memories", headers={"X-Memory-Space": "alpha"}).status_code == 200
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            # No descriptor left: every open(2) of the server fails with EMFILE from now on.
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) - 1, hard))
            try:
                for sid in cold:
                    r = _remember(client, sid, "during")
                    assert r.status_code == 503, r.text
                    err = r.json()["error"]
                    assert err["code"] == "STORAGE_UNAVAILABLE" and err["suggestion"], err
                # The tenant that was already open keeps being served.
                assert _remember(client, "alpha", "during").status_code == 201
                health = client.get("/health").json()
                assert health["status"] == "degraded"
                assert set(cold) <= set(health["degraded_spaces"]), health
                assert health["unhealthy_space_ids"] == []
                per_space = client.get(f"{API}/system/health").json()
                states = {s["id"]: s["state"] for s in per_space["spaces"]}
                assert all(states[sid] == "degraded" for sid in cold) and states["alpha"] == "ok"
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            # Descriptors are back: the spaces return on their own (retry with backoff).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                health = client.get("/health").json()
                if health["status"] == "ok":
                    break
                time.sleep(0.2)
            assert health["status"] == "ok" and health["degraded_spaces"] == [], health
            for sid in cold:
                assert _remember(client, sid, "after").status_code == 201
            assert client.get(f"{API}/memories", headers={"X-Memory-Space": "alpha"}).json()["total"] == 2
        assert srv.pid == pid and srv.running  # healed, not restarted
        assert "unhandled error" not in srv.logs()  # no request ended in a 500
    finally:
        srv.kill()


def test_disk_below_threshold_makes_health_degraded(tmp_path: Path) -> None:
    # More free space than any disk has: the report must say the disk is full.
    with EngramProcess.start(tmp_path, settings={"embedder": "none", "disk_min_free_bytes": 1 << 62}) as srv:
        health = httpx.get(f"{srv.http_url}/health").json()
        assert health["disk"]["full"] is True and health["status"] == "degraded", health
        assert httpx.get(f"{srv.http_url}{API}/system/health").json()["status"] == "degraded"
    roomy = {"embedder": "none", "disk_min_free_bytes": 0}
    with EngramProcess.start(tmp_path / "roomy", settings=roomy) as srv:
        health = httpx.get(f"{srv.http_url}/health").json()
        assert health["disk"]["full"] is False and health["status"] == "ok", health


def test_a_write_hitting_disk_full_degrades_then_heals(registry_factory: Callable[..., Any]) -> None:
    """SQLITE_FULL ("database or disk is full", here from max_page_count) on the write path:
    those writes fail retriably, the space is degraded, and once there is room it serves again."""
    reg = registry_factory(bootstrap_spaces=("tight",), storage_retry_max_seconds=0.2)
    space = reg.get("tight")
    space.remember(MemoryInput(content="fits", embedding=[1.0, 0.0]))
    assert space.store is not None
    writer = space.store._writer
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageUnavailable):
        space.remember(MemoryInput(content="x" * 20_000, embedding=[1.0, 0.0]))
    assert space.health_state == "degraded"
    with pytest.raises(StorageUnavailable):  # degraded: refused at once, retriably
        reg.get("tight").remember(MemoryInput(content="y", embedding=[1.0, 0.0]))
    writer.execute("PRAGMA max_page_count = 1073741823")  # room again
    deadline = time.monotonic() + 5
    while space.health_state != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
        reg.heal_due()
    assert space.health_state == "ok"
    receipt = reg.get("tight").remember(MemoryInput(content="after", embedding=[1.0, 0.0]))
    assert receipt.lsn > 0 and reg.get("tight") is space  # healed in place, same handle
    assert space.list().total == 2


def test_damage_stays_unhealthy(registry_factory: Callable[..., Any],
                                engine_settings: Callable[..., Any]) -> None:
    reg = registry_factory(bootstrap_spaces=("broken",))
    reg.get("broken").remember(MemoryInput(content="soon garbage"))
    reg.unload("broken")
    db = Path(engine_settings().data_dir) / "broken" / "space.db"
    db.write_bytes(b"this is not a database" * 400)
    space = reg.get("broken")
    assert space.health_state == "unhealthy" and not space.degraded
    assert reg.heal_due() == []


def _modes(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    out["."] = stat.S_IMODE(root.stat().st_mode)
    return out


def test_server_files_are_private_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the child inherits it; the server must not rely on it
    try:
        srv = EngramProcess.start(tmp_path, spaces=["alpha"],
                                  settings={"embedder": "none", "exact_search_max": 10,
                                            "index_checkpoint_every": 10})
    finally:
        os.umask(old)
    try:
        with httpx.Client(base_url=srv.http_url, timeout=30.0) as client:
            for i in range(30):  # enough vectors for an index and its checkpoint
                assert _remember(client, "alpha", f"m{i}").status_code == 201
        srv.stop()
    finally:
        srv.kill() if srv.running else None
    modes = _modes(srv.data_dir)
    assert "alpha/space.db" in modes and "alpha/space.json" in modes, modes
    assert "alpha/vectors.usearch" in modes, modes
    loose = {p: oct(m) for p, m in modes.items()
             if m & 0o077 or (Path(srv.data_dir / p).is_dir() and m != 0o700)}
    assert loose == {}, loose


def test_storage_creates_private_files_whatever_the_umask(registry_factory: Callable[..., Any],
                                                          engine_settings: Callable[..., Any]) -> None:
    """In-process, with no server to set the umask: the explicit modes alone keep files private."""
    old = os.umask(0o022)
    try:
        reg = registry_factory(bootstrap_spaces=("inproc",))
        space = reg.get("inproc")
        space.remember(MemoryInput(content="x", embedding=[1.0, 0.0]))
        root = Path(engine_settings().data_dir)
        modes = _modes(root)
    finally:
        os.umask(old)
    want = {"inproc/space.db", "inproc/space.db-wal", "inproc/space.db-shm", "inproc/space.json"}
    assert want <= set(modes)
    loose = {p: oct(m) for p, m in modes.items()
             if m & 0o077 or ((root / p).is_dir() and m != 0o700)}
    assert loose == {}, loose
