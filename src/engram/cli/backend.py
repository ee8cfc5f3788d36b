"""What the ``space`` and ``memory`` commands call: one small protocol, two transports.

:class:`Backend` is the part of :class:`engram.client.EngramClient` those commands
use, so the REST backend *is* ``EngramClient``. :class:`GrpcBackend` implements
the same methods over :class:`engram.client.grpc.GrpcClient`, which sets
``memory_space_id`` on every request, and turns the protobuf answers back into
the engine's pydantic models (:mod:`.from_proto`). The commands therefore have
one code path for tables and ``--json`` whatever the transport, and errors
arrive as the same engine exceptions, so the exit codes are the same too. The
one translation here: a gRPC failure without an Engram code that means the
server was not reached (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``) becomes
:class:`EngramConnectionError`, as httpx's connect errors do on the REST side.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from ..client.http import CreatedSpace, EngramConnectionError
from ..core.models import (
    DeleteReceipt,
    ForgetReceipt,
    Memory,
    MemoryPage,
    RecallResult,
    ReembedStatus,
    SpaceDeletion,
    SpaceDescriptor,
    SpacePage,
    StoreReceipt,
    UpdateReceipt,
)
from ..errors import InvalidInput
from . import from_proto as pb


class Backend(Protocol):
    """The calls ``engram space ...`` and ``engram memory remember|recall|get|list|forget`` make."""

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def create_space(self, space_id: str, *, dimension: int | None = None, embedder: str | None = None,
                     model: str | None = None) -> CreatedSpace: ...

    def list_spaces(self, *, cursor: str | None = None, limit: int | None = None) -> SpacePage: ...

    def get_space(self, space_id: str | None = None) -> SpaceDescriptor: ...

    def delete_space(self, space_id: str) -> SpaceDeletion: ...

    def reembed(self, space_id: str | None = None, *, provider: str | None = None,
                model: str | None = None) -> ReembedStatus: ...

    def reembed_status(self, space_id: str | None = None) -> ReembedStatus: ...

    def remember(
        self, content: str = "", *, id: str | None = None, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        auto_link: bool | None = None,
    ) -> StoreReceipt: ...

    def experience(
        self, when: datetime | str | float, what: str = "", *, id: str | None = None,
        embedding: Sequence[float] | None = None, where_location: str | None = None,
        who: Sequence[str] | None = None, confidence: float | None = None,
        tags: Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None,
        auto_link: bool | None = None,
    ) -> StoreReceipt: ...

    def recall(
        self, query: str | None = None, *, embedding: Sequence[float] | None = None,
        threshold: float | None = None, max_results: int | None = None, mode: str | None = None,
        tags: Sequence[str] | None = None, memory_type: str | None = None,
        trace_activation: bool | None = None, rank: str | None = None,
        wait_for_embeddings: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> RecallResult: ...

    def get(self, memory_id: str, *, include_embedding: bool | None = None) -> Memory: ...

    def list_memories(
        self, *, cursor: str | None = None, limit: int | None = None, memory_type: str | None = None,
        include_suppressed: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> MemoryPage: ...

    def forget(self, memory_id: str, *, mode: str = "suppress") -> ForgetReceipt: ...

    def patch_memory(
        self, memory_id: str, *, content: str | None = None, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        decay_rate: float | None = None,
    ) -> UpdateReceipt: ...
    def delete_memories(self, filter: Mapping[str, Any], *, mode: str = "suppress") -> DeleteReceipt: ...


_WHEN = TypeAdapter(datetime)


def _when(value: datetime | str | float) -> datetime:
    """ISO-8601 or epoch seconds, parsed by the same rules the server's EpisodeInput uses."""
    try:
        return _WHEN.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(f"when: expected an ISO-8601 time or epoch seconds, got {value!r}: "
                           f"{exc.errors()[0]['msg']}", example="2026-01-05T09:00:00Z") from None


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class GrpcBackend:
    """:class:`Backend` over the gRPC API; every data-plane request carries ``memory_space_id``."""

    def __init__(self, target: str, *, space: str, timeout: float, tls: bool = False,
                 ca_file: str | None = None, api_key: str | None = None) -> None:
        # Imported here so that REST-only use of the CLI never loads grpcio.
        from ..client.grpc import GrpcClient

        self.target = target
        self._client = GrpcClient(target, space=space, timeout=timeout, tls=tls, ca_file=ca_file,
                                  api_key=api_key)

    def __enter__(self) -> GrpcBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    @contextmanager
    def _rpc(self) -> Iterator[None]:
        from grpc import StatusCode

        from ..client.grpc import GrpcTransportError

        try:
            yield
        except GrpcTransportError as exc:
            if exc.status not in (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED):
                raise
            raise EngramConnectionError(
                f"cannot reach the Engram gRPC server at {self.target}: {exc.message}",
                suggestion="Start the server with `engram start`, or point the CLI at the right "
                           "--grpc-target (env ENGRAM_GRPC_TARGET).",
                example="engram start --data-dir ./engram-data") from exc

    # -- spaces -----------------------------------------------------------------------------------
    def create_space(self, space_id: str, *, dimension: int | None = None, embedder: str | None = None,
                     model: str | None = None) -> CreatedSpace:
        with self._rpc():
            return pb.created_space(self._client.create_space(space_id, dimension=dimension,
                                                              embedder=embedder, model=model))

    def list_spaces(self, *, cursor: str | None = None, limit: int | None = None) -> SpacePage:
        with self._rpc():
            return pb.space_page(self._client.list_spaces(page_size=limit or 0, page_token=cursor or ""))

    def get_space(self, space_id: str | None = None) -> SpaceDescriptor:
        with self._rpc():
            return pb.space_descriptor(self._client.get_space(space_id))

    def delete_space(self, space_id: str) -> SpaceDeletion:
        with self._rpc():
            return pb.space_deletion(self._client.delete_space(space_id))

    def reembed(self, space_id: str | None = None, *, provider: str | None = None,
                model: str | None = None) -> ReembedStatus:
        with self._rpc():
            return pb.reembed_status(self._client.reembed(space_id, provider, model))

    def reembed_status(self, space_id: str | None = None) -> ReembedStatus:
        with self._rpc():
            return pb.reembed_status(self._client.reembed_status(space_id))

    # -- memories ---------------------------------------------------------------------------------
    def remember(
        self, content: str = "", *, id: str | None = None, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        auto_link: bool | None = None,
    ) -> StoreReceipt:
        fields = _given(id=id, embedding=embedding, confidence=confidence, tags=tags, memory_type=memory_type,
                        metadata=metadata, auto_link=auto_link)
        with self._rpc():
            return pb.receipt(self._client.remember(content, **fields))

    def experience(
        self, when: datetime | str | float, what: str = "", *, id: str | None = None,
        embedding: Sequence[float] | None = None, where_location: str | None = None,
        who: Sequence[str] | None = None, confidence: float | None = None,
        tags: Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None,
        auto_link: bool | None = None,
    ) -> StoreReceipt:
        fields = _given(
            id=id,
            embedding=embedding,
            where_location=where_location,
            who=who,
            confidence=confidence,
            tags=tags,
            metadata=metadata,
            auto_link=auto_link,
        )
        with self._rpc():
            return pb.receipt(self._client.experience(what, when=_when(when), **fields))

    def recall(
        self, query: str | None = None, *, embedding: Sequence[float] | None = None,
        threshold: float | None = None, max_results: int | None = None, mode: str | None = None,
        tags: Sequence[str] | None = None, memory_type: str | None = None,
        trace_activation: bool | None = None, rank: str | None = None,
        wait_for_embeddings: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> RecallResult:
        fields = _given(
            filter=filter,
            embedding=embedding,
            threshold=threshold,
            max_results=max_results,
            mode=mode,
            tags=tags,
            memory_type=memory_type,
            trace_activation=trace_activation,
            rank=rank,
            wait_for_embeddings=wait_for_embeddings,
        )
        with self._rpc():
            return pb.recall_result(self._client.recall(query, **fields))

    def get(self, memory_id: str, *, include_embedding: bool | None = None) -> Memory:
        # REST includes the embedding unless told not to; keep the same default.
        include = True if include_embedding is None else include_embedding
        with self._rpc():
            return pb.memory(self._client.get_memory(memory_id, include_embedding=include))

    def list_memories(
        self, *, cursor: str | None = None, limit: int | None = None, memory_type: str | None = None,
        include_suppressed: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> MemoryPage:
        fields = _given(memory_type=memory_type, include_suppressed=include_suppressed, filter=filter)
        with self._rpc():
            return pb.memory_page(self._client.list_memories(page_size=limit or 0, page_token=cursor or "",
                                                                   **fields))

    def forget(self, memory_id: str, *, mode: str = "suppress") -> ForgetReceipt:
        with self._rpc():
            return pb.forget_receipt(self._client.forget(memory_id, mode=mode))

    def patch_memory(
        self, memory_id: str, *, content: str | None = None, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        decay_rate: float | None = None,
    ) -> UpdateReceipt:
        fields = _given(content=content, embedding=embedding, confidence=confidence, tags=tags,
                        memory_type=memory_type, metadata=metadata, decay_rate=decay_rate)
        with self._rpc():
            resp = self._client.patch_memory(memory_id, **fields)
        return UpdateReceipt(memory=pb.memory(resp.memory), created=resp.created, lsn=resp.lsn,
                             memory_space_id=resp.memory_space_id)
    def delete_memories(self, filter: Mapping[str, Any], *, mode: str = "suppress") -> DeleteReceipt:
        with self._rpc():
            return pb.delete_receipt(self._client.delete_memories(filter, mode=mode), mode)
