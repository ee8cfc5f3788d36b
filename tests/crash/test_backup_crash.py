"""SIGKILL of a real server in the middle of a backup and of a restore, then verify (docs/backup.md).

* A backup cut short leaves no file at the CLI's destination (only a complete, checked backup
  is ever renamed there) and no snapshot in the data root; one the kill did not cut short is
  a complete, valid file.
* A restore cut short (during the upload or the checks) leaves the target space exactly the
  old one, and no working files.
* The two on-disk states a crash can leave inside the swap itself (old space moved aside;
  new space renamed in but the old copy not yet removed) are built with real renames and
  settled correctly by the next start.

The space is ~3 MB (large memories) so that each phase lasts long enough for a file-system
poll (1 ms) to catch it; where a kill must land mid-operation to prove anything, the test
asserts that it did. Bounded: one server, 3 kills and 2 built states in
the default tier; the slow tier adds a kill during the server's snapshot and one during the upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engram.client import EngramClient
from engram.storage import backup as fmt
from engram.testing import EngramProcess

WORKING = (".backup-", ".upload-", ".restore-", ".replaced-")
BIG = 60_000  # characters per memory: ~3 MB in 50 memories
N = 50


def _wait_for(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll the file system (this is the thing observed, not a stand-in for synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.001)
    return False


def _working(data_dir: Path, prefix: str, min_bytes: int = 0) -> bool:
    for p in data_dir.iterdir():
        if p.name.startswith(prefix):
            try:
                if p.is_dir() or p.stat().st_size > min_bytes:
                    return True
            except FileNotFoundError:
                continue
    return False


def _partial(dest: Path) -> bool:
    """The CLI's download (wherever in ``dest`` it writes it) has bytes in it."""
    return any(p.stat().st_size > 0 for p in dest.iterdir())


