"""Embedding in the background: text becomes vectors after the write is acknowledged.

SPEC §9: a remember with text and no embedding is durable first; its vector
follows. The invariant that makes this crash-safe is that *pending* is not a
separate record but a property of the row: a live memory whose ``embedding`` is
NULL and whose text is not empty, in a space that has an embedder. Opening a
space lists those rows again, so a kill -9 while vectors are pending loses
none of them: after restart every acknowledged memory gets its vector.

One worker thread serves every space of a server (a thread per space would
cost thousands of threads with thousands of spaces). It takes a batch of
pending rows from one space at a time, round-robin, embeds them in one model
call outside any lock, and writes the vectors through the space's own
group-commit writer (so they are durable before they are searchable). A model
that fails is retried with backoff; the rows stay pending meanwhile and stay
findable by text.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from typing import Protocol

from ..errors import EmbedderUnavailable, EngramError, StorageError


class Embeddable(Protocol):
    """What the worker needs of a space (``MemorySpace`` is one)."""

    id: str

    @property
    def closed(self) -> bool: ...

    def embed_pending(self, limit: int) -> bool: ...

log = logging.getLogger("engram.embedding")

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
EMBEDDER_NICE = 10


class EmbeddingBackfill:
    """The worker thread that embeds every space's pending rows, round-robin."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._queue: deque[Embeddable] = deque()
        self._queued: set[int] = set()  # id() of the spaces in _queue
        self._cv = threading.Condition()
        self._stopped = False
        self._retry_at: dict[int, tuple[float, float]] = {}  # id(space) -> (when, current delay)
        self._thread: threading.Thread | None = None

    def notify(self, space: Embeddable) -> None:
        """``space`` has pending rows: make sure it gets a turn."""
        with self._cv:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="engram-embedder", daemon=True)
                self._thread.start()
            if id(space) not in self._queued:
                self._queued.add(id(space))
                self._queue.append(space)
                self._cv.notify()

    def _next(self) -> Embeddable | None:
        with self._cv:
            while not self._stopped:
                now = time.monotonic()
                for _ in range(len(self._queue)):
                    space = self._queue.popleft()
                    when = self._retry_at.get(id(space), (0.0, 0.0))[0]
                    if when <= now:
                        self._queued.discard(id(space))
                        return space
                    self._queue.append(space)
                waits = [self._retry_at[id(s)][0] - now for s in self._queue if id(s) in self._retry_at]
                self._cv.wait(timeout=min(waits) if waits else None)
            return None

    def _run(self) -> None:
        # Below the request and commit threads in the OS scheduler: embedding is background
        # work, and on a machine with few cores a write's acknowledgement must not queue
        # behind a model batch (Linux gives each thread its own nice value).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EMBEDDER_NICE)
        while True:
            space = self._next()
            if space is None:
                return
            try:
                more = space.embed_pending(self.batch_size)
            except EmbedderUnavailable as exc:
                _, delay = self._retry_at.get(id(space), (0.0, RETRY_FIRST_SECONDS / 2))
                delay = min(RETRY_MAX_SECONDS, delay * 2)
                self._retry_at[id(space)] = (time.monotonic() + delay, delay)
                log.warning("embedding failed; retrying in %.1f s: %s", delay, exc.message,
                            extra={"memory_space": space.id})
                more = True
            except (StorageError, EngramError) as exc:
                # Closing, deleted or unhealthy: its rows stay pending in the database and
                # are listed again when the space next opens.
                log.info("embedding stopped for this space: %s", exc, extra={"memory_space": space.id})
                more = False
            except Exception:
                log.exception("embedding batch failed", extra={"memory_space": space.id})
                more = False
            else:
                self._retry_at.pop(id(space), None)
            if more and not space.closed:
                self.notify(space)

    def forget(self, space: Embeddable) -> None:
        """``space`` is closing: drop it from the queue (its rows stay pending on disk)."""
        with self._cv:
            if id(space) in self._queued:
                self._queued.discard(id(space))
                self._queue = deque(s for s in self._queue if s is not space)
            self._retry_at.pop(id(space), None)

    def close(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30.0)
