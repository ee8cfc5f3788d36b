"""The association graph, read-only: ``GET /api/v1/associations`` (a memory's edges, a recall path's edges).

Writing edges is ``POST /api/v1/memories/associate`` (routes_cognition); this route only reads them,
so the console can show a memory's associations and weigh the edges of an activation path.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from ...cognition.associations import MAX_EDGE_QUERY_IDS
from ...core.models import Association
from ...errors import InvalidInput
from ...service import EngramService
from .encode import ok
from .space import SPACE_PARAMETERS, SpaceResolver

MAX_EDGES = 1000


class AssociationList(BaseModel):
    associations: list[Association] = Field(
        ..., description="Edges with the named memories at either end, strongest first.")
    memory_space_id: str = ""


def router(service: EngramService, space: SpaceResolver) -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["cognition"])

    @r.get(
        "/associations",
        response_model=AssociationList,
        summary="Read the associations of memories",
        description="The edges (source, target, strength, kind) that start or end at any of the named "
        f"memories, strongest first. `memory_id` may be repeated (at most {MAX_EDGE_QUERY_IDS}); ids this "
        "space does not have add nothing. Read-only: edges are made by POST /api/v1/memories/associate "
        "and by auto-linking.",
        openapi_extra={"parameters": SPACE_PARAMETERS},
    )
    async def list_associations(
        request: Request,
        memory_id: list[str] = Query(..., description="A memory id (repeat for several).",
                                     min_length=1, max_length=MAX_EDGE_QUERY_IDS),
        limit: int = Query(100, ge=1, le=MAX_EDGES, description=f"At most this many edges (1-{MAX_EDGES})."),
    ) -> Response:
        for mid in memory_id:
            if not mid or len(mid) > 256 or any(ord(c) < 0x20 for c in mid):
                raise InvalidInput(
                    f"memory_id {mid[:80]!r} is not a memory id (1-256 characters, no control characters)",
                    example="GET /api/v1/associations?memory_id=m-1&memory_id=m-2  (X-Memory-Space: agent-7)")
        sid = space(request)
        edges = await service.associations(sid, memory_id, limit)
        return ok(AssociationList(associations=edges, memory_space_id=sid))

    return r
