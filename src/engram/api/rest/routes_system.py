"""Operating routes: liveness, health, Prometheus metrics, and the echo reference route."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Body
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from ...service import EngramService
from .encode import ok
from .examples import body_example
from .space import SPACE_PARAMETERS, SpaceResolver


class Alive(BaseModel):
    status: str = "alive"


class DiskHealth(BaseModel):
    free_bytes: int | None = Field(None, description="Free bytes on the filesystem of the data directory.")
    total_bytes: int | None = None
    min_free_bytes: int = Field(..., description="The disk_min_free_bytes setting.")
    full: bool = Field(..., description="True when free_bytes is below min_free_bytes.")


class OpenFiles(BaseModel):
    nofile: int = Field(..., description="The process's open-file limit now (ulimit -n).")
    nofile_at_start: int
    max_loaded_spaces: int = Field(..., description="Spaces held open at once (derived from the limit "
                                   "when the max_loaded_spaces setting is 0).")
    derived: bool
    open_fds: int | None = Field(None, description="Descriptors the process holds now.")


class Health(BaseModel):
    status: str = Field(..., description="ok, degraded (a loaded space is degraded or unhealthy, or the "
                        "disk is full) or shutting_down.")
    spaces_total: int
    spaces_loaded: int
    unhealthy_spaces: int = Field(..., description="How many loaded spaces are not ok (degraded or "
                                  "unhealthy).")
    degraded_spaces: list[str] = Field(..., description="Spaces with a transient storage error (retriable "
                                       "503s); each is retried with backoff and serves again when it clears.")
    unhealthy_space_ids: list[str] = Field(..., description="Spaces whose storage is damaged.")
    disk: DiskHealth
    open_files: OpenFiles
    shutting_down: bool


class SpaceHealth(BaseModel):
    id: str
    healthy: bool
    state: str = Field("ok", description="ok, degraded (transient storage error, retried) or unhealthy "
                       "(damage).")
    reason: str | None = Field(None, description="Why the space is degraded or unhealthy.")
    memories: int | None = None
    last_lsn: int
    loaded: bool


class SystemHealth(BaseModel):
    status: str
    spaces_total: int
    spaces_loaded: int
    shutting_down: bool
    spaces: list[SpaceHealth] = Field(..., description="Loaded spaces (or only the space asked for).")


def router(service: EngramService, space: SpaceResolver) -> APIRouter:
    r = APIRouter()
    metrics = service.metrics

    @r.get("/health/alive", response_model=Alive, tags=["system"], summary="Liveness")
    async def alive() -> Response:
        return Response(b'{"status":"alive"}', media_type="application/json")

    @r.get(
        "/health",
        response_model=Health,
        tags=["system"],
        summary="Health summary",
        description="503 while shutting down, so load balancers drain this instance.",
        responses={503: {"model": Health, "description": "Shutting down."}},
    )
    async def health() -> Response:
        h = await service.health()
        unhealthy = sum(1 for s in h["spaces"] if not s["healthy"])
        status = "shutting_down" if h["shutting_down"] else h["status"]
        body = Health(
            status=status,
            spaces_total=h["spaces_total"],
            spaces_loaded=h["spaces_loaded"],
            unhealthy_spaces=unhealthy,
            degraded_spaces=h["degraded_spaces"],
            unhealthy_space_ids=h["unhealthy_space_ids"],
            disk=DiskHealth(**{k: v for k, v in h["disk"].items() if k in DiskHealth.model_fields}),
            open_files=OpenFiles(**h["open_files"]),
            shutting_down=h["shutting_down"],
        )
        return ok(body, 503 if h["shutting_down"] else 200)

    @r.get(
        "/api/v1/system/health",
        response_model=SystemHealth,
        tags=["system"],
        summary="Per-space health",
        description="Memories, last LSN, healthy or not and why, for every loaded space; name a space "
        "(header or ?space=) to check just that one (it is loaded if needed).",
        openapi_extra={"parameters": SPACE_PARAMETERS},
    )
    async def system_health(request: Request) -> Response:
        sid = space.optional(request)
        h = await service.health()
        if sid is not None:
            desc = await service.get_space(sid)
            spaces = [
                SpaceHealth(
                    id=desc.id,
                    healthy=desc.healthy,
                    state=_state_of(service, desc.id, desc.healthy),
                    reason=desc.reason,
                    memories=desc.memory_count,
                    last_lsn=desc.last_lsn,
                    loaded=desc.loaded,
                )
            ]
        else:
            spaces = [SpaceHealth(**{k: s[k] for k in SpaceHealth.model_fields}) for s in h["spaces"]]
        healthy = all(s.healthy for s in spaces) and not h["disk"]["full"]
        status = "shutting_down" if h["shutting_down"] else ("ok" if healthy else "degraded")
        return ok(
            SystemHealth(
                status=status,
                spaces_total=h["spaces_total"],
                spaces_loaded=h["spaces_loaded"],
                shutting_down=h["shutting_down"],
                spaces=spaces,
            )
        )

    @r.get(
        "/metrics",
        tags=["system"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus() -> Response:
        metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
        await asyncio.to_thread(_refresh_gauges, service)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @r.post(
        "/api/v1/echo",
        tags=["system"],
        summary="Echo the JSON body",
        description="Returns its JSON object unchanged: the benchmark's ceiling for a trivial JSON route.",
        response_model=dict[str, Any],
        openapi_extra=body_example("POST", "/api/v1/echo"),
    )
    async def echo(body: dict[str, Any] = Body(...)) -> Response:
        return Response(json.dumps(body).encode(), media_type="application/json")

    return r


def _state_of(service: EngramService, space_id: str, healthy: bool) -> str:
    if healthy:
        return "ok"
    space = next((s for s in service.registry.loaded() if s.id == space_id), None)
    return space.health_state if space is not None else "unhealthy"


def _refresh_gauges(service: EngramService) -> None:
    """Memories per loaded space (summed under the capped label), spaces loaded / on disk."""
    metrics = service.metrics
    counts: dict[str, int] = defaultdict(int)
    backlog: dict[str, int] = defaultdict(int)
    loaded = service.registry.loaded()
    for sp in loaded:
        if sp.healthy and not sp.closed:
            label = metrics.space_label(sp.id)
            counts[label] += sp.count()
            backlog[label] += sp.embedding_backlog
    metrics.memories.clear()
    for label, n in counts.items():
        metrics.memories.labels(label).set(n)
    metrics.embedding_backlog.clear()
    for label, n in backlog.items():
        metrics.embedding_backlog.labels(label).set(n)
    metrics.spaces_loaded.set(len(loaded))
    metrics.spaces_total.set(len(service.registry.known_ids()))
