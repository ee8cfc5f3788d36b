"""The ``/mcp`` route of the REST application, which loads the MCP SDK on first use.

Importing the SDK (``mcp``, ``mcp_types``: thousands of pydantic models) costs ~1.4 s
of CPU, about half of a server's start, and most servers never see an MCP call (every
test server, every REST-only or gRPC-only deployment). So the REST app mounts this
small endpoint at start-up, and :mod:`.http` (the SDK, the tool table, the session
manager) is imported on the first POST to ``/mcp``:

- the app's lifespan starts a *keeper* task, which waits until ``/mcp`` is wanted;
- the first POST wakes it and waits; the keeper imports :mod:`.http` in a worker
  thread (the event loop keeps serving REST meanwhile), builds the session manager
  and runs it (``manager.run()``, the SDK's task group for requests) until the app
  shuts down; later POSTs go straight to it;
- GET and DELETE never load anything: :class:`PostOnly` answers them 405.

Authentication is unchanged: the REST middleware in front of every route (``/mcp``
included, ``api/rest/access.py``) has checked the request's key before this endpoint
sees it, and :class:`.http.RequestSpace` checks each tool call's role and space.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ...service import EngramService

PATH = "/mcp"
HTTP_MODULE = "engram.api.mcp.http"  # what the first POST loads (the SDK with it)

log = logging.getLogger("engram.mcp")


class PostOnly:
    """Only POST reaches the MCP app: GET (the optional server-to-client SSE stream) and DELETE
    (session end) are 405, as the Streamable HTTP spec allows a server without those. In stateless
    mode the SDK would otherwise hold a GET open forever, idle: a connection per prober, and one more
    thing a graceful shutdown waits for."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "POST":
            await self.app(scope, receive, send)
            return
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
            "code": -32600, "message": f"{scope['method']} is not supported on {PATH}: send JSON-RPC "
                                       "messages with POST (this server keeps no stream or session)"}})
        await send({"type": "http.response.start", "status": 405,
                    "headers": [(b"content-type", b"application/json"), (b"allow", b"POST")]})
        await send({"type": "http.response.body", "body": body.encode()})


@dataclass
class _Run:
    """One lifespan of the app: the keeper's events and, once loaded, the SDK's ASGI app."""

    wanted: anyio.Event = field(default_factory=anyio.Event)
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    app: ASGIApp | None = None
    error: BaseException | None = None


class LazyMCP:
    """The ASGI endpoint at ``/mcp``; :mod:`.http` is loaded by the keeper on the first request."""

    def __init__(self, service: EngramService) -> None:
        self.service = service
        self.run: _Run | None = None  # set while the app's lifespan runs

    @property
    def loaded(self) -> bool:
        return self.run is not None and self.run.app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = self.run
        if run is None:
            raise RuntimeError(f"{PATH} is served only while the application's lifespan runs")
        run.wanted.set()
        await run.ready.wait()
        if run.app is None:
            raise RuntimeError(f"the MCP endpoint could not start: {run.error!r}") from run.error
        await run.app(scope, receive, send)

    async def keep(self, run: _Run) -> None:
        """Wait until ``/mcp`` is wanted, then load and run the SDK's session manager until ``stop``."""
        await run.wanted.wait()
        try:
            http = await anyio.to_thread.run_sync(importlib.import_module, HTTP_MODULE)
            manager = http.session_manager(self.service)
            async with manager.run():
                run.app = http.asgi_app(manager)
                run.ready.set()
                log.info("MCP endpoint loaded", extra={"path": PATH})
                await run.stop.wait()
        except Exception as exc:  # every waiting and later request fails with it (a 500), loudly
            run.error = exc
            log.exception("the MCP endpoint could not start")
        finally:
            run.ready.set()

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        run = _Run()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.keep, run)
            self.run = run
            try:
                yield
            finally:
                self.run = None
                if not run.wanted.is_set():
                    tg.cancel_scope.cancel()  # never used: nothing was loaded, nothing to stop
                run.stop.set()  # a loaded manager stops after the app's own lifespan has ended


def mount(app: FastAPI, service: EngramService) -> LazyMCP:
    """Serve MCP at ``/mcp`` on ``app``; the SDK loads on the first POST, inside the app's lifespan."""
    endpoint = LazyMCP(service)
    app.router.routes.append(Route(PATH, endpoint=PostOnly(endpoint), include_in_schema=False))
    app.state.mcp = endpoint
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with endpoint.lifespan(), previous(a) as state:
            yield state

    app.router.lifespan_context = lifespan
    return endpoint
