"""One server per data dir (SPEC §11, issue 13 item 1), with real processes.

A second ``engram start`` on a data dir in use exits 2 naming the holder's pid
and leaves the first server, its state file and its data alone; ``engram stop``
still finds and stops the first; kill -9 leaves a stale pid in the lock file
that does not block a restart; an offline ``engram mcp`` holds the data dir the
same way (tests/integration/test_mcp_stdio.py shows it going through the
server when a server holds the data dir).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from engram.datadir import LOCK_NAME, holder
from engram.testing import EngramProcess
from engram.testing.mcp import stdio_session, structured, text_of

ENV = {"ENGRAM_EMBEDDER": "hash"}


def _engram(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engram", *args], capture_output=True, text=True,
                          timeout=timeout)


def _alive(url: str) -> bool:
    with urllib.request.urlopen(url + "/health/alive", timeout=10) as resp:
        return int(resp.status) == 200


def test_one_server_per_data_dir_across_a_refusal_a_crash_and_a_stop(tmp_path: Path) -> None:
    srv = EngramProcess.start(tmp_path / "s", spaces=["alpha"])
    state_file = tmp_path / "s" / "state-0.json"
    before = state_file.read_text()
    # 1. The same data dir and the same state file: what issue 13 did by hand with run.py twice.
    second = _engram("start", "--data-dir", str(srv.data_dir), "--http-port", "0", "--grpc-port", "0",
                     "--state-file", str(state_file))
    assert second.returncode == 2, (second.returncode, second.stderr)
    assert f"pid {srv.pid}" in second.stderr and "engram stop --data-dir" in second.stderr, second.stderr
    assert state_file.read_text() == before, "the refused server touched the holder's state file"
    assert srv.running and _alive(srv.http_url)
    assert json.loads((srv.data_dir / LOCK_NAME).read_text())["pid"] == srv.pid
    # 2. kill -9 leaves the crashed server's pid in the lock file; it must not block the restart.
    with urllib.request.urlopen(urllib.request.Request(
            srv.http_url + "/api/v1/memories/remember", data=b'{"content": "survives the crash"}',
            headers={"Content-Type": "application/json", "X-Memory-Space": "alpha"})) as resp:
        memory_id = json.loads(resp.read())["memory_id"]
    old_pid = srv.pid
    srv.kill()
    assert json.loads((srv.data_dir / LOCK_NAME).read_text())["pid"] == old_pid  # stale, on purpose
    srv = srv.restart()
    assert srv.pid != old_pid
    assert json.loads((srv.data_dir / LOCK_NAME).read_text())["pid"] == srv.pid
    req = urllib.request.Request(srv.http_url + f"/api/v1/memories/{memory_id}",
                                 headers={"X-Memory-Space": "alpha"})
    with urllib.request.urlopen(req) as resp:
        assert json.loads(resp.read())["content"] == "survives the crash"
    # 3. The state file sits outside the data dir here, so `engram stop --data-dir` finds the
    # server through the lock alone.
    stop = _engram("stop", "--data-dir", str(srv.data_dir))
    assert stop.returncode == 0, stop.stderr
    assert f"pid {srv.pid}" in stop.stdout
    assert srv.proc.wait(30) == 0


def test_offline_mcp_holds_the_data_dir_and_a_server_refuses_to_share_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["--space", "alpha", "--data-dir", str(data), "--create-space"]

    async def scenario() -> None:
        async with stdio_session(args, ENV) as first:
            stored = await first.call_tool("remember", {"content": "kept by the offline session"})
            assert not stored.is_error, text_of(stored)
            holder_pid = json.loads((data / LOCK_NAME).read_text())["pid"]
            # A second offline session on the same data dir: refused per call, naming the first.
            async with stdio_session(args, ENV) as second:
                refused = await second.call_tool("recall", {"query": "offline"})
                assert refused.is_error
                assert structured(refused)["error"]["code"] == "DATA_DIR_IN_USE"
                assert f"pid {holder_pid}" in text_of(refused) and "engram start" in text_of(refused)
            # ... and so is a server: two writers would hand out the same LSNs.
            server = await asyncio.to_thread(_engram, "start", "--data-dir", str(data), "--http-port", "0",
                                             "--grpc-port", "0")
            assert server.returncode == 2, server.stderr
            assert f"pid {holder_pid}" in server.stderr and "engram mcp" in server.stderr
            again = await first.call_tool("recall", {"query": "offline session"})
            assert "kept by the offline session" in text_of(again)

    asyncio.run(scenario())
    assert holder(data) is None, "the session ended: the data dir is free again"
    assert (data / "alpha" / "space.db").exists(), "offline mode wrote the data dir it was given"
