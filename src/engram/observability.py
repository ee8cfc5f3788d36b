"""Metrics and structured logging, owned by one server instance (no globals).

The ``memory_space`` label is capped: the first ``metrics_space_label_cap``
distinct spaces get their own label value, every later one is reported as
``_other``, so a tenant-heavy deployment cannot blow up the time-series count.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

OTHER = "_other"


class Metrics:
    def __init__(self, space_label_cap: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cap = space_label_cap
        self._spaces: set[str] = set()
        self._lock = threading.Lock()
        r = self.registry
        self.requests = Counter(
            "engram_requests_total", "Requests handled, by transport, operation and outcome.",
            ["transport", "operation", "memory_space", "status"], registry=r,
        )
        self.latency = Histogram(
            "engram_request_duration_seconds", "Request latency by transport and operation.",
            ["transport", "operation", "memory_space"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.fallback = Counter(
            "engram_memory_space_default_fallback_total",
            "Requests that named no memory space and fell back to the default space.",
            ["transport", "operation"], registry=r,
        )
        self.memories = Gauge(
            "engram_memories", "Memories stored per loaded space.", ["memory_space"], registry=r,
        )
        self.subscribers = Gauge(
            "engram_stream_subscribers", "Open stream subscriptions per space and transport.",
            ["transport", "memory_space"], registry=r,
        )
        self.lagged = Counter(
            "engram_stream_lagged_total", "Lag notices sent to slow stream consumers.",
            ["transport", "memory_space"], registry=r,
        )
        self.spaces_loaded = Gauge("engram_spaces_loaded", "Memory spaces currently loaded.", registry=r)
        self.spaces_total = Gauge("engram_spaces_total", "Memory spaces on disk.", registry=r)
        self.asyncio_tasks = Gauge(
            "engram_asyncio_tasks", "asyncio tasks alive in the server's event loop (leak watch).", registry=r,
        )

    def space_label(self, space_id: Optional[str]) -> str:
        if not space_id:
            return "none"
        if space_id in self._spaces:
            return space_id
        with self._lock:
            if space_id in self._spaces:
                return space_id
            if len(self._spaces) < self.cap:
                self._spaces.add(space_id)
                return space_id
        return OTHER

    def observe(self, transport: str, operation: str, space_id: Optional[str], status: str, seconds: float) -> None:
        label = self.space_label(space_id)
        self.requests.labels(transport, operation, label, status).inc()
        self.latency.labels(transport, operation, label).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; carries ``memory_space`` and any ``extra`` fields."""

    _std = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in record.__dict__.items():
            if key not in self._std and not key.startswith("_"):
                out[key] = val
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "info", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("engram")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class Timer:
    __slots__ = ("t0",)

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
