"""Space administration: ``/api/v1/spaces``."""

from __future__ import annotations

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ...core.models import EmbedderChoice, ReembedStatus, SpaceDeletion, SpaceDescriptor, SpacePage
from ...service import EngramService
from ...spaces.ids import is_valid
from .access import principal_of
from .encode import ok
from .examples import body_example
from .space import SCOPE_SPACE, SPACE_ID_SCHEMA, peer_of


class SpaceCreate(BaseModel):
    """What ``POST /api/v1/spaces`` accepts."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        ...,
        description="3-64 characters of [a-z0-9_-], starting with a letter or digit.",
        json_schema_extra={"pattern": SPACE_ID_SCHEMA["pattern"], "minLength": 3, "maxLength": 64},
    )
    dimension: int | None = Field(
        None, ge=1, description="Embedding dimension; if omitted it is set by the first stored embedding."
    )
    embedder: EmbedderChoice | None = Field(
        None,
        description="The space's embedder (SPEC §9), kept until the space is re-embedded (POST "
        "/api/v1/spaces/{id}/reembed): provider local | openai | hash | "
        "none, and optionally a model. Omitted: the server's `embedder` setting (or none when `dimension` "
        "differs from that embedder's dimension).",
    )
    default_ttl_seconds: float | None = Field(
        None, gt=0, le=1e10,
        description="Expiry (seconds) of memories stored in this space without ttl_seconds or expires_at; "
        "omitted: they never expire.",
    )


SPACE_ID_PATH = Path(
    ...,
    description="The memory space id.",
    json_schema_extra={
        k: v for k, v in SPACE_ID_SCHEMA.items() if k in ("pattern", "minLength", "maxLength", "example")
    },
)


def router(service: EngramService) -> APIRouter:
    r = APIRouter(prefix="/api/v1/spaces", tags=["spaces"])

    def label(request: Request, space_id: str) -> None:
        if is_valid(space_id):
            request.scope[SCOPE_SPACE] = space_id

    @r.get(
        "",
        response_model=SpacePage,
        summary="List memory spaces",
        description="All spaces sorted by id, paginated with `cursor` (the previous page's `next_cursor`).",
    )
    async def list_spaces(
        request: Request,
        cursor: str | None = Query(None, max_length=64, description="next_cursor of the previous page"),
        limit: int | None = Query(None, description="Page size: 1 to max_page_size (default 100)."),
    ) -> Response:
        # A key bound to some spaces sees only those (SPEC §10); others are never named.
        return ok(await service.list_spaces(cursor, limit, principal=principal_of(request.scope)))

    @r.post(
        "",
        response_model=SpaceDescriptor,
        status_code=201,
        summary="Create a memory space",
        description="Idempotent: 201 with the new descriptor, or 200 with the existing one.",
        responses={200: {"model": SpaceDescriptor, "description": "The space already existed."}},
        openapi_extra=body_example("POST", "/api/v1/spaces"),
    )
    async def create_space(item: SpaceCreate, request: Request) -> Response:
        who, peer = principal_of(request.scope), peer_of(request.scope)
        desc, created = await service.create_space(item.id, item.dimension, item.embedder,
                                                   actor=who, peer=peer,
                                                   default_ttl_seconds=item.default_ttl_seconds)
        label(request, desc.id)
        return ok(desc, 201 if created else 200)

    @r.get(
        "/{space_id}",
        response_model=SpaceDescriptor,
        summary="Describe a memory space",
        description="Descriptor plus statistics (loads the space).",
    )
    async def get_space(request: Request, space_id: str = SPACE_ID_PATH) -> Response:
        desc = await service.get_space(space_id)
        label(request, space_id)
        return ok(desc)

    @r.post(
        "/{space_id}/reembed",
        response_model=ReembedStatus,
        status_code=202,
        summary="Re-embed a memory space with another embedder",
        description="Starts re-embedding every memory of the space with `embedder` (omitted: the server's "
        "`embedder` setting) in the background and answers at once with its progress. The space keeps "
        "its current embedder until every memory has the new vector, then switches embedder, dimension "
        "and vectors in one transaction. Resumable: it continues after a restart, and asking again for "
        "the same embedder just reports progress; another embedder while one runs is 400.",
        openapi_extra=body_example("POST", "/api/v1/spaces/{space_id}/reembed"),
    )
    async def reembed_space(request: Request, space_id: str = SPACE_ID_PATH,
                            embedder: EmbedderChoice | None = Body(None)) -> Response:
        label(request, space_id)
        return ok(await service.reembed(space_id, embedder), 202)

    @r.get(
        "/{space_id}/reembed",
        response_model=ReembedStatus,
        summary="Progress of a re-embedding",
        description="`state` is `running` (with `target`, `done` of `total`) until the switch, then `idle`; "
        "`embedder` is what the space uses now.",
    )
    async def reembed_status(request: Request, space_id: str = SPACE_ID_PATH) -> Response:
        label(request, space_id)
        return ok(await service.reembed_status(space_id))

    @r.delete(
        "/{space_id}",
        response_model=SpaceDeletion,
        summary="Delete a memory space",
        description="Erases the space and all its data, durably; returns what was removed.",
    )
    async def delete_space(request: Request, space_id: str = SPACE_ID_PATH) -> Response:
        return ok(await service.delete_space(space_id, actor=principal_of(request.scope),
                                             peer=peer_of(request.scope)))

    return r
