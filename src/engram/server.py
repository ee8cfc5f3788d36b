"""One Engram server process: REST (+ SSE) and gRPC over one service and one registry.

Start-up order: settings -> the TLS files, when set (:mod:`engram.tls`; a missing file or a
key that does not match its certificate exits 2 before anything is locked) -> the data-dir
lock (:mod:`engram.datadir`; a second server on the same data dir exits 2 naming the holder,
before it has written anything) -> logging -> bind the HTTP socket ourselves (so port 0
picks a free port we can report; a taken port exits 2 naming it and ``--http-port``, before
any data is opened) -> ``EngramService`` (opens the registry, creates the default and
bootstrap spaces) -> start gRPC (a taken port: exit 2 naming it and ``--grpc-port``, after
closing the service) -> write the state file -> serve.
The state file is written and removed only while the lock is held, so only
the one server that owns the data dir ever touches it.

Shutdown (SIGTERM, SIGINT, ``engram stop``) is graceful and ordered so that
nothing acknowledged is lost and nothing hangs:

1. ``service.begin_shutdown()``: new streams are refused and every open
   subscription is closed, so SSE responses and gRPC server streams end
   cleanly instead of holding the listeners open until a timeout.
2. uvicorn stops accepting and waits for in-flight requests; gRPC gets
   ``shutdown_grace_seconds`` to finish in-flight RPCs. A write in flight is
   awaiting its group commit, so it finishes durable and its client gets the
   answer.
3. ``service.close()`` closes every space: each store's writer thread drains
   its queue (commits what is queued) before its connections close.
4. The tracer provider (when ``trace_file`` is set) flushes the last spans
   to the file: streams ended in step 1, so their spans are in it too.
5. The state file is removed, then the data-dir lock is released.

The HTTP edge (request head size and count, head/body/keep-alive timeouts,
the connection cap: :mod:`engram.api.rest.connection`) is uvicorn's httptools
protocol subclassed; the limits are logged at start. Accept errors (EMFILE
when descriptors run out) are logged at most once per 10 s with a count:
asyncio already pauses accepting for a second after each, but would log a
traceback every time.

uvicorn normally installs its own signal handlers and re-raises the signal
after serving, which would kill the process before steps 3-4; we replace that
with our own handlers on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from .auth.keys import ADMIN_KEY_FILE, system_dir, write_private
from .datadir import DataDirInUse, DataDirLock
from .observability import Tracing, configure_logging
from .service import BackendRefused, EngramService
from .settings import Settings, is_loopback
from .statefile import read_state, write_state
from .tls import ServerTls, TlsConfigError, load_server_tls, now_utc

log = logging.getLogger("engram.server")

LISTEN_BACKLOG = 2048  # connections the kernel queues for us
# Connections asyncio accepts in one loop turn, before any of them is seen (and, past the cap,
# refused): asyncio takes this from create_server's backlog, which uvicorn also passes to listen().
# A connection is seen two or three turns after its accept, so a burst holds a few batches at once:
# with 64, a flood under ulimit -n 256 still hit EMFILE (cap 64 + refusals 16 + ~30 own fds).
ACCEPT_BATCH = 16


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (the server owns the signals)."""

    #: With TLS, a connection must finish its handshake this long after it was accepted (asyncio's
    #: default is 60 s; the HTTP edge only sees a connection once its handshake is done).
    handshake_timeout: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.handshake_timeout is None:
            await super().startup(sockets)
            return
        # uvicorn calls loop.create_server without ssl_handshake_timeout: add it for this call only.
        loop = asyncio.get_running_loop()
        create_server = loop.create_server
        loop.create_server = functools.partial(  # type: ignore[method-assign]
            create_server, ssl_handshake_timeout=self.handshake_timeout)
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server  # the instance attribute: the class method shows through again


class PortInUse(Exception):
    """A port Engram was told to listen on is taken; the message names it and how to choose another."""


