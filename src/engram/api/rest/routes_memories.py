"""Memories and episodes: store, recall, list, get, forget."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ...core.models import (
    FILTER_DESCRIPTION,
    BatchReceipt,
    Cue,
    DeleteByFilter,
    DeleteReceipt,
    EpisodeInput,
    ForgetMode,
    ForgetReceipt,
    Instant,
    Memory,
    MemoryBatchInput,
    MemoryInput,
    MemoryPage,
    MemoryPatch,
    MemoryType,
    RankMode,
    RecallMode,
    RecallResult,
    StoreReceipt,
    UpdateReceipt,
    validate_memory_input,
    vectors_from_base64,
)
from ...errors import EngramError, InvalidInput
from ...service import EngramService
from .encode import from_body, from_query, ok
from .errors import invalid_input
from .examples import body_example
from .space import SPACE_PARAMETERS, SpaceResolver

MEMORY_ID = Path(..., description="The memory id (unique within its space).", min_length=1, max_length=256)


def _extra(method: str, path: str) -> dict:  # type: ignore[type-arg]
    return {"parameters": SPACE_PARAMETERS, **body_example(method, path)}


def _raw_body(model: type[BaseModel], extra: dict) -> dict:  # type: ignore[type-arg]
    """``openapi_extra`` of a route that reads its body itself (encode.from_body): the body
    documented as ``model``, as a FastAPI body parameter would be (openapi.build adds the schema)."""
    body = extra["requestBody"]
    body["required"] = True
    body["content"]["application/json"]["schema"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    return extra


def _batch_item(index: int, raw: Any, vector: Any) -> MemoryInput | EngramError:
    """One batch item parsed alone: its input, or the error that fails it (and only it).
    ``vector``: its base64 embedding, decoded with the batch's others (or None)."""
    if not isinstance(raw, dict):
        return InvalidInput(f"memories[{index}] must be a JSON object (a MemoryInput), "
                            f"got {type(raw).__name__}", example='{"content": "the text"}')
    try:
        return validate_memory_input(raw, vector=vector)
    except ValidationError as exc:
        return invalid_input(exc, f"memories[{index}]")


def _batch_items(raws: list[Any]) -> list[MemoryInput | EngramError]:
    """Every item of a batch parsed alone; base64 vectors decoded and checked all at once."""
    vectors = vectors_from_base64([r.get("embedding") if isinstance(r, dict) else None for r in raws])
    return [_batch_item(i, raw, vec) for i, (raw, vec) in enumerate(zip(raws, vectors, strict=True))]


