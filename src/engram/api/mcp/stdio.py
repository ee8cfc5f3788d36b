"""``engram mcp``: the MCP tools over stdio, bound to one memory space.

Which engine serves the tools is decided at the first tool call (not at start,
so an MCP client may start this before or after ``engram start`` without a
race), in this order:

1. ``--url`` / ``ENGRAM_URL``: that server, over REST.
2. The state file names a live server: that server, over REST.
3. The data-dir lock (:mod:`engram.datadir`) is free: take it and open the
   data dir in-process ("offline"). The lock is held until this process ends,
   so a server started meanwhile exits 2 naming this process, as it must: two
   writers on one data dir would corrupt its LSNs.
4. A server holds the lock but its state file is not written yet (it is
   starting): wait for the state file, then use it over REST.
5. Another offline ``engram mcp`` or CLI command holds it: every tool call
   answers with an error naming that process and the way out (start a server,
   which all agents can then share).

When the server in use stops answering, the next call chooses again (so a
restarted server on new ports is found, or the data dir is opened offline once
it is free).

Stdio hygiene: stdout carries JSON-RPC and nothing else. The SDK's
``stdio_server`` points fd 1 at stderr while it serves, so even a stray print or
a C library's output cannot corrupt the stream; logs go to stderr. When the
client closes stdin the server loop ends, the engine closes (the offline
service drains its writes, then the lock is released) and the process exits 0.
SIGTERM and SIGINT close the engine the same way and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.stdio import stdio_server

from ...client.http import AsyncEngramClient, EngramConnectionError
from ...datadir import DataDirInUse, DataDirLock
from ...errors import EngramError
from ...settings import Settings
from ...statefile import pid_alive, read_state
from .engines import ClientEngine, Engine, ServiceEngine
from .server import BoundSpace, build_server

log = logging.getLogger("engram.mcp")

#: how long a tool call waits for a server that holds the data dir to announce its address
SERVER_ANNOUNCE_WAIT = 30.0


@dataclass(frozen=True)
class StdioOptions:
    settings: Settings
    space: str
    url: str | None  # explicit (--url / ENGRAM_URL): always that server
    timeout: float
    create_space: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # e.g. Authorization, once keys exist (SPEC §10)
    ca_file: str | None = None  # CA of an https server's certificate (--ca-file / ENGRAM_CA_FILE)


class Engines:
    """Chooses, keeps and closes the engine behind the tools (see the module docstring)."""

    def __init__(self, opts: StdioOptions) -> None:
        self.opts = opts
        self._engine: Engine | None = None
        self._client: ClientEngine | None = None
        self._service: Any = None  # EngramService when offline
        self._lock: DataDirLock | None = None
        self._choosing = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self.mode = "undecided"

    async def __call__(self) -> Engine:
        async with self._choosing:
            if self._engine is None:
                # Kept before the space is created: a failure there is answered like any other call's
                # (a lost server is forgotten by failed()), never leaving an engine open but unknown.
                self._engine = engine = await self._choose()
                if self.opts.create_space:
                    await engine.create_space(self.opts.space)
            return self._engine

    def failed(self, exc: EngramError) -> None:
        """A tool call failed; if the server stopped answering, choose again at the next call."""
        if isinstance(exc, EngramConnectionError) and self._client is not None:
            client, self._client, self._engine = self._client, None, None
            self.mode = "undecided"
            task = asyncio.get_running_loop().create_task(client.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _choose(self) -> Engine:
        s = self.opts.settings
        if self.opts.url:
            return self._over_http(self.opts.url, "--url / ENGRAM_URL")
        url = _live_server_url(s.resolved_state_file)
        if url:
            return self._over_http(url, f"state file {s.resolved_state_file}")
        try:
            lock = await asyncio.to_thread(DataDirLock.acquire, s.data_dir, "mcp")
        except DataDirInUse as exc:
            if exc.holder.role != "server":
                raise
            state_files = [Path(p) for p in (exc.holder.state_file, s.resolved_state_file) if p]
            url = await _wait_for_server(exc.holder.pid, state_files)
            if url is None:
                raise EngramConnectionError(
                    f"{exc.message}, but it has not announced its address within {SERVER_ANNOUNCE_WAIT:g} s",
                    suggestion="Check that the server is up (`engram status`), or point `engram mcp` at it "
                               "with --url.") from exc
            return self._over_http(url, "the server holding the data dir")
        return await self._offline(lock)

    def _over_http(self, url: str, source: str) -> Engine:
        if "://" not in url:
            url = "http://" + url
        log.info("mcp tools go to the server at %s (%s)", url, source)
        client = AsyncEngramClient(url.rstrip("/"), space=self.opts.space, timeout=self.opts.timeout,
                                   headers=dict(self.opts.headers), ca_file=self.opts.ca_file)
        self._client = ClientEngine(client)
        self.mode = "server"
        return self._client

    async def _offline(self, lock: DataDirLock) -> Engine:
        from ...service import EngramService  # the engine's imports, only when opening the data dir

        try:
            service = await asyncio.to_thread(EngramService, self.opts.settings)
        except BaseException:
            lock.release()
            raise
        self._lock, self._service = lock, service
        service.embedders.warm()
        log.info("mcp opened data dir %s in-process (no server running); %s",
                 lock.data_dir, service.embedders.describe())
        self.mode = "offline"
        return ServiceEngine(service)

    async def close(self) -> None:
        """Close whatever was opened (idempotent)."""
        client, service, lock = self._client, self._service, self._lock
        self._client = self._service = self._lock = self._engine = None
        if client is not None:
            await client.aclose()
        if service is not None:
            await asyncio.to_thread(service.close)  # drains queued writes before closing
        if lock is not None:
            lock.release()  # after the service closed: nothing writes the data dir any more


def _live_server_url(state_file: Path) -> str | None:
    state = read_state(state_file)
    if not state or not isinstance(state.get("pid"), int) or not pid_alive(int(state["pid"])):
        return None
    if state.get("http_url"):
        host = str(state.get("host", ""))
        url = str(state["http_url"])
        if host in ("0.0.0.0", "::"):  # a wildcard listener: reach it on loopback
            scheme = url.split("://", 1)[0] if "://" in url else "http"  # https when it serves TLS
            url = f"{scheme}://{'127.0.0.1' if host == '0.0.0.0' else '[::1]'}:{state['http_port']}"
        return url
    return None


async def _wait_for_server(pid: int | None, state_files: list[Path]) -> str | None:
    deadline = time.monotonic() + SERVER_ANNOUNCE_WAIT
    while time.monotonic() < deadline:
        for path in state_files:
            state = read_state(path)
            if state and state.get("pid") == pid:
                url = _live_server_url(path)
                if url:
                    return url
        if pid is not None and not pid_alive(pid):
            return None
        await asyncio.sleep(0.1)
    return None


async def serve_stdio(opts: StdioOptions) -> None:
    engines = Engines(opts)
    server = build_server(engines, BoundSpace(opts.space), on_error=engines.failed)
    loop = asyncio.get_running_loop()

    async def terminate(signame: str) -> None:
        # The SDK reads stdin in a worker thread that no cancellation can interrupt while the
        # client keeps stdin open, so a signal closes the engine (the offline service drains
        # its queued writes, then the lock is released) and ends the process itself.
        log.info("engram mcp: %s, shutting down", signame)
        try:
            await engines.close()
        except Exception:  # exiting either way; the writes it acknowledged were already durable
            log.exception("engram mcp: closing on %s failed", signame)
        logging.shutdown()
        os._exit(0)

    pending: set[asyncio.Task[None]] = set()

    def on_signal(signame: str) -> None:
        pending.add(loop.create_task(terminate(signame)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    log.info("engram mcp serving on stdio for memory space %r (pid %d)", opts.space, os.getpid())
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        with contextlib.suppress(EngramError):
            await engines.close()
    log.info("engram mcp stopped")