def _cli(srv: EngramProcess, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return subprocess.Popen([sys.executable, "-m", "engram", *args, "--url", srv.http_url, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _ids(srv: EngramProcess, space: str) -> set[str]:
    with EngramClient(srv.http_url, space=space, timeout=60) as c:
        return {m.id for m in c.iter_memories(include_suppressed=True)}


class Box:
    """The module's server; a test that restarts it leaves the new process here for the next."""

    srv: EngramProcess


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    b = Box()
    b.srv = EngramProcess.start(tmp_path_factory.mktemp("backup-crash"), spaces=["src", "tgt"])
    with EngramClient(b.srv.http_url, space="src", timeout=60) as c:
        for i in range(N):
            c.remember(f"memory {i} " + ("lorem ipsum dolor sit amet " * (BIG // 27)), id=f"s{i}")
        c.associate("s1", "s2", strength=0.5)
    _reset_target(b.srv)
    yield b
    b.srv.kill()  # a graceful stop proves nothing here and takes seconds


def _reset_target(srv: EngramProcess) -> None:
    with EngramClient(srv.http_url, space="tgt", timeout=60) as c:
        if "tgt" in [s.id for s in c.iter_spaces()]:
            c.delete_space("tgt")
        c.create_space("tgt")
        for i in range(5):
            c.remember(f"the old target's memory {i}", id=f"old-{i}")


def _after_restart(srv: EngramProcess) -> EngramProcess:
    srv = srv.restart()  # after a kill(): a start on the data root the crash left
    left = [p.name for p in srv.data_dir.iterdir() if p.name.startswith(WORKING)]
    assert left == [], left
    return srv


class CuttableProxy:
    """A TCP relay between a client and the server that passes the server's bytes slowly and can
    drop the connection on command: a connection dying mid-download, made deterministic.

    A killed server cannot be relied on for that here: loopback socket buffers hold tens of MB,
    so a server killed "during" a download has usually handed every byte to the kernel already.
    """

    def __init__(self, port: int) -> None:
        self.port_to = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.cut_now = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_now.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port_to))
            self.socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, 0.002), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pause: float) -> None:
        try:
            while not self.cut_now.is_set():
                data = src.recv(16_384)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
                if pause:
                    time.sleep(pause)  # the throttle: ~8 MB/s from the server to the client
        except OSError:
            return

    def cut(self) -> None:
        self.cut_now.set()
        for s in [self.listener, *self.socks]:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the pumps blocked in recv
            with contextlib.suppress(OSError):
                s.close()


def test_a_download_cut_midway_leaves_no_file(box: Box, tmp_path: Path) -> None:
    srv = box.srv
    proxy = CuttableProxy(srv.http_port)
    file = tmp_path / "src.engram"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    proc = subprocess.Popen([sys.executable, "-m", "engram", "space", "backup", "src", str(file), "--url",
                             f"http://127.0.0.1:{proxy.port}", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = _wait_for(lambda: _partial(tmp_path))
    proxy.cut()
    _, err = proc.communicate(timeout=60)
    assert seen and proc.returncode == 4, (seen, proc.returncode, err)  # 4: the connection failed
    assert list(tmp_path.iterdir()) == [], err  # neither FILE nor the partial download beside it
    # The server noticed the client leaving: the snapshot is removed without a restart.
    assert _wait_for(lambda: not _working(srv.data_dir, ".backup-"), timeout=30)


@pytest.mark.parametrize("point", ["snapshot", pytest.param("stream", marks=pytest.mark.slow)])
def test_kill_during_backup_leaves_no_file_or_a_valid_one(box: Box, tmp_path: Path, point: str) -> None:
    """SIGKILL once the server's snapshot exists (``snapshot``), or once the CLI has bytes (``stream``).
    Whether the CLI still got every byte depends on the kernel's buffers; either way FILE is a
    complete, valid backup or absent, and the restarted server holds no snapshot."""
    srv = box.srv
    src_ids = _ids(srv, "src")
    file = tmp_path / "src.engram"
    proc = _cli(srv, "space", "backup", "src", str(file))
    if point == "snapshot":
        _wait_for(lambda: _working(srv.data_dir, ".backup-"))
    else:
        _wait_for(lambda: _partial(tmp_path))
    srv.kill()
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        assert fmt.verify(file)["counts"]["memories"] == N
        assert [p.name for p in tmp_path.iterdir()] == ["src.engram"]
    else:
        assert list(tmp_path.iterdir()) == [], err
    srv = box.srv = _after_restart(srv)  # no snapshot left in the data root
    assert _ids(srv, "src") == src_ids


@pytest.mark.parametrize("point", ["checks", pytest.param("upload", marks=pytest.mark.slow)])
def test_kill_during_restore_leaves_the_old_space(box: Box, tmp_path: Path, point: str) -> None:
    """``upload``: the body is arriving; ``checks``: the staged copy is being unpacked and checked."""
    srv = box.srv
    file = tmp_path / "src.engram"
    made = _cli(srv, "space", "backup", "src", str(file))
    assert made.wait(120) == 0, made.communicate()
    old_ids = _ids(srv, "tgt")
    proc = _cli(srv, "space", "restore", str(file), "--as", "tgt", "--replace")
    prefix = ".upload-" if point == "upload" else ".restore-"
    seen = _wait_for(lambda: _working(srv.data_dir, prefix))
    srv.kill()
    proc.communicate(timeout=60)
    assert seen and proc.returncode != 0, ("the kill did not land during the restore", seen, proc.returncode)
    srv = box.srv = _after_restart(srv)  # no upload or staging left in the data root
    assert _ids(srv, "tgt") == old_ids  # the swap had not begun: the old space, whole


def _stage_copy(srv: EngramProcess, file: Path) -> Path:
    """A complete restored space directory staged in the data root, as a restore builds it."""
    staged = srv.data_dir / ".restore-built"
    staged.mkdir()
    fmt.unpack(file, staged / fmt.DB_NAME)
    (staged / "space.json").write_text(json.dumps({"id": "tgt", "created_at": 1.0, "dimension": 384}))
    return staged


def test_a_crash_inside_the_swap_is_settled_at_start(box: Box, tmp_path: Path) -> None:
    """Old moved aside, new not yet in: the old space comes back. New in place, old copy not yet
    removed: the new one stays. Both are the exact directory states of a crash between the renames."""
    srv = box.srv
    file = tmp_path / "src.engram"
    made = _cli(srv, "space", "backup", "src", str(file))
    assert made.wait(120) == 0, made.communicate()
    src_ids, old_ids = _ids(srv, "src"), _ids(srv, "tgt")
    assert src_ids != old_ids
    for renames, expected in ((1, old_ids), (2, src_ids)):
        srv.kill()
        staged = _stage_copy(srv, file)
        os.rename(srv.data_dir / "tgt", srv.data_dir / ".replaced-tgt")
        if renames == 2:
            os.rename(staged, srv.data_dir / "tgt")
        srv = box.srv = _after_restart(srv)
        assert _ids(srv, "tgt") == expected, renames
        with EngramClient(srv.http_url, space="tgt") as c:
            assert c.get_space("tgt").healthy
    _reset_target(srv)
