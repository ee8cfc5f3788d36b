"""The data-dir lock in-process: exclusive, names its holder, survives stale contents, never inherited."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engram.datadir import LOCK_NAME, DataDirInUse, DataDirLock, holder


def test_second_acquire_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with DataDirLock.acquire(tmp_path / "data", "server", state_file=tmp_path / "s.json") as lock:
        assert lock.held
        with pytest.raises(DataDirInUse) as err:
            DataDirLock.acquire(tmp_path / "data", "mcp")
        exc = err.value
        assert exc.holder.pid == os.getpid() and exc.holder.role == "server"
        assert f"pid {os.getpid()}" in exc.message and "engram stop --data-dir" in exc.suggestion
        assert exc.exit_code == 2 and exc.code == "DATA_DIR_IN_USE"
        assert exc.holder.state_file == str((tmp_path / "s.json").resolve())
        found = holder(tmp_path / "data")
        assert found is not None and found.pid == os.getpid()
    assert holder(tmp_path / "data") is None, "released: nobody holds it"
    DataDirLock.acquire(tmp_path / "data", "mcp").release()


def test_lock_file_is_private_and_kept(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path / "data", "server")
    path = tmp_path / "data" / LOCK_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    lock.release()  # idempotent
    assert path.exists(), "never deleted: a new inode would let two processes hold 'the' lock"


def test_stale_pid_in_the_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / LOCK_NAME).write_text(json.dumps({"pid": 1, "role": "server"}))
    assert holder(tmp_path / "data") is None
    with DataDirLock.acquire(tmp_path / "data", "server"):
        assert json.loads((tmp_path / "data" / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_child_process_does_not_inherit_the_lock(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path / "data", "server")
    # A child started while the lock is held, with every inheritable descriptor passed on. It says
    # "up" once it runs: by then exec has closed its close-on-exec descriptors (between fork and exec
    # a child briefly shares every descriptor, which is not inheritance).
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             close_fds=False, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        lock.release()
        assert child.poll() is None
        assert holder(tmp_path / "data") is None, "the child kept the lock alive after its parent let go"
    finally:
        child.kill()
        child.wait(10)
