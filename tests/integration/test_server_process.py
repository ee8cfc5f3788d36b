"""The server process itself: start on free ports, state file, graceful stop, SIGKILL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from engram.testing import EngramProcess


def test_start_writes_state_and_stops_gracefully(tmp_path):
    srv = EngramProcess.start(tmp_path / "s", spaces=["alpha"])
    state_file = tmp_path / "s" / "state-0.json"
    state = json.loads(state_file.read_text())
    assert state["pid"] == srv.pid
    assert state["http_port"] > 0 and state["grpc_port"] > 0
    assert f"REST on http://127.0.0.1:{state['http_port']}" in srv.stdout()
    with urllib.request.urlopen(srv.http_url + "/health/alive") as resp:
        assert resp.status == 200
    assert srv.stop() == 0
    assert not state_file.exists(), "a graceful stop removes the state file"
    assert (srv.data_dir / "alpha" / "space.json").exists()


def test_engram_stop_command(tmp_path):
    srv = EngramProcess.start(tmp_path / "s")
    out = subprocess.run(
        [sys.executable, "-m", "engram", "stop", "--state-file", str(tmp_path / "s" / "state-0.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert srv.proc.wait(10) == 0


def test_stop_without_server_is_not_found(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engram", "stop", "--data-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "no running server" in out.stderr


def test_sigkill_then_restart_on_same_data(tmp_path):
    srv = EngramProcess.start(tmp_path / "s", spaces=["alpha"])
    srv.kill()
    assert srv.proc.returncode == -9
    again = srv.restart()
    try:
        with urllib.request.urlopen(again.http_url + "/health/alive") as resp:
            assert resp.status == 200
    finally:
        again.stop()


def _occupied() -> socket.socket:
    """A listening socket on a free port: the port is taken until it is closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.parametrize("which, flag", [("REST", "--http-port"), ("gRPC", "--grpc-port")])
def test_a_taken_port_is_named_with_the_flag_that_changes_it(tmp_path, which, flag):
    """``address already in use`` names the port and the flag, exits 2, no traceback, nothing locked."""
    with _occupied() as taken:
        port = taken.getsockname()[1]
        ports = {"--http-port": "0", "--grpc-port": "0", flag: str(port)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env["ENGRAM_EMBEDDER"] = "hash"
        out = subprocess.run([sys.executable, "-m", "engram", "start", "--data-dir", str(tmp_path / "d"),
                              *[x for kv in ports.items() for x in kv]],
                             capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert f"the {which} port {port} on 127.0.0.1 is already in use" in out.stderr, out.stderr
    assert flag in out.stderr and "Traceback" not in out.stderr + out.stdout, out.stderr
    # The data dir is free again: a server starts on it at once.
    srv = EngramProcess.start(tmp_path / "after", data_dir=tmp_path / "d")
    assert srv.stop() == 0
