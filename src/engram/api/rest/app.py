"""The REST application: ``create_app(service) -> FastAPI``.

Every route is a thin adapter: decode (FastAPI + the core's pydantic input
models), resolve the space (:mod:`.space`), call one ``EngramService`` method,
encode (:mod:`.encode`), and let errors leave through the one table in
:mod:`.errors`. All state comes from the ``service`` passed in, so two apps
can live in one process.

    app.py              this factory
    middleware.py       Host/Origin, OPTIONS, body limit, metrics, fallback headers, last-resort 500
    hosts.py            the Host allow-list and Origin check (DNS rebinding, cross-site writes)
    methods.py          every method a path takes (405 and OPTIONS answers)
    connection.py       HTTP connection limits below ASGI (head size, timeouts, connection cap)
    errors.py           the error envelope and every translation into it
    space.py            which space a request targets (SPEC §2 sources)
    encode.py           results -> responses, query strings -> input models
    examples.py         a correct request per route (errors and OpenAPI)
    openapi.py          error responses and headers in /openapi.json
    query.py            unknown query parameters are a 400, like unknown body fields
    sse.py              server-sent events for one subscription
    access.py           who may call which route: the one table (SPEC §10)
    routes_*.py         the routes, by area
    routes_console.py   /console (the web console, console/*) and /docs (Swagger UI), from package files
    ../mcp/endpoint.py  /mcp: mounted here, loads ../mcp/http.py (the MCP SDK) on first use
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from ... import __version__
from ...service import EngramService
from ..mcp import endpoint as mcp_endpoint
from . import (
    access,
    errors,
    openapi,
    query,
    routes_backup,
    routes_cognition,
    routes_console,
    routes_graph,
    routes_keys,
    routes_memories,
    routes_spaces,
    routes_streams,
    routes_system,
)
from .hosts import HostPolicy
from .middleware import EngramMiddleware
from .space import SpaceResolver

DESCRIPTION = """\
A cognitive memory server for AI agents. Every data-plane request targets one **memory space**,
named by the `X-Memory-Space` header (aliases `X-Engram-Memory-Space`, `X-Memory-Space-Id`),
`?space=`, or the body field `memory_space_id`. Every error has one shape:
`{"error": {"code", "message", "suggestion", "example"}}`.
"""

TAGS = [
    {"name": "spaces", "description": "Create, list, inspect and delete memory spaces."},
    {"name": "memories", "description": "Store, recall, list, get and forget memories."},
    {"name": "episodes", "description": "Episodic memories and reminiscence."},
    {"name": "cognition", "description": "Recognition, association, consolidation and completion."},
    {"name": "streams", "description": "Server-sent event streams of one space."},
    {"name": "system", "description": "Health, metrics and the echo reference route."},
]


def create_app(service: EngramService) -> FastAPI:
    # FastAPI's native OpenTelemetry layer stays off: Engram exports its own Prometheus metrics.
    app = FastAPI(
        title="Engram", version=__version__, description=DESCRIPTION, openapi_tags=TAGS, redoc_url=None,
        docs_url=None,  # /docs is served from files in the package (routes_console), not from a CDN
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        dependencies=[Depends(query.reject_unknown_query)],  # on every route (api/rest/query.py)
    )
    app.state.service = service
    space = SpaceResolver(service)
    # Starlette matches routes in order: the hot data-plane routes first.
    app.include_router(routes_memories.router(service, space))
    app.include_router(routes_cognition.router(service, space))
    app.include_router(routes_streams.router(service, space))
    app.include_router(routes_spaces.router(service))
    app.include_router(routes_backup.router(service))
    app.include_router(routes_keys.router(service))
    app.include_router(routes_system.router(service, space))
    app.include_router(routes_graph.router(service, space))
    app.include_router(routes_console.router(service))  # /console and /docs, offline (no CDN)
    mcp_endpoint.mount(app, service)  # MCP at /mcp (SPEC §12); the SDK loads on the first POST
    access.check_table(app.routes)  # every route classified for auth (api/rest/access.py), or no app
    errors.install(app)
    hosts = HostPolicy(service.settings.allowed_hosts, service.settings.host)
    app.state.host_policy = hosts
    app.add_middleware(EngramMiddleware, service=service, hosts=hosts, routes=app.router.routes)
    openapi.install(app)
    return app