_PORT_REMEDY = {
    "REST": "--http-port N (or ENGRAM_HTTP_PORT, or http_port in the config file)",
    "gRPC": "--grpc-port N (or ENGRAM_GRPC_PORT, or grpc_port in the config file; "
            "--no-grpc serves REST only)",
}


def port_in_use(what: str, host: str, port: int) -> PortInUse:
    return PortInUse(f"the {what} port {port} on {host} is already in use (another process listens on it). "
                     f"Stop that process, or choose another port with {_PORT_REMEDY[what]}; "
                     "0 picks a free port.")


def _taken(host: str, port: int) -> bool:
    """True if binding ``host:port`` fails because something else holds it (grpc does not say why)."""
    if port == 0:
        return False
    try:
        bind_socket(host, port).close()
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    return False


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket says it is TCP. Without it, a response written as headers + body waits for the
    # client's delayed ACK (~40 ms per request on a kept-alive connection).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def _tls_for(settings: Settings) -> ServerTls | None:
    """The checked TLS material (logged as on, with subject and expiry, or off)."""
    tls = load_server_tls(settings.tls_cert, settings.tls_key)
    if tls is None:
        log.info("TLS off: REST and gRPC are plain text (set tls_cert and tls_key to serve TLS)")
        return None
    log.info("%s", tls.describe())
    if tls.not_after is not None and tls.not_after <= now_utc():
        log.warning("the TLS certificate %s expired at %s: clients will refuse it",
                    tls.cert_file, tls.not_after.isoformat())
    return tls


def _fixed_context(context: ssl.SSLContext) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]],
                                                         ssl.SSLContext]:
    """uvicorn's ``ssl_context_factory``: our context (uvicorn's default one is not used)."""
    return lambda _config, _default: context


