"""What the MCP tools call: one small protocol, two engines.

:class:`ServiceEngine` calls :class:`~engram.service.EngramService` in-process
(``/mcp`` on the REST server, and ``engram mcp`` when it opened the data dir
itself). :class:`ClientEngine` calls a running server over REST through
:class:`~engram.client.AsyncEngramClient` (``engram mcp`` when a server holds
the data dir). Both take and return the engine's own models, so the tools in
:mod:`.tools` are written once, and errors arrive as the same
:class:`~engram.errors.EngramError` classes either way (the client rebuilds
them from the server's envelope).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ...core.models import (
    AssociateInput,
    Association,
    CompleteInput,
    Completion,
    ConsolidateInput,
    ConsolidationReport,
    Cue,
    EpisodeInput,
    ForgetMode,
    ForgetReceipt,
    Memory,
    MemoryInput,
    RecallResult,
    Reminiscence,
    ReminisceQuery,
    SpaceDescriptor,
    SpacePage,
    StoreReceipt,
)

if TYPE_CHECKING:
    from ...client.http import AsyncEngramClient
    from ...service import EngramService


class Engine(Protocol):
    """The operations behind the MCP tools; ``space`` is already resolved and validated."""

    async def remember(self, space: str, item: MemoryInput) -> StoreReceipt: ...

    async def recall(self, space: str, cue: Cue) -> RecallResult: ...

    async def get_memory(self, space: str, memory_id: str) -> Memory: ...

    async def forget(self, space: str, memory_id: str, mode: ForgetMode) -> ForgetReceipt: ...

    async def associate(self, space: str, item: AssociateInput) -> Association: ...

    async def reminisce(self, space: str, query: ReminisceQuery) -> Reminiscence: ...

    async def consolidate(self, space: str, item: ConsolidateInput) -> ConsolidationReport: ...

    async def complete(self, space: str, item: CompleteInput) -> Completion: ...

    async def list_spaces(self, cursor: str | None, limit: int) -> SpacePage: ...

    async def create_space(self, space: str) -> SpaceDescriptor: ...


class ServiceEngine:
    """In-process: the service every transport shares."""

    def __init__(self, service: EngramService) -> None:
        self.service = service

    async def remember(self, space: str, item: MemoryInput) -> StoreReceipt:
        return await self.service.remember(space, item)

    async def recall(self, space: str, cue: Cue) -> RecallResult:
        return await self.service.recall(space, cue)

    async def get_memory(self, space: str, memory_id: str) -> Memory:
        return await self.service.get_memory(space, memory_id, include_embedding=False)

    async def forget(self, space: str, memory_id: str, mode: ForgetMode) -> ForgetReceipt:
        return await self.service.forget(space, memory_id, mode)

    async def associate(self, space: str, item: AssociateInput) -> Association:
        return await self.service.associate(space, item)

    async def reminisce(self, space: str, query: ReminisceQuery) -> Reminiscence:
        return await self.service.reminisce(space, query)

    async def consolidate(self, space: str, item: ConsolidateInput) -> ConsolidationReport:
        return await self.service.consolidate(space, item)

    async def complete(self, space: str, item: CompleteInput) -> Completion:
        return await self.service.complete(space, item)

    async def list_spaces(self, cursor: str | None, limit: int) -> SpacePage:
        return await self.service.list_spaces(cursor, limit)

    async def create_space(self, space: str) -> SpaceDescriptor:
        descriptor, _ = await self.service.create_space(space)
        return descriptor


def _fields(model: Any) -> dict[str, Any]:
    """An input model as the keyword arguments of the client method of the same name."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    data.pop("memory_space_id", None)
    return data


class ClientEngine:
    """Over REST to a running server; each call names its space in the ``X-Memory-Space`` header."""

    def __init__(self, client: AsyncEngramClient) -> None:
        self.client = client

    def _in(self, space: str) -> AsyncEngramClient:
        return self.client.with_space(space)

    async def remember(self, space: str, item: MemoryInput) -> StoreReceipt:
        body = _fields(item)
        if not isinstance(item, EpisodeInput):
            body.pop("when", None)
        return await self._in(space).store(body)

    async def recall(self, space: str, cue: Cue) -> RecallResult:
        fields = _fields(cue)
        if not fields.get("participants"):
            fields.pop("participants", None)
        return await self._in(space).recall(**fields)

    async def get_memory(self, space: str, memory_id: str) -> Memory:
        return await self._in(space).get(memory_id, include_embedding=False)

    async def forget(self, space: str, memory_id: str, mode: ForgetMode) -> ForgetReceipt:
        return await self._in(space).forget(memory_id, mode=mode.value)

    async def associate(self, space: str, item: AssociateInput) -> Association:
        return await self._in(space).associate(**_fields(item))

    async def reminisce(self, space: str, query: ReminisceQuery) -> Reminiscence:
        return await self._in(space).reminisce(**_fields(query))

    async def consolidate(self, space: str, item: ConsolidateInput) -> ConsolidationReport:
        return await self._in(space).consolidate(**_fields(item))

    async def complete(self, space: str, item: CompleteInput) -> Completion:
        return await self._in(space).complete(**_fields(item))

    async def list_spaces(self, cursor: str | None, limit: int) -> SpacePage:
        return await self.client.list_spaces(cursor=cursor, limit=limit)

    async def create_space(self, space: str) -> SpaceDescriptor:
        return await self.client.create_space(space)

    async def aclose(self) -> None:
        await self.client.aclose()
