"""The consolidation schedule of one space: a background thread, stopped on close.

Every ``interval`` seconds the thread asks its tick function to run; the tick
(``SpaceCognition.scheduled_consolidation``) consolidates only if the space's
episodes changed since the last run, so an idle space costs one cheap query per
interval. The thread never holds a lock of the store: consolidation clusters on
this thread and writes through the space's writer like any other caller.

Why an ``Event.wait`` and not ``time.sleep``: ``stop()`` sets the event, which
wakes the thread at once, so closing a space (or the server) never waits out
an interval, and ``stop()`` can join the thread deterministically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("engram.cognition.scheduler")


class Scheduler:
    def __init__(self, name: str, interval: float, tick: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.failures = 0

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"engram-consolidate-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._tick()
                self.ticks += 1
            except Exception:  # a failed run is logged and retried next interval, never fatal
                self.failures += 1
                if self._stop.is_set():
                    return
                log.exception("scheduled consolidation failed", extra={"memory_space": self.name})

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