def limit_blas(threads: int) -> list[dict[str, Any]]:
    """Cap numpy's BLAS at ``threads`` threads for the whole process (0: leave its default).

    OpenBLAS starts one thread per core and lets them spin between products. A recall's
    products are small (one 8,192-row block x one query), so on a small machine those
    threads only take the cores from the request threads: measured here, 1 thread made an
    exact scan of 20k x 384 cheaper in CPU than 2 (docs/benchmarks.md). Process-wide by
    nature (the library's own state), so it is applied once, at server start, from the
    ``blas_threads`` setting. Returns threadpoolctl's view of the BLAS libraries after it.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    if threads > 0:
        threadpool_limits(limits=threads, user_api="blas")
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    libraries = [(i.get("internal_api"), i.get("num_threads")) for i in blas]
    log.info("blas threads", extra={"requested": threads, "libraries": libraries})
    return blas


def tune_gc(young: int) -> tuple[int, int, int]:
    """Collect the start-up's garbage, freeze what is left out of every later collection, and
    collect the youngest generation after ``young`` new container objects (0: leave Python's
    defaults and freeze nothing). Returns the thresholds in force after it.

    With Python's default (700) a stream of writes ran several hundred young collections a
    second, each promoting the messages in flight, so the older generations kept re-scanning
    them: ~20-25 % of the server's CPU per StreamingRemember message (bench/notes/
    write_profile.md, Round 7). Frozen objects are still freed when their count drops to zero;
    only reference cycles among them are never collected. Process-wide: applied once, at
    server start, once everything the start-up built exists.
    """
    if young > 0:
        gc.collect()
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young, middle, old)
    thresholds = gc.get_threshold()
    log.info("gc thresholds", extra={"thresholds": thresholds, "frozen": gc.get_freeze_count()})
    return thresholds


class FrozenSpaces:
    """The spaces open when :func:`tune_gc` froze the start-up's objects. A frozen reference cycle
    is never collected, and a space's objects hold cycles (hooks bound to it), so a frozen space
    once closed (unloaded when idle, deleted, replaced by a restore) would stay in memory, vectors
    and all. The first time one is found closed, the freeze is undone: the start-up's objects
    rejoin the oldest generation, which a full collection scans (rare at the raised young
    threshold; the threshold, not the freeze, is what took the collector's cost down)."""

    def __init__(self, spaces: Iterable[Any]) -> None:
        self._spaces: weakref.WeakSet[Any] = weakref.WeakSet(spaces if gc.get_freeze_count() else ())

    def release(self) -> bool:
        """Undo the freeze if a frozen space has been closed; True if it was undone now."""
        if not any(getattr(space, "closed", False) for space in list(self._spaces)):
            return False
        self._spaces = weakref.WeakSet()
        gc.unfreeze()  # the closed space's cycles can be collected now
        log.info("gc: a space open at start-up was closed; the start-up's objects are no longer frozen")
        return True


async def serve(settings: Settings) -> None:
    # Everything Engram creates under the data root is private to its user (files 0600,
    # directories 0700): the storage layer also passes explicit modes, this covers the rest.
    os.umask(0o077)
    configure_logging(settings.log_level, settings.log_json)
    limit_blas(settings.blas_threads)
    # Tracing is built here and handed down (no global provider); disabled when trace_file is empty.
    tracing = Tracing.from_settings(settings.trace_file, settings.trace_sample_ratio)
    tls = _tls_for(settings)  # checked by run() already; checked again for direct callers
    # The REST port first: taken, it stops the start before any data is opened.
    try:
        sock = bind_socket(settings.host, settings.http_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use("REST", settings.host, settings.http_port) from None
        raise
    try:
        service = open_service(settings, tracing)
    except BaseException:
        sock.close()
        raise
    try:
        await _serve(settings, service, sock, tracing, tls)
    finally:
        sock.close()


def open_service(settings: Settings, tracing: Tracing) -> EngramService:
    """The service of ``settings.backend``: SQLite files under data_dir, or PostgreSQL (SPEC §13)."""
    if settings.backend == "postgres":
        from .service_pg import PostgresService  # psycopg is needed only here (the postgres extra)

        return PostgresService(settings, tracing=tracing)
    return EngramService(settings, tracing=tracing)


async def _serve(settings: Settings, service: EngramService, sock: socket.socket, tracing: Tracing,
                 tls: ServerTls | None) -> None:
    from .api.rest.app import create_app
    from .api.rest.connection import HttpLimits, accept_error_handler, protocol_for

    bootstrap_admin_key(service)
    # Say which embedder new spaces get (and why, if the default one fell back), and start
    # loading a local model now so the first remember or recall does not wait for it.
    service.embedders.warm()
    log.info("%s", service.embedders.describe())
    app = create_app(service)
    http_port = int(sock.getsockname()[1])
    limits = HttpLimits.from_settings(settings, service.descriptors)
    log.info("%s", limits.describe())
    log.info("%s", app.state.host_policy.describe())
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(max(1, settings.shutdown_grace_seconds)),
        limit_concurrency=None,  # the connection cap lives in the protocol (refuses before reading)
        # uvicorn wants an int; the protocol re-reads the float setting
        timeout_keep_alive=max(1, round(settings.http_keepalive_timeout_seconds)),
        http=protocol_for(limits),
        ws="none",  # no WebSocket routes: an Upgrade request is served as plain HTTP
        backlog=ACCEPT_BATCH,
        ssl_context_factory=_fixed_context(tls.ssl_context()) if tls is not None else None,
    )
    http = _Uvicorn(config)
    if tls is not None:
        http.handshake_timeout = settings.http_header_timeout_seconds
    try:
        grpc_server, grpc_port = await _start_grpc(settings, service, tls)
    except BaseException:
        await asyncio.to_thread(service.close)  # nothing was served: close what opened, then say why
        raise

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(accept_error_handler())
    stop = asyncio.Event()

    def on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("second %s: forcing exit", signame)
            http.force_exit = True
            return
        log.info("received %s: shutting down gracefully", signame)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)

    state_file = settings.resolved_state_file
    scheme = "https" if tls is not None else "http"
    state = {
        "pid": os.getpid(),
        "host": settings.host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "http_url": f"{scheme}://{settings.host}:{http_port}",
        "grpc_target": f"{settings.host}:{grpc_port}" if grpc_port else None,
        "tls": tls is not None,  # REST is https and gRPC needs TLS credentials
        "data_dir": str(Path(settings.data_dir).resolve()),
        "started_at": time.time(),
    }
    http_task = asyncio.create_task(http.serve(sockets=[sock]))
    # Wait until uvicorn is accepting before announcing the ports.
    while not http.started and not http_task.done():
        await asyncio.sleep(0.01)
    if http_task.done():
        await http_task  # re-raise the start-up failure
    # asyncio re-listened with ACCEPT_BATCH: give the kernel queue its depth back (the accept
    # batch stays small, so a burst cannot take many descriptors before the cap refuses it).
    sock.listen(LISTEN_BACKLOG)
    tune_gc(settings.gc_young_threshold)
    write_state(state_file, state)
    grpc_text = (f", gRPC{' (TLS)' if tls is not None else ''} on {settings.host}:{grpc_port}"
                 if grpc_port else ", gRPC disabled")
    print(f"engram serving REST on {state['http_url']}{grpc_text} "
          f"(data: {state['data_dir']}, default space: {settings.default_space})", flush=True)
    log.info("server started", extra={"http_port": http_port, "grpc_port": grpc_port, "pid": os.getpid()})

    frozen = FrozenSpaces(service.registry.loaded())
    maintenance = asyncio.create_task(_maintenance(service, stop, frozen))
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait({http_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    service.begin_shutdown()
    http.should_exit = True
    if grpc_server is not None:
        await grpc_server.stop(settings.shutdown_grace_seconds)
    with contextlib.suppress(asyncio.CancelledError):
        await http_task
    maintenance.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await maintenance
    if service.read_pool is not None:
        await service.read_pool.aclose()
    await asyncio.to_thread(service.close)
    await asyncio.to_thread(tracing.shutdown)  # the last spans (streams ended above) reach the file
    current = read_state(state_file)
    if current is not None and current.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            state_file.unlink()
    log.info("server stopped")
    print("engram stopped", flush=True)


async def _start_grpc(settings: Settings, service: EngramService,
                      tls: ServerTls | None) -> tuple[Any, int | None]:
    """The gRPC server, started (None, None when gRPC is disabled); a taken port is :class:`PortInUse`."""
    from .api.grpc.server import create_grpc_server

    if not settings.grpc_enabled:
        return None, None
    try:
        credentials = tls.grpc_credentials() if tls is not None else None
        server, port = await create_grpc_server(service, settings.host, settings.grpc_port,
                                                credentials=credentials)
    except (OSError, RuntimeError):  # grpcio raises RuntimeError("Failed to bind ...") or returns port 0
        if _taken(settings.host, settings.grpc_port):
            raise port_in_use("gRPC", settings.host, settings.grpc_port) from None
        raise
    await server.start()
    return server, port


async def _maintenance(service: EngramService, stop: asyncio.Event,
                       frozen: FrozenSpaces | None = None) -> None:
    """Periodic housekeeping: heal degraded spaces (every second: their backoff decides when
    a space is tried), unload spaces while descriptors are above the high water mark (every
    second), unload idle spaces (every idle-unload interval / 4), and sweep expired memories
    out of loaded spaces (every ``expiry_sweep_interval_seconds``)."""
    unload_every = max(1.0, min(60.0, service.settings.space_idle_unload_seconds / 4))
    next_unload = time.monotonic() + unload_every
    sweep_every = service.settings.expiry_sweep_interval_seconds
    next_sweep = time.monotonic() + sweep_every
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), min(1.0, sweep_every))
        if stop.is_set():
            return
        if time.monotonic() >= next_sweep:
            # One sweeper for the whole server visits the loaded spaces (no thread per space);
            # each sweep batch is an ordinary write of that space (one group commit).
            try:
                await asyncio.to_thread(service.registry.sweep_expired)
            except Exception:  # housekeeping must never take the server down; it is logged
                log.exception("expiry sweep failed")
            next_sweep = time.monotonic() + sweep_every
        if frozen is not None:
            frozen.release()
        try:
            await asyncio.to_thread(service.registry.heal_due)
            await asyncio.to_thread(service.registry.trim)  # descriptors crept up between loads
        except Exception:  # housekeeping must never take the server down; it is logged
            log.exception("healing degraded spaces or trimming descriptors failed")
        if time.monotonic() < next_unload:
            continue
        next_unload = time.monotonic() + unload_every
        try:
            await asyncio.to_thread(service.registry.unload_idle)
        except Exception:  # housekeeping must never take the server down; it is logged
            log.exception("idle unload failed")


