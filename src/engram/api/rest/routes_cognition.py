"""Cognition: recognize, associate, reminisce, consolidate, beliefs, complete, introspect."""

from __future__ import annotations

from fastapi import APIRouter, Body, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from ...core.models import (
    AssociateInput,
    Association,
    Belief,
    BeliefPage,
    CompleteInput,
    Completion,
    ConsolidateInput,
    ConsolidationReport,
    Instant,
    Recognition,
    RecognizeInput,
    Reminiscence,
    ReminisceQuery,
    SpaceStats,
)
from ...service import EngramService
from .encode import from_query, ok
from .examples import body_example
from .space import SPACE_PARAMETERS, SpaceResolver

SCOPED = {"parameters": SPACE_PARAMETERS}


def _extra(method: str, path: str) -> dict:  # type: ignore[type-arg]
    return {"parameters": SPACE_PARAMETERS, **body_example(method, path)}


def router(service: EngramService, space: SpaceResolver) -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["cognition"])

    @r.post(
        "/memories/recognize",
        response_model=Recognition,
        summary="Is this already known?",
        description="Familiarity of content and/or an embedding against this space, with confidence.",
        openapi_extra=_extra("POST", "/api/v1/memories/recognize"),
    )
    async def recognize(item: RecognizeInput, request: Request) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.recognize(sid, item))

    @r.post(
        "/memories/associate",
        response_model=Association,
        summary="Create or strengthen an association",
        description="A weighted edge between two memories of this space.",
        openapi_extra=_extra("POST", "/api/v1/memories/associate"),
    )
    async def associate(item: AssociateInput, request: Request) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.associate(sid, item))

    @r.get(
        "/episodes/reminisce",
        response_model=Reminiscence,
        tags=["episodes"],
        summary="Episodes about a topic / in a time window",
        description="In time order. Use POST to reminisce by embedding.",
        openapi_extra=SCOPED,
    )
    async def reminisce_get(
        request: Request,
        topic: str | None = Query(None, description="What the episodes are about."),
        time_start: Instant | None = Query(None, description="ISO-8601, or Unix seconds."),
        time_end: Instant | None = Query(None, description="ISO-8601, or Unix seconds."),
        limit: int | None = Query(None, description="1-1000, default 50."),
    ) -> Response:
        query = from_query(ReminisceQuery, topic=topic, time_start=time_start, time_end=time_end, limit=limit)
        sid = space(request)
        return ok(await service.reminisce(sid, query))

    @r.post(
        "/episodes/reminisce",
        response_model=Reminiscence,
        tags=["episodes"],
        summary="Episodes about a topic / embedding / time window",
        openapi_extra=_extra("POST", "/api/v1/episodes/reminisce"),
    )
    async def reminisce_post(query: ReminisceQuery, request: Request) -> Response:
        sid = space(request, query.memory_space_id)
        return ok(await service.reminisce(sid, query))

    @r.post(
        "/consolidate",
        response_model=ConsolidationReport,
        summary="Run consolidation now",
        description="Clusters similar episodes into beliefs citing their source episodes (deterministic).",
        openapi_extra=_extra("POST", "/api/v1/consolidate"),
    )
    async def consolidate(request: Request, item: ConsolidateInput | None = Body(None)) -> Response:
        item = item or ConsolidateInput()
        sid = space(request, item.memory_space_id)
        return ok(await service.consolidate(sid, item))

    @r.get(
        "/consolidations",
        response_model=BeliefPage,
        summary="List beliefs",
        description="Beliefs produced by consolidation, with citations to their source episodes.",
        openapi_extra=SCOPED,
    )
    async def list_beliefs(
        request: Request,
        cursor: str | None = Query(None, max_length=256, description="next_cursor of the previous page"),
        limit: int | None = Query(None, description="Page size: 1 to max_page_size (default 50)."),
    ) -> Response:
        sid = space(request)
        return ok(await service.list_beliefs(sid, cursor, limit))

    @r.get(
        "/consolidations/{belief_id}", response_model=Belief, summary="Get one belief", openapi_extra=SCOPED
    )
    async def get_belief(
        request: Request, belief_id: str = Path(..., min_length=1, max_length=256)
    ) -> Response:
        sid = space(request)
        return ok(await service.get_belief(sid, belief_id))

    @r.post(
        "/complete",
        response_model=Completion,
        summary="Pattern completion",
        description="Reconstruct an episode from partial fields / a partial embedding, "
        "with per-field source attribution.",
        openapi_extra=_extra("POST", "/api/v1/complete"),
    )
    async def complete(item: CompleteInput, request: Request) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.complete(sid, item))

    @r.get(
        "/system/introspect",
        response_model=SpaceStats,
        tags=["system"],
        summary="Statistics of one space",
        openapi_extra=SCOPED,
    )
    async def introspect(request: Request) -> Response:
        sid = space(request)
        return ok(await service.introspect(sid))

    return r
