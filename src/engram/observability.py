"""Metrics, structured logging and tracing, owned by one server instance (no globals).

The ``memory_space`` label is capped: the first ``metrics_space_label_cap``
distinct spaces get their own label value, every later one is reported as
``_other``, so a tenant-heavy deployment cannot blow up the time-series count.

Tracing (:class:`Tracing`) is OpenTelemetry with a provider the server builds
from its settings and hands down (``EngramService.tracing``); nothing is set
globally, so two servers in one process trace independently. With
``trace_file`` empty it is disabled: ``start`` returns the invalid span
without calling into OpenTelemetry and ``attach`` does nothing, so the hot
paths pay a method call and a branch. With ``trace_file`` set, finished spans
are batched and written as JSON lines (:class:`JsonLinesSpanExporter`); the
server flushes them on shutdown. Span conventions (one span per REST request
and per gRPC call, attributes ``memory_space``, ``transport``, ``status``,
``fallback``...) are in docs/architecture.md ("Tracing").
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

OTHER = "_other"


class Metrics:
    def __init__(self, space_label_cap: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cap = space_label_cap
        self._spaces: set[str] = set()
        self._lock = threading.Lock()
        # (transport, operation, space, status) -> its counter and histogram children, for
        # spaces with a label of their own (a space's label never changes once given).
        self._observers: dict[tuple[str, str, str | None, str], tuple[Any, Any]] = {}
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
        self.embedding_backlog = Gauge(
            "engram_embedding_backlog",
            "Memories stored but not yet embedded, per loaded space (SPEC §9).",
            ["memory_space"], registry=r,
        )
        self.subscribers = Gauge(
            "engram_stream_subscribers", "Open stream subscriptions per space and transport.",
            ["transport", "memory_space"], registry=r,
        )
        self.lagged = Counter(
            "engram_stream_lagged_total", "Lag notices sent to slow stream consumers.",
            ["transport", "memory_space"], registry=r,
        )
        self.read_workers = Counter(
            "engram_recall_worker_total",
            "Recalls with read workers on (read_workers): answered by a worker (served) or by the "
            "server itself (server: the worker's copy was not current, or the recall is not one it serves).",
            ["outcome"], registry=r,
        )
        self.read_worker_copies = Counter(
            "engram_read_worker_copies_total",
            "Read workers' copies of spaces made current: caught_up (the changes since the copy's state "
            "sent with a recall) or reloaded (the whole space loaded again).",
            ["how"], registry=r,
        )
        self.pg_write_groups = Counter(
            "engram_pg_write_groups_total",
            "PostgreSQL backend: group commits of writes (one transaction, one commit each).", registry=r,
        )
        self.pg_grouped_writes = Counter(
            "engram_pg_grouped_writes_total",
            "PostgreSQL backend: write operations those group commits carried.", registry=r,
        )
        self.spaces_loaded = Gauge("engram_spaces_loaded", "Memory spaces currently loaded.", registry=r)
        self.spaces_total = Gauge("engram_spaces_total", "Memory spaces on disk.", registry=r)
        self.asyncio_tasks = Gauge(
            "engram_asyncio_tasks",
            "asyncio tasks alive in the server's event loop (leak watch).",
            registry=r,
        )

    def space_label(self, space_id: str | None) -> str:
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

    def observe(
        self, transport: str, operation: str, space_id: str | None, status: str, seconds: float
    ) -> None:
        key = (transport, operation, space_id, status)
        pair = self._observers.get(key)
        if pair is None:  # the children's lookup (a lock, a tuple) once per label set, not per call
            label = self.space_label(space_id)
            pair = (self.requests.labels(transport, operation, label, status),
                    self.latency.labels(transport, operation, label))
            if label != OTHER:
                self._observers[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def observe_many(
        self, transport: str, operation: str, space_id: str | None, status: str, seconds: float, count: int
    ) -> None:
        """``observe`` for ``count`` requests that took ``seconds`` each (the messages of one stored
        batch): the same counts and histogram as ``count`` calls, with one label lookup."""
        if count <= 0:
            return
        label = self.space_label(space_id)
        self.requests.labels(transport, operation, label, status).inc(count)
        hist = self.latency.labels(transport, operation, label)
        for _ in range(count):
            hist.observe(seconds)

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
        if "trace_id" not in out:  # log lines written inside a span carry its ids
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                out["trace_id"] = format(ctx.trace_id, "032x")
                out["span_id"] = format(ctx.span_id, "016x")
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


# ----------------------------------------------------------------------------- tracing

_PROPAGATOR = TraceContextTextMapPropagator()


class JsonLinesSpanExporter(SpanExporter):
    """Finished spans, one compact JSON object per line, appended to a file.

    Called from the batch processor's worker thread (never the event loop);
    each batch is written and flushed at once, so a reader sees whole lines.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        # Held open for the exporter's lifetime; shutdown() closes it.
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                self._file.write(lines)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The JSON-lines shape of one finished span (documented in docs/architecture.md)."""
    ctx = span.get_span_context()
    parent = span.parent
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x") if ctx else None,
        "span_id": format(ctx.span_id, "016x") if ctx else None,
        "parent_span_id": format(parent.span_id, "016x") if parent else None,
        "kind": span.kind.name,
        "start_unix_nano": start,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
    }


class Tracing:
    """The server's tracer, or nothing at all when tracing is disabled.

    ``start`` begins a span (the invalid, non-recording span when disabled),
    ``attach`` makes one current in a coroutine (so engine spans nest under it
    and log lines carry its trace id) and ``finish`` records the outcome that
    every transport reports the same way.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self._tracer = provider.get_tracer("engram") if provider is not None else None

    @classmethod
    def from_settings(cls, trace_file: str, sample_ratio: float = 1.0) -> Tracing:
        if not trace_file:
            return cls(None)
        sampler = ParentBased(TraceIdRatioBased(sample_ratio))
        provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
        # A short delay keeps the file close to live; the queue bound keeps memory bounded if
        # the disk is slow (spans beyond it are dropped, never block a request).
        provider.add_span_processor(BatchSpanProcessor(
            JsonLinesSpanExporter(trace_file), max_queue_size=8192, schedule_delay_millis=500,
            max_export_batch_size=512,
        ))
        return cls(provider)

    def start(self, name: str, attributes: Mapping[str, Any], *, parent: Span | None = None,
              carrier: Mapping[str, str] | None = None, kind: SpanKind = SpanKind.SERVER) -> Span:
        """Begin a span under ``parent`` (a span), or under the caller's W3C ``traceparent`` in
        ``carrier``, or under whatever span is current."""
        if self._tracer is None:
            return INVALID_SPAN
        ctx = None
        if parent is not None:
            ctx = trace.set_span_in_context(parent)
        elif carrier:
            ctx = _PROPAGATOR.extract(carrier)
        return self._tracer.start_span(name, context=ctx, kind=kind, attributes=attributes)

    def attach(self, span: Span) -> object | None:
        """Make ``span`` current; returns the token for :meth:`detach` (None when disabled).

        Only in a coroutine: a token must be detached in the context it was attached in,
        which an async generator finalised by the garbage collector does not guarantee.
        """
        if self._tracer is None:
            return None
        return otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def detach(token: object | None) -> None:
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    @contextmanager
    def _engine(self, name: str, space: str) -> Iterator[Span]:
        assert self._tracer is not None
        with self._tracer.start_as_current_span(name, kind=SpanKind.INTERNAL,
                                                attributes={"memory_space": space}) as span:
            yield span

    def engine_span(self, name: str, space: str) -> Any:
        """A child span around engine work (``with tracing.engine_span("engram.recall", space):``)."""
        return self._engine(name, space) if self._tracer is not None else _NULL

    def shutdown(self) -> None:
        """Flush every finished span to the file and close it (idempotent)."""
        provider, self.provider, self._tracer = self.provider, None, None
        if provider is not None:
            provider.shutdown()


class _NullContext:
    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NULL = _NullContext()


def finish_span(span: Span, *, space: str | None, status: str, fallback: bool = False,
                requested: str | None = None, error_code: str | None = None,
                error_message: str | None = None, exc: BaseException | None = None,
                failed: bool = False, extra: Mapping[str, Any] | None = None) -> None:
    """Record the outcome both transports report, then end the span.

    ``memory_space`` is the resolved space; when the space itself was the problem
    (invalid id, conflict) ``requested_space`` carries what the client sent, truncated.
    Any failed call (4xx/5xx, non-OK status) is ``ERROR`` with ``error.type`` = the Engram code.
    Attributes are set in one call (each SDK call takes the span's lock).
    """
    if span.is_recording():
        attrs: dict[str, Any] = dict(extra) if extra else {}
        attrs["status"] = status
        attrs["fallback"] = fallback
        if space is not None:
            attrs["memory_space"] = space
        elif requested:
            attrs["requested_space"] = requested[:80]
        if failed and error_code:
            attrs["error.type"] = error_code
        span.set_attributes(attrs)
        if failed:
            if exc is not None:
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{error_code or status}: {error_message or ''}"[:500]))
    span.end()
