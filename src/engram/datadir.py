"""One writer per data dir: an exclusive OS file lock on ``<data_root>/engram.lock``.

Why: every space keeps its LSN counter, vector index and group-commit queue in
the memory of the one process that opened it. Two processes on one data dir
each hand out the same LSN (issue 13 saw LSN 5 twice in one space) and each
believe they own the state file. So whatever opens the data dir to write (the
server, an offline ``engram mcp``, any offline CLI command) first takes this
lock, and holds it for as long as it has the data dir open.

Invariants this module keeps:

* The lock is ``flock(LOCK_EX)`` on an open file description. The kernel
  releases it when the holder's last descriptor closes, which includes every
  kind of death (kill -9, OOM): a crashed holder never blocks the next start.
* The lock file is never deleted. Deleting it would let a newcomer create a
  fresh inode and lock *that* while the old holder still holds the old one:
  two holders, the exact failure this exists to prevent.
* The JSON inside (pid, role, state file, start time) is written by the holder
  *after* it has the lock, and only ever read by someone who failed to get it,
  to name the holder. A stale pid left by a killed holder is harmless: the next
  holder overwrites it, and nobody trusts it without failing to lock first.
* The descriptor is close-on-exec, so a child process never inherits the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngramError

LOCK_NAME = "engram.lock"
#: exit status of ``engram start`` (and offline commands) when the data dir is in use
EXIT_IN_USE = 2
# A probe (``holder()``) holds the lock for microseconds; retrying this long rides over it.
_RETRY_SECONDS = 0.5
# How long to wait for a holder that has just taken the lock to write its pid.
_INFO_WAIT_SECONDS = 2.0


class DataDirInUse(EngramError):
    """Another process holds the data dir (a server, or an offline ``engram mcp`` / CLI command)."""

    code = "DATA_DIR_IN_USE"
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"
    exit_code = EXIT_IN_USE

    def __init__(self, message: str, *, holder: Holder, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a data dir, as its lock file says (``pid`` None: it has not said yet)."""

    data_dir: Path
    pid: int | None
    role: str  # "server" | "mcp" | "cli"
    state_file: str | None = None
    started_at: float | None = None

    def describe(self) -> str:
        names = {"server": "an Engram server", "mcp": "an offline `engram mcp`"}
        what = names.get(self.role, "an engram command")
        return f"{what} (pid {self.pid})" if self.pid else f"{what} (pid not yet known)"

    def remedy(self) -> str:
        if self.role == "server":
            return (f"Stop it with `engram stop --data-dir {self.data_dir}`"
                    f"{f' or `kill {self.pid}`' if self.pid else ''}, or use another --data-dir. "
                    "Clients and `engram mcp` talk to the running server instead.")
        return (f"Wait for it to finish{f' or stop it (`kill {self.pid}`)' if self.pid else ''}; "
                "or start the server first (`engram start`): `engram mcp` and the CLI then go through it.")


def lock_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / LOCK_NAME


class DataDirLock:
    """The held lock. ``DataDirLock.acquire(root, role)``; ``release()`` (or ``with``) to let go."""

    def __init__(self, data_dir: Path, fd: int, info: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd
        self.info = info

    @classmethod
    def acquire(cls, data_dir: Path | str, role: str, *, state_file: Path | None = None) -> DataDirLock:
        """Take the lock or raise :class:`DataDirInUse` naming the holder. Creates the data root."""
        root = Path(data_dir).resolve()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)  # private whatever the umask (as storage)
        path = lock_path(root)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not _try_lock(fd):
                holder = _read_holder(path, root, wait=_INFO_WAIT_SECONDS)
                raise DataDirInUse(f"data dir {root} is in use by {holder.describe()}",
                                   suggestion=holder.remedy(), holder=holder,
                                   details={"pid": holder.pid, "role": holder.role, "data_dir": str(root)})
            os.fchmod(fd, 0o600)  # a lock file left by an older version may be wider
            info = {"pid": os.getpid(), "role": role, "started_at": time.time(),
                    "state_file": str(Path(state_file).resolve()) if state_file is not None else None,
                    "argv": sys.argv[:6]}
            data = (json.dumps(info) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except BaseException:
            os.close(fd)  # closing drops the lock too, if we had it
            raise
        return cls(root, fd, info)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let go (idempotent). The file and its contents stay: see the module docstring."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    deadline = time.monotonic() + _RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def holder(data_dir: Path | str) -> Holder | None:
    """Who holds ``data_dir`` now, or None when nobody does (a stale pid in the file is ignored).

    Probes with a shared lock taken and dropped at once; :meth:`DataDirLock.acquire`
    retries briefly, so a probe never makes a real start fail.
    """
    root = Path(data_dir).resolve()
    path = lock_path(root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path, root, wait=_INFO_WAIT_SECONDS)
        return None
    finally:
        os.close(fd)  # also drops the probe's shared lock


def _read_holder(path: Path, root: Path, *, wait: float) -> Holder:
    """The holder's self-description; waits briefly for one that has just taken the lock to write it."""
    deadline = time.monotonic() + wait
    while True:
        info: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            raw = json.loads(path.read_text() or "{}")
            info = raw if isinstance(raw, dict) else {}
        pid = info.get("pid")
        if isinstance(pid, int) or time.monotonic() >= deadline:
            started = info.get("started_at")
            return Holder(root, pid if isinstance(pid, int) else None, str(info.get("role", "unknown")),
                          info.get("state_file") if isinstance(info.get("state_file"), str) else None,
                          float(started) if isinstance(started, (int, float)) else None)
        time.sleep(0.02)
