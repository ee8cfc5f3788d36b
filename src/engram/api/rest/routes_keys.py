"""API key management: ``/api/v1/keys`` (SPEC §10; admin keys only, see access.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ...auth.keys import KeyRecord
from ...service import EngramService
from .access import principal_of
from .encode import ok
from .examples import body_example
from .space import SPACE_ID_SCHEMA, peer_of


class KeyCreate(BaseModel):
    """What ``POST /api/v1/keys`` accepts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="A label for people (who or what uses the key).")
    role: str = Field(..., description="admin, writer or reader.",
                      json_schema_extra={"enum": ["admin", "writer", "reader"]})
    spaces: list[str] | None = Field(
        None, max_length=10_000, description="The spaces the key may use; omitted or null: all spaces.",
        json_schema_extra={"items": SPACE_ID_SCHEMA})
    expires_in_seconds: float | None = Field(None, gt=0, lt=100 * 365 * 86400,
                                             description="Lifetime in seconds; omitted: no expiry.")


class KeyInfo(BaseModel):
    key_id: str
    name: str
    role: str
    spaces: list[str] | None = Field(None, description="null: all spaces.")
    created_at: float = Field(..., description="Unix seconds.")
    expires_at: float | None = Field(None, description="Unix seconds; null: never.")
    revoked_at: float | None = Field(None, description="Unix seconds; null: active.")


class KeyCreated(KeyInfo):
    key: str = Field(..., description="The token (egk_...): shown only in this answer; store it now.")


class KeyList(BaseModel):
    keys: list[KeyInfo]


class KeySelf(BaseModel):
    """What ``GET /api/v1/keys/self`` answers: the calling key, never its token."""

    key_id: str = Field(..., description='The key\'s id; "-" when the server checks no keys.')
    name: str
    role: str = Field(..., description="admin, writer or reader (admin when the server checks no keys).")
    spaces: list[str] | None = Field(None, description="The spaces the key may use; null: all spaces.")
    expires_at: float | None = Field(None, description="Unix seconds; null: never.")
    auth_required: bool = Field(..., description="Whether this server requires API keys.")


def _info(rec: KeyRecord) -> dict[str, Any]:
    return rec.public()


_KEY_ID = Path(..., max_length=64, description="The key's id (key_...).")


def router(service: EngramService) -> APIRouter:
    r = APIRouter(prefix="/api/v1/keys", tags=["keys"])

    @r.post("", response_model=KeyCreated, status_code=201, summary="Create an API key",
            description="Admin only. The answer is the only place the token (`key`) ever appears.",
            openapi_extra=body_example("POST", "/api/v1/keys"))
    async def create_key(item: KeyCreate, request: Request) -> Response:
        rec, token = await asyncio.to_thread(
            service.create_key, item.name, item.role, item.spaces, item.expires_in_seconds,
            actor=principal_of(request.scope), peer=peer_of(request.scope))
        return ok(KeyCreated(**_info(rec), key=token), 201)

    @r.get("", response_model=KeyList, summary="List API keys",
           description="Admin only. Ids, names, roles, spaces and dates; never tokens.")
    async def list_keys() -> Response:
        keys = await asyncio.to_thread(service.list_keys)
        return ok(KeyList(keys=[KeyInfo(**_info(k)) for k in keys]))

    @r.get("/self", response_model=KeySelf, summary="Describe the calling key",
           description="Any valid key: its id, name, role, spaces and expiry, never the token. Clients "
           "(the console) use it to show only what the key may do; the server still checks every call.")
    async def key_self(request: Request) -> Response:
        who = principal_of(request.scope)
        return ok(KeySelf(key_id=who.key_id, name=who.name, role=who.role.value,
                          spaces=None if who.spaces is None else sorted(who.spaces),
                          expires_at=who.expires_at, auth_required=service.auth.required))

    @r.delete("/{key_id}", response_model=KeyInfo, summary="Revoke an API key",
              description="Admin only. Takes effect at once: open streams of the key end with an "
              "`end` event. Revoking a revoked key answers its record again.")
    async def revoke_key(request: Request, key_id: str = _KEY_ID) -> Response:
        rec = await asyncio.to_thread(service.revoke_key, key_id, actor=principal_of(request.scope),
                                      peer=peer_of(request.scope))
        return ok(KeyInfo(**_info(rec)))

    return r
