"""The audit log: JSON lines in ``<data_root>/_system/audit.log`` (mode 0600).

Records key creation and revocation, space creation, deletion and restore, and
every refused request (401, 403, and a space outside the key's set), with the
time, key id (never key material), peer, action, target and outcome.

Never on the request path: :meth:`AuditLog.record` only puts a dict on a
bounded queue; one writer thread appends and rotates by size (``audit.log.1``
.. ``.N``). If the queue is full (the disk stalls), the event is counted as
dropped rather than blocking a request; the count is written once the writer
catches up, so a gap is never silent.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("engram.audit")

AUDIT_FILE = "audit.log"
_QUEUE_DEPTH = 10_000
_STOP = object()


class AuditLog:
    def __init__(self, directory: Path, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> None:
        self.path = Path(directory) / AUDIT_FILE
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="engram-audit", daemon=True)
        self._thread.start()

    def record(self, event: str, *, key_id: str = "-", peer: str = "-", action: str = "",
               target: str = "", outcome: str = "ok", **extra: Any) -> None:
        entry = {"time": time.time(), "event": event, "key_id": key_id, "peer": peer,
                 "action": action, "target": target, "outcome": outcome, **extra}
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything recorded so far is on disk (tests, shutdown)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def close(self) -> None:
        try:
            self._queue.put(_STOP, timeout=2.0)
        except queue.Full:
            return
        self._thread.join(timeout=5.0)

    # -- writer thread -------------------------------------------------------------
    def _run(self) -> None:
        reported = 0
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            lines = [item]
            while len(lines) < 512:  # batch what is already queued into one write
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or isinstance(nxt, threading.Event):
                    self._write(lines)
                    lines = []
                    if nxt is _STOP:
                        return
                    assert isinstance(nxt, threading.Event)
                    nxt.set()
                    continue
                lines.append(nxt)
            if self.dropped != reported:
                lines.append({"time": time.time(), "event": "audit_dropped",
                              "count": self.dropped - reported})
                reported = self.dropped
            self._write(lines)

    def _write(self, entries: list[object]) -> None:
        if not entries:
            return
        lines = [(json.dumps(e, separators=(",", ":")) + "\n").encode() for e in entries]
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            chunk: list[bytes] = []
            for line in lines:
                if chunk and size + len(line) > self.max_bytes:
                    self._append(b"".join(chunk))
                    chunk = []
                if size > 0 and size + len(line) > self.max_bytes:
                    self._rotate()
                    size = 0
                chunk.append(line)
                size += len(line)
            self._append(b"".join(chunk))
        except OSError as exc:  # the audit log must not take the server down; say so loudly
            log.error("audit log write failed: %s (%d events lost)", exc, len(entries))

    def _append(self, data: bytes) -> None:
        if not data:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        if self.backups == 0:
            os.truncate(self.path, 0)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{AUDIT_FILE}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{AUDIT_FILE}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{AUDIT_FILE}.1"))
