"""Unary RPCs of ``engram.v1.EngramService``: decode, call the service, encode."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import grpc

from ... import __version__
from ...core.models import DeleteByFilter, ReceiptParts
from ...errors import InvalidInput, PermissionDenied
from ...spaces.ids import MemorySpaceId
from . import convert as c
from .auth import current_principal
from .base import Adapter
from .gen import service_pb2 as spb

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class UnaryHandlers(Adapter):
    # -- memories ---------------------------------------------------------------
    async def Remember(self, request: spb.RememberRequest, context: Ctx) -> spb.RememberResponse:
        async def run(space: str) -> spb.RememberResponse:
            # The receipt straight into protobuf from its plain values (as StreamingRemember).
            r = await self.service.remember_parts(space, c.memory_input(request.memory))
            receipt: Any = c.receipt_fields(r) if isinstance(r, ReceiptParts) else c.receipt(r)
            return spb.RememberResponse(receipt=receipt)

        return await self.unary("Remember", request, context, run)

    async def RememberBatch(self, request: spb.RememberBatchRequest,
                            context: Ctx) -> spb.RememberBatchResponse:
        async def run(space: str) -> spb.RememberBatchResponse:
            outcome = await self.service.remember_batch(space, c.batch_items(request.memories))
            return c.batch_response(outcome)

        return await self.unary("RememberBatch", request, context, run)

    async def UpdateMemory(self, request: spb.UpdateMemoryRequest, context: Ctx) -> spb.UpdateMemoryResponse:
        async def run(space: str) -> spb.UpdateMemoryResponse:
            put, patch = c.update_input(request)
            done = await self.service.update_memory(space, request.memory_id, put=put, patch=patch)
            return spb.UpdateMemoryResponse(memory=c.memory(done.memory), created=done.created, lsn=done.lsn,
                                            memory_space_id=space)

        return await self.unary("UpdateMemory", request, context, run)

    async def Experience(self, request: spb.ExperienceRequest, context: Ctx) -> spb.ExperienceResponse:
        async def run(space: str) -> spb.ExperienceResponse:
            receipt = await self.service.experience(space, c.episode_input(request.episode))
            return spb.ExperienceResponse(receipt=c.receipt(receipt))

        return await self.unary("Experience", request, context, run)

    async def Recall(self, request: spb.RecallRequest, context: Ctx) -> spb.RecallResponse:
        async def run(space: str) -> spb.RecallResponse:
            result = await self.service.recall(space, c.cue(request.cue))
            return spb.RecallResponse(result=c.recall_result(result))

        return await self.unary("Recall", request, context, run)

    async def Forget(self, request: spb.ForgetRequest, context: Ctx) -> spb.ForgetResponse:
        async def run(space: str) -> spb.ForgetResponse:
            if not request.memory_id:
                raise InvalidInput(
                    "memory_id: required, the id of the memory to forget", example='memory_id: "m-1"'
                )
            receipt = await self.service.forget(space, request.memory_id, c.forget_mode(request.mode))
            return c.forget_response(receipt)

        return await self.unary("Forget", request, context, run)

    async def GetMemory(self, request: spb.GetMemoryRequest, context: Ctx) -> spb.GetMemoryResponse:
        async def run(space: str) -> spb.GetMemoryResponse:
            if not request.memory_id:
                raise InvalidInput("memory_id: required", example='memory_id: "m-1"')
            mem = await self.service.get_memory(space, request.memory_id, request.include_embedding)
            return spb.GetMemoryResponse(memory=c.memory(mem), memory_space_id=space)

        return await self.unary("GetMemory", request, context, run)

    async def ListMemories(self, request: spb.ListMemoriesRequest, context: Ctx) -> spb.ListMemoriesResponse:
        async def run(space: str) -> spb.ListMemoriesResponse:
            mtype = (
                c.MEMORY_TYPES[request.memory_type].value if request.memory_type in c.MEMORY_TYPES else None
            )
            page = await self.service.list_memories(space, request.page_token or None,
                                                    request.page_size or None, mtype,
                                                    request.include_suppressed, c.filter_in(request))
            return spb.ListMemoriesResponse(memories=[c.memory(x.model_copy(update={"embedding": None}))
                                                      for x in page.memories],
                                            next_page_token=page.next_cursor or "", total=page.total,
                                            memory_space_id=space)

        return await self.unary("ListMemories", request, context, run)

    async def DeleteMemories(self, request: spb.DeleteMemoriesRequest,
                             context: Ctx) -> spb.DeleteMemoriesResponse:
        async def run(space: str) -> spb.DeleteMemoriesResponse:
            item = c.parse(DeleteByFilter, {"filter": c.filter_in(request) or {},
                                            "mode": c.forget_mode(request.mode)}, "")
            receipt = await self.service.delete_memories(space, item)
            return spb.DeleteMemoriesResponse(count=receipt.count, lsn=receipt.lsn, memory_space_id=space)

        return await self.unary("DeleteMemories", request, context, run)

    # -- cognition --------------------------------------------------------------
    async def Recognize(self, request: spb.RecognizeRequest, context: Ctx) -> spb.RecognizeResponse:
        async def run(space: str) -> spb.RecognizeResponse:
            return c.recognize_response(await self.service.recognize(space, c.recognize_input(request)))

        return await self.unary("Recognize", request, context, run)

    async def Reminisce(self, request: spb.ReminisceRequest, context: Ctx) -> spb.ReminisceResponse:
        async def run(space: str) -> spb.ReminisceResponse:
            result = await self.service.reminisce(space, c.reminisce_query(request))
            return spb.ReminisceResponse(
                episodes=[c.memory(e) for e in result.episodes], memory_space_id=space
            )

        return await self.unary("Reminisce", request, context, run)

    async def Consolidate(self, request: spb.ConsolidateRequest, context: Ctx) -> spb.ConsolidateResponse:
        async def run(space: str) -> spb.ConsolidateResponse:
            report = await self.service.consolidate(space, c.consolidate_input(request))
            return spb.ConsolidateResponse(run=c.consolidation_run(report))

        return await self.unary("Consolidate", request, context, run)

    async def Complete(self, request: spb.CompleteRequest, context: Ctx) -> spb.CompleteResponse:
        async def run(space: str) -> spb.CompleteResponse:
            return c.complete_response(await self.service.complete(space, c.complete_input(request)))

        return await self.unary("Complete", request, context, run)

    async def Associate(self, request: spb.AssociateRequest, context: Ctx) -> spb.AssociateResponse:
        async def run(space: str) -> spb.AssociateResponse:
            assoc = await self.service.associate(space, c.associate_input(request))
            return spb.AssociateResponse(association=c.association(assoc), created=assoc.created,
                                         lsn=assoc.lsn, memory_space_id=space)

        return await self.unary("Associate", request, context, run)

    async def Introspect(self, request: spb.IntrospectRequest, context: Ctx) -> spb.IntrospectResponse:
        async def run(space: str) -> spb.IntrospectResponse:
            stats = await self.service.introspect(space)
            return c.introspect_response(stats, self.settings.durability, __version__)

        return await self.unary("Introspect", request, context, run)

    # -- space administration -----------------------------------------------------
    async def CreateSpace(self, request: spb.CreateSpaceRequest, context: Ctx) -> spb.CreateSpaceResponse:
        async def run(space: str | None) -> spb.CreateSpaceResponse:
            assert space is not None
            dim = request.dimension if request.HasField("dimension") else None
            ttl = request.default_ttl_seconds if request.HasField("default_ttl_seconds") else None
            desc, created = await self.service.create_space(space, dim, c.embedder_choice(request),
                                                            actor=current_principal(),
                                                            peer=context.peer() or "unknown",
                                                            default_ttl_seconds=ttl)
            return spb.CreateSpaceResponse(space=c.space_descriptor(desc), created=created)

        return await self.admin("CreateSpace", request, context, run)

    async def GetSpace(self, request: spb.GetSpaceRequest, context: Ctx) -> spb.GetSpaceResponse:
        async def run(space: str | None) -> spb.GetSpaceResponse:
            assert space is not None
            return spb.GetSpaceResponse(space=c.space_descriptor(await self.service.get_space(space)))

        return await self.admin("GetSpace", request, context, run)

    async def DeleteSpace(self, request: spb.DeleteSpaceRequest, context: Ctx) -> spb.DeleteSpaceResponse:
        async def run(space: str | None) -> spb.DeleteSpaceResponse:
            assert space is not None
            d = await self.service.delete_space(space, actor=current_principal(),
                                                peer=context.peer() or "unknown")
            return spb.DeleteSpaceResponse(id=d.id, deleted=d.deleted, memories_removed=d.memories_removed,
                                           bytes_removed=d.bytes_removed, files_removed=d.files_removed)

        return await self.admin("DeleteSpace", request, context, run)

    async def ReembedSpace(self, request: spb.ReembedSpaceRequest, context: Ctx) -> spb.ReembedSpaceResponse:
        async def run(space: str | None) -> spb.ReembedSpaceResponse:
            assert space is not None
            status = await self.service.reembed(space, c.embedder_choice(request))
            return spb.ReembedSpaceResponse(status=c.reembed_status(status))

        return await self.admin("ReembedSpace", request, context, run)

    async def GetReembedStatus(self, request: spb.GetReembedStatusRequest,
                               context: Ctx) -> spb.GetReembedStatusResponse:
        async def run(space: str | None) -> spb.GetReembedStatusResponse:
            assert space is not None
            status = await self.service.reembed_status(space)
            return spb.GetReembedStatusResponse(status=c.reembed_status(status))

        return await self.admin("GetReembedStatus", request, context, run)

    async def ListSpaces(self, request: spb.ListSpacesRequest, context: Ctx) -> spb.ListSpacesResponse:
        async def run(_: str | None) -> spb.ListSpacesResponse:
            # a key bound to some spaces lists only those (SPEC §10)
            page = await self.service.list_spaces(request.page_token or None, request.page_size or None,
                                                  principal=current_principal())
            return spb.ListSpacesResponse(spaces=[c.space_descriptor(d) for d in page.spaces],
                                          next_page_token=page.next_cursor or "")

        return await self.admin("ListSpaces", request, context, run, needs_space=False)

    # -- API keys (admin keys only, see auth.ACTIONS) --------------------------------------
    async def CreateKey(self, request: spb.CreateKeyRequest, context: Ctx) -> spb.CreateKeyResponse:
        async def run(_: str | None) -> spb.CreateKeyResponse:
            spaces = [MemorySpaceId(s) for s in request.spaces] or None
            principal = current_principal()
            if principal.spaces is not None and (spaces is None or not set(spaces) <= principal.spaces):
                raise PermissionDenied("an admin key of some spaces can only create keys for those spaces")
            record, token = await asyncio.to_thread(
                self.service.create_key, request.name, request.role, spaces,
                request.expires_in_seconds or None, actor=principal, peer=context.peer() or "unknown")
            return spb.CreateKeyResponse(key=c.api_key(record), token=token)

        return await self.admin("CreateKey", request, context, run, needs_space=False)

    async def ListKeys(self, request: spb.ListKeysRequest, context: Ctx) -> spb.ListKeysResponse:
        async def run(_: str | None) -> spb.ListKeysResponse:
            records = await asyncio.to_thread(self.service.list_keys)
            return spb.ListKeysResponse(keys=[c.api_key(r) for r in records])

        return await self.admin("ListKeys", request, context, run, needs_space=False)

    async def RevokeKey(self, request: spb.RevokeKeyRequest, context: Ctx) -> spb.RevokeKeyResponse:
        async def run(_: str | None) -> spb.RevokeKeyResponse:
            record = await asyncio.to_thread(self.service.revoke_key, request.key_id,
                                             actor=current_principal(), peer=context.peer() or "unknown")
            return spb.RevokeKeyResponse(key=c.api_key(record))

        return await self.admin("RevokeKey", request, context, run, needs_space=False)

    # -- transport ceiling ---------------------------------------------------------
    async def Echo(self, request: spb.EchoRequest, context: Ctx) -> spb.EchoResponse:
        return spb.EchoResponse(payload=request.payload)