def insecure_refusal(settings: Settings) -> str | None:
    """Why this configuration must not start (a non-loopback listener without keys), or None."""
    if settings.auth == "disabled" and not is_loopback(settings.host) and not settings.allow_insecure:
        return (f"auth = \"disabled\" on a non-loopback listener ({settings.host}) would let anyone who can "
                f"reach the port read, change and delete every memory space. Remove auth = \"disabled\" "
                f"(keys are then required), listen on 127.0.0.1, or set allow_insecure = true if something "
                f"in front of Engram authenticates every request.")
    return None


def bootstrap_admin_key(service: EngramService) -> None:
    """With auth required and no usable admin key, create one and leave its token in admin.key (0600).

    "No usable admin key": none was ever made, or every admin key is revoked or expired (then a
    restart by someone who can read the data dir is the way back in).

    The CLI on the same machine reads that file when no key is given, so a first session works
    unchanged. The token itself is never logged: only where it is.
    """
    auth = service.auth
    if not auth.required:
        log.warning("auth is disabled: every client that reaches %s is admin on every space "
                    "(fine on loopback; see docs/security.md, \"Keys\")", service.settings.host)
        return
    store = auth.store()
    # The check and the creation in one step: servers starting at once on one PostgreSQL
    # database make one admin key between them (auth.pg_keys).
    made = service.create_first_admin_key("bootstrap admin")
    if made is None:
        log.info("auth required: API keys are checked on every request")
        return
    rec, token = made
    path = system_dir(store.dir.parent) / ADMIN_KEY_FILE  # the PostgreSQL key store writes no file there
    write_private(path, token + "\n")
    log.info("auth required and no usable admin key existed: created admin key %s; its token is in %s "
             "(mode 0600)",
             rec.key_id, path)
    print(f"engram: created admin API key {rec.key_id}; the token is in {path}", flush=True)


def run(settings: Settings) -> int:
    refusal = insecure_refusal(settings)
    if refusal is not None:
        print(f"engram: cannot start: {refusal}", file=sys.stderr)
        return 2
    try:
        load_server_tls(settings.tls_cert, settings.tls_key)  # before anything is locked or written
    except TlsConfigError as exc:
        print(f"engram: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        lock = DataDirLock.acquire(settings.data_dir, "server", state_file=settings.resolved_state_file)
    except DataDirInUse as exc:
        print(f"engram: cannot start: {exc.message}\n{exc.suggestion}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"engram: cannot start: cannot lock the data dir {settings.data_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(settings))
    except PortInUse as exc:
        print(f"engram: cannot start: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if settings.backend != "postgres":
            raise
        print(f"engram: cannot start: backend = \"postgres\" needs the postgres extra "
              f"(pip install 'engram[postgres]'): {exc}", file=sys.stderr)
        return 2
    except BackendRefused as exc:
        print(f"engram: cannot start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"engram: cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()  # after serve() removed the state file: only the holder ever touches it
    return 0