def router(service: EngramService, space: SpaceResolver) -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["memories"])

    @r.post(
        "/memories/remember",
        response_model=StoreReceipt,
        status_code=201,
        summary="Store a memory",
        description="Returns once the memory is durable (fsync, group-committed), with its LSN.",
        openapi_extra=_extra("POST", "/api/v1/memories/remember"),
    )
    async def remember(item: MemoryInput, request: Request) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.remember(sid, item), 201)

    @r.post(
        "/episodes/remember",
        response_model=StoreReceipt,
        status_code=201,
        tags=["episodes"],
        summary="Store an episode",
        description="A memory with episodic context (`when` is required).",
        openapi_extra=_extra("POST", "/api/v1/episodes/remember"),
    )
    async def remember_episode(item: EpisodeInput, request: Request) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.experience(sid, item), 201)

    @r.post(
        "/memories/batch",
        response_model=BatchReceipt,
        status_code=201,
        summary="Store up to 1,000 memories in one durable commit",
        description=(
            "Each item is a MemoryInput (as `POST /api/v1/memories/remember`). Every valid item is "
            "written in ONE transaction with one fsync; an invalid item (validation, duplicate id: "
            "409 `MEMORY_EXISTS`, wrong dimension) fails alone and the others are stored. Answer: "
            "`results` in request order, each `{index, memory_id, lsn}` or `{index, error}` (the "
            "error envelope's fields), and `stored`. Status 201 when at least one item was stored, "
            "200 when none was (every item failed; see each error). More than 1,000 items: 400. "
            "The body limit is `max_batch_body_bytes` (64 MiB by default), not `max_body_bytes`."
        ),
        responses={200: {"model": BatchReceipt, "description": "No item was stored: every item failed."}},
        openapi_extra=_extra("POST", "/api/v1/memories/batch"),
    )
    async def remember_batch(body: MemoryBatchInput, request: Request) -> Response:
        sid = space(request, body.memory_space_id)
        items = _batch_items(body.memories)
        outcome = await service.remember_batch(sid, items, receipts=False)
        # json.dumps, not pydantic: an item's error echoes what it received, and that may hold a
        # lone surrogate ("\ud800"), which JSON can escape but pydantic refuses to serialise.
        body_out = json.dumps(outcome.receipt_dict(), default=str)
        return Response(body_out, status_code=201 if outcome.stored else 200, media_type="application/json")

    @r.get(
        "/memories/recall",
        response_model=RecallResult,
        summary="Recall by cue (query string)",
        description="Text/context cue in the query string; use POST for embeddings.",
        openapi_extra={"parameters": SPACE_PARAMETERS},
    )
    async def recall_get(
        request: Request,
        query: str | None = Query(None, description="Full-text query."),
        threshold: float | None = Query(None, description="Minimum score in [0, 1]."),
        max_results: int | None = Query(None, description="1-1000, default 10."),
        mode: RecallMode | None = Query(None, description="similarity (default), spreading or hybrid."),
        rank: RankMode | None = Query(
            None,
            description='"cognitive" (default): fused, activation- and recency-aware order; '
            '"similarity": pure cosine order (score = cosine similarity).',
        ),
        wait_for_embeddings: bool | None = Query(
            None, description="Wait (at most embedding_wait_seconds) until earlier writes are embedded."
        ),
        trace_activation: bool | None = Query(
            None, description="Return the activation path of each result."
        ),
        max_hops: int | None = Query(None, description="Spreading hops, 0-10."),
        location: str | None = Query(None, description="Episodes at this location."),
        participants: list[str] | None = Query(
            None, description="Episodes with these participants (repeat)."
        ),
        tags: list[str] | None = Query(None, description="Memories with these tags (repeat)."),
        memory_type: MemoryType | None = Query(None),
        time_start: Instant | None = Query(None, description="ISO-8601, or Unix seconds."),
        time_end: Instant | None = Query(None, description="ISO-8601, or Unix seconds."),
        filter: str | None = Query(None, description=FILTER_DESCRIPTION + " JSON-encoded, e.g. "
                                   'filter={"topic":"billing"} (URL-encoded).'),
    ) -> Response:
        cue = from_query(
            Cue,
            query=query,
            threshold=threshold,
            max_results=max_results,
            mode=mode,
            rank=rank,
            wait_for_embeddings=wait_for_embeddings,
            trace_activation=trace_activation,
            max_hops=max_hops,
            location=location,
            participants=participants,
            tags=tags,
            memory_type=memory_type,
            time_start=time_start,
            time_end=time_end,
            filter=filter,
        )
        sid = space(request)
        return ok(await service.recall(sid, cue))

    @r.post(
        "/memories/recall",
        response_model=RecallResult,
        summary="Recall by cue",
        description="Embedding, text and context cues; results bucketed vivid / associated / reconstructed.",
        openapi_extra=_raw_body(Cue, _extra("POST", "/api/v1/memories/recall")),
    )
    async def recall_post(request: Request) -> Response:
        cue = await from_body(request, Cue)  # one pydantic-core pass; FastAPI's errors on bad input
        sid = space(request, cue.memory_space_id)
        return ok(await service.recall(sid, cue))

    @r.get(
        "/memories",
        response_model=MemoryPage,
        summary="List memories",
        description="In storage order, paginated with `cursor`; suppressed memories only when asked.",
        openapi_extra={"parameters": SPACE_PARAMETERS},
    )
    async def list_memories(
        request: Request,
        cursor: str | None = Query(None, max_length=32, description="next_cursor of the previous page"),
        limit: int | None = Query(None, description="Page size: 1 to max_page_size (default 50)."),
        memory_type: MemoryType | None = Query(None),
        include_suppressed: bool = Query(False),
        filter: str | None = Query(None, description=FILTER_DESCRIPTION + " JSON-encoded, e.g. "
                                   'filter={"topic":"billing"} (URL-encoded).'),
    ) -> Response:
        sid = space(request)
        mtype = memory_type.value if memory_type is not None else None
        return ok(await service.list_memories(sid, cursor, limit, mtype, include_suppressed, filter))

    @r.post(
        "/memories/delete",
        response_model=DeleteReceipt,
        summary="Forget every memory matching a metadata filter",
        description="One durable write: `count` memories forgotten at `lsn` (`mode` suppress or delete, as "
        "DELETE /memories/{id}); each gets a `forgotten` event. An empty filter is refused.",
        openapi_extra=_extra("POST", "/api/v1/memories/delete"),
    )
    async def delete_memories(item: DeleteByFilter, request: Request) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.delete_memories(sid, item))

    @r.get(
        "/memories/{memory_id:path}",
        response_model=Memory,
        summary="Get one memory",
        description="404 MEMORY_NOT_FOUND if this space has no memory with that id.",
        openapi_extra={"parameters": SPACE_PARAMETERS},
    )
    async def get_memory(
        request: Request,
        memory_id: str = MEMORY_ID,
        include_embedding: bool = Query(True, description="Include the embedding vector."),
    ) -> Response:
        sid = space(request)
        return ok(await service.get_memory(sid, memory_id, include_embedding))

    @r.put(
        "/memories/{memory_id:path}",
        response_model=UpdateReceipt,
        status_code=200,
        summary="Create or replace a memory",
        description=(
            "Replaces content, embedding, confidence, decay_rate, tags, memory_type and metadata "
            "(fields not given take their defaults), or creates the memory (201) if this space has "
            "none with this id (200 when replaced). The row is rewritten in place: associations, "
            "created_at, access statistics and an episode's context are kept; the LSN advances and "
            "an `updated` event is published. A suppressed memory becomes live again. New text "
            "without an embedding drops the old vector at once; with a server embedder the new one "
            "follows in the background. The answer is the memory as stored (without its embedding)."
        ),
        responses={201: {"model": UpdateReceipt, "description": "The memory did not exist and was created."}},
        openapi_extra=_extra("PUT", "/api/v1/memories/{memory_id:path}"),
    )
    async def put_memory(item: MemoryInput, request: Request, memory_id: str = MEMORY_ID) -> Response:
        sid = space(request, item.memory_space_id)
        done = await service.update_memory(sid, memory_id, put=item)
        return ok(done, 201 if done.created else 200)

    @r.patch(
        "/memories/{memory_id:path}",
        response_model=UpdateReceipt,
        summary="Change some fields of a memory",
        description=(
            "Only the fields given change (content, embedding, confidence, decay_rate, tags, "
            "memory_type, metadata; tags and metadata are replaced whole). 404 `MEMORY_NOT_FOUND` "
            "if the memory does not exist. Associations are kept, the LSN advances, an `updated` "
            "event is published; a suppressed memory stays suppressed. New text without an "
            "embedding, in a space with a server embedder, drops the old vector at once and queues "
            "the new one; a space without one keeps the client's vector."
        ),
        openapi_extra=_extra("PATCH", "/api/v1/memories/{memory_id:path}"),
    )
    async def patch_memory(item: MemoryPatch, request: Request, memory_id: str = MEMORY_ID) -> Response:
        sid = space(request, item.memory_space_id)
        return ok(await service.update_memory(sid, memory_id, patch=item))

    @r.delete(
        "/memories/{memory_id:path}",
        response_model=ForgetReceipt,
        summary="Forget a memory",
        description="`mode=suppress` (reversible, excluded from recall) or `mode=delete` (erased). Durable.",
        openapi_extra={"parameters": SPACE_PARAMETERS},
    )
    async def forget(
        request: Request,
        memory_id: str = MEMORY_ID,
        mode: ForgetMode = Query(ForgetMode.suppress),
    ) -> Response:
        sid = space(request)
        return ok(await service.forget(sid, memory_id, mode))

    return r
