"""gRPC clients for Engram: :class:`GrpcClient` (blocking) and :class:`AsyncGrpcClient` (asyncio).

    from engram.client.grpc import GrpcClient

    with GrpcClient("127.0.0.1:50051", space="agent-7") as client:
        receipt = client.remember("the espresso machine is on the third floor")
        result = client.recall(query="espresso")
        for item in result.results:               # best first; result.memories buckets them
            print(item.memory.content)

The space is given once (``space=``) and set as ``memory_space_id`` on every
request; the legacy ``x-memory-space`` metadata is sent only when asked
(``space_via="metadata"`` or ``"both"``). Results are the ``engram.v1``
protobuf messages (``engram.api.grpc.gen``). Failures raise the engine's own
exception classes (``engram.errors``: ``MemorySpaceNotFound``,
``InvalidMemorySpace``, ``MemoryNotFound`` ...) rebuilt from the server's
``engram-error-bin`` trailer; transport failures without an Engram code raise
:class:`GrpcTransportError` carrying the status code.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2

from ..api.grpc.gen import memory_pb2 as pb
from ..api.grpc.gen import service_pb2 as spb
from ..api.grpc.gen import service_pb2_grpc as spb_grpc
from ..api.grpc.metadata import ERROR_DETAIL_KEY, SPACE_KEY, WARNING_KEY
from ..api.grpc.values import scalar_value
from ..errors import (
    EngramError,
    GrpcTransportError,
    InvalidInput,
    NotFound,
    ShuttingDown,
    error_class_for_code,
)
from ..tls import read_ca

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

__all__ = ["AsyncGrpcClient", "GrpcClient", "GrpcTransportError", "error_from_rpc"]

SpaceVia = Literal["field", "metadata", "both"]



_BY_STATUS: dict[grpc.StatusCode, type[EngramError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
}


def _metadata_dict(metadata: Iterable[Any] | None) -> dict[str, Any]:
    """gRPC metadata as a dict: (key, value) pairs at run time, typed ``_Metadatum`` by the stubs."""
    return dict(metadata or ())


def error_from_rpc(exc: grpc.RpcError) -> EngramError:
    """The Engram exception a failed call stands for."""
    status: grpc.StatusCode = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    trailers = _metadata_dict(exc.trailing_metadata()) if hasattr(exc, "trailing_metadata") else {}
    raw = trailers.get(ERROR_DETAIL_KEY)
    if isinstance(raw, bytes):
        detail = pb.ErrorDetail.FromString(raw)
        cls = error_class_for_code(detail.code)
        from google.protobuf.json_format import MessageToDict

        err = cls(detail.message, suggestion=detail.suggestion, example=detail.example,
                  details=MessageToDict(detail.details) if detail.HasField("details") else None)
        err.code = detail.code
    elif status in _BY_STATUS:
        err = _BY_STATUS[status](details)
    elif status == grpc.StatusCode.UNAVAILABLE and "shutting down" in details:
        err = ShuttingDown(details)
    else:
        err = GrpcTransportError(f"{status.name}: {details}", status)
    err.__cause__ = exc
    return err


def _ts(value: datetime | float | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value)
    else:
        ts.FromNanoseconds(int(float(value) * 1e9))
    return ts


def _enum_labels(prefix: str) -> tuple[str, list[str]]:
    """The proto enum whose values start with ``prefix``: its name and its value names."""
    for file in (pb.DESCRIPTOR, spb.DESCRIPTOR):
        for enum in file.enum_types_by_name.values():
            names = [v.name for v in enum.values]
            if names and names[0].startswith(prefix):
                return enum.name, names
    return prefix.rstrip("_"), []


def _enum(prefix: str, value: Any) -> Any:
    """Accept "episodic" / "EPISODIC" / "MEMORY_TYPE_EPISODIC" / the int for enum fields.

    An unknown label is an :class:`InvalidInput` naming the values there are, raised here
    (protobuf would raise a bare ``ValueError``); an int goes to the server as it is, and the
    server answers an unknown number with INVALID_ARGUMENT.
    """
    if value is None or isinstance(value, int):
        return value
    text = str(value).upper()
    label = text if text.startswith(prefix) else f"{prefix}{text}"
    enum_name, names = _enum_labels(prefix)
    if names and label not in names:
        known = [n[len(prefix):].lower() for n in names if not n.endswith("_UNSPECIFIED")]
        raise InvalidInput(f"unknown {enum_name} value {value!r}; expected one of {', '.join(known)}",
                           example=f"{known[0]!r}" if known else "")
    return label


def struct(value: Mapping[str, Any] | struct_pb2.Struct | None) -> struct_pb2.Struct | None:
    """A metadata filter (a dict) as the ``google.protobuf.Struct`` of Cue.filter and friends."""
    if value is None or isinstance(value, struct_pb2.Struct):
        return value
    out = struct_pb2.Struct()
    out.update(dict(value))
    return out


def _value(v: Any) -> struct_pb2.Value:
    try:
        return scalar_value(v)
    except TypeError as exc:
        raise InvalidInput(str(exc)) from None


def _split_metadata(fields: dict[str, Any]) -> None:
    """``metadata`` with any scalar values: strings go to the string map, the rest (and all of
    ``typed_metadata``) to ``typed_metadata`` (proto revision 5)."""
    meta = fields.pop("metadata", None) or {}
    typed = dict(fields.pop("typed_metadata", None) or {})
    strings = {str(k): v for k, v in meta.items() if isinstance(v, str)}
    typed.update({str(k): v for k, v in meta.items() if not isinstance(v, str)})
    if strings:
        fields["metadata"] = strings
    if typed:
        fields["typed_metadata"] = {k: v if isinstance(v, struct_pb2.Value) else _value(v)
                                    for k, v in typed.items()}


def memory_input(content: str = "", **fields: Any) -> pb.MemoryInput:
    """A ``MemoryInput`` from keyword fields (``embedding``, ``tags``, ``memory_type="episodic"`` ...);
    ``metadata`` may hold strings, numbers, booleans and None."""
    if "memory_type" in fields:
        fields["memory_type"] = _enum("MEMORY_TYPE_", fields["memory_type"])
    _split_metadata(fields)
    return pb.MemoryInput(content=content, **{k: v for k, v in fields.items() if v is not None})


def _batch_input(item: pb.MemoryInput | Mapping[str, Any]) -> pb.MemoryInput:
    return item if isinstance(item, pb.MemoryInput) else memory_input(**dict(item))


def _update_request(memory_id: str, space: str, fields: dict[str, Any],
                    patch: bool) -> spb.UpdateMemoryRequest:
    """PUT (empty mask: create or replace) or PATCH (the mask names exactly the fields given)."""
    given = {k: v for k, v in fields.items() if v is not None}
    mask = field_mask_pb2.FieldMask(paths=sorted(given)) if patch else None
    if patch and not given:
        raise ValueError("patch_memory needs at least one field to change")
    return spb.UpdateMemoryRequest(memory_id=memory_id, memory=memory_input(**given), update_mask=mask,
                                   memory_space_id=space)


def episode_input(what: str = "", *, when: datetime | float, **fields: Any) -> pb.EpisodeInput:
    if "memory_type" in fields:
        fields["memory_type"] = _enum("MEMORY_TYPE_", fields["memory_type"])
    _split_metadata(fields)
    return pb.EpisodeInput(what=what, when=_ts(when), **{k: v for k, v in fields.items() if v is not None})


def cue(query: str | None = None, **fields: Any) -> pb.Cue:
    """A ``Cue`` from keyword fields (``rank="similarity"``, ``wait_for_embeddings=True``, ``mode`` ...)."""
    if "mode" in fields:
        fields["mode"] = _enum("RECALL_MODE_", fields["mode"])
    if "rank" in fields:
        fields["rank"] = _enum("RANK_MODE_", fields["rank"])
    if "memory_type" in fields:
        fields["memory_type"] = _enum("MEMORY_TYPE_", fields["memory_type"])
    for name in ("time_start", "time_end"):
        if name in fields:
            fields[name] = _ts(fields[name])
    if "filter" in fields:
        fields["filter"] = struct(fields["filter"])
    return pb.Cue(query=query or "", **{k: v for k, v in fields.items() if v is not None})


def embedder_choice(embedder: str | Mapping[str, Any] | spb.EmbedderChoice | None,
                    model: str | None = None) -> spb.EmbedderChoice | None:
    """``"hash"``, ``{"provider": "hash", "model": "hash-64"}`` or a message -> ``EmbedderChoice``."""
    if embedder is None:
        if model is not None:
            raise InvalidInput("model given without an embedder provider",
                               example='create_space("agent-7", embedder="local", model="all-MiniLM-L6-v2")')
        return None
    if isinstance(embedder, spb.EmbedderChoice):
        return embedder
    if isinstance(embedder, str):
        return spb.EmbedderChoice(provider=embedder, model=model or "")
    return spb.EmbedderChoice(provider=str(embedder.get("provider") or ""),
                              model=str(model or embedder.get("model") or ""))


def _event_types(types: Sequence[str | int] | None) -> list[Any]:
    return [_enum("EVENT_TYPE_", t) for t in types or ()]


class _Base:
    def __init__(self, space: str | None, space_via: SpaceVia, timeout: float | None,
                 api_key: str | None = None) -> None:
        self.space = space
        self.api_key = api_key
        self.space_via = space_via
        self.timeout = timeout
        self.last_warning: str | None = None

    def _field(self) -> str:
        return (self.space or "") if self.space_via in ("field", "both") else ""

    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        md: tuple[tuple[str, str], ...] = ()
        if self.api_key:  # SPEC §10: the key as `authorization: Bearer <key>` on every call
            md += (("authorization", f"Bearer {self.api_key}"),)
        if self.space and self.space_via in ("metadata", "both"):
            md += ((SPACE_KEY, self.space),)
        return md or None

    def _admin_space(self, space: str | None) -> str:
        sid = space or self.space
        if not sid:
            raise InvalidInput("name the space: pass space= to the client or to this call")
        return sid


def _channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def _channel_credentials(ca_file: str | os.PathLike[str] | None) -> grpc.ChannelCredentials:
    """TLS credentials trusting ``ca_file`` (PEM), or the system's roots when it is ``None``."""
    return grpc.ssl_channel_credentials(root_certificates=read_ca(ca_file) if ca_file else None)


class GrpcClient(_Base):
    """Blocking gRPC client bound to one memory space."""

    def __init__(self, target: str = "127.0.0.1:50051", *, space: str | None = None,
                 space_via: SpaceVia = "field", timeout: float | None = 30.0,
                 channel: grpc.Channel | None = None, max_message_bytes: int = 4_194_304,
                 tls: bool = False, ca_file: str | os.PathLike[str] | None = None,
                 api_key: str | None = None) -> None:
        """``tls``: connect over TLS (implied by ``ca_file``, a PEM file of the CA that signed the
        server's certificate; without it, the system's roots)."""
        super().__init__(space, space_via, timeout, api_key)
        self._own = channel is None
        options = _channel_options(max_message_bytes)
        if channel is None and (tls or ca_file):
            channel = grpc.secure_channel(target, _channel_credentials(ca_file), options=options)
        self.channel = channel or grpc.insecure_channel(target, options=options)
        self.stub = spb_grpc.EngramServiceStub(self.channel)

    def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        try:
            resp, call = method.with_call(request, timeout=self.timeout, metadata=self._metadata())
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        self.last_warning = _metadata_dict(call.trailing_metadata()).get(WARNING_KEY)
        return resp

    def _stream(self, iterator: Any) -> Iterator[Any]:
        try:
            yield from iterator
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    # -- memories ---------------------------------------------------------------
    def remember(self, content: str = "", **fields: Any) -> pb.StoreReceipt:
        req = spb.RememberRequest(memory=memory_input(content, **fields), memory_space_id=self._field())
        return self._call(self.stub.Remember, req).receipt

    def remember_batch(self, items: Iterable[pb.MemoryInput | Mapping[str, Any]]
                       ) -> spb.RememberBatchResponse:
        """Store 1 to 1,000 memories in one durable commit; ``results[i]`` has a receipt or an error."""
        req = spb.RememberBatchRequest(memories=[_batch_input(i) for i in items],
                                       memory_space_id=self._field())
        return self._call(self.stub.RememberBatch, req)

    def update_memory(self, memory_id: str, content: str = "", **fields: Any) -> spb.UpdateMemoryResponse:
        """Create or replace a memory (empty update_mask); ``.created`` says which."""
        req = _update_request(memory_id, self._field(), {"content": content, **fields}, patch=False)
        return self._call(self.stub.UpdateMemory, req)

    def patch_memory(self, memory_id: str, **fields: Any) -> spb.UpdateMemoryResponse:
        """Change only the given fields (``content=``, ``tags=`` ...) of an existing memory."""
        req = _update_request(memory_id, self._field(), fields, patch=True)
        return self._call(self.stub.UpdateMemory, req)

    def experience(self, what: str = "", *, when: datetime | float, **fields: Any) -> pb.StoreReceipt:
        req = spb.ExperienceRequest(
            episode=episode_input(what, when=when, **fields), memory_space_id=self._field()
        )
        return self._call(self.stub.Experience, req).receipt

    def recall(self, query: str | None = None, **fields: Any) -> pb.RecallResult:
        """Recall by cue; ``fields`` are Cue fields (``rank="similarity"``, ``wait_for_embeddings=True``)."""
        req = spb.RecallRequest(cue=cue(query, **fields), memory_space_id=self._field())
        return self._call(self.stub.Recall, req).result

    def forget(self, memory_id: str, mode: str = "suppress") -> spb.ForgetResponse:
        req = spb.ForgetRequest(
            memory_id=memory_id, mode=_enum("FORGET_MODE_", mode), memory_space_id=self._field()
        )
        return self._call(self.stub.Forget, req)

    def get_memory(self, memory_id: str, include_embedding: bool = False) -> pb.Memory:
        req = spb.GetMemoryRequest(memory_id=memory_id, include_embedding=include_embedding,
                                   memory_space_id=self._field())
        return self._call(self.stub.GetMemory, req).memory

    def list_memories(
        self, page_size: int = 0, page_token: str = "", **fields: Any
    ) -> spb.ListMemoriesResponse:
        if "memory_type" in fields:
            fields["memory_type"] = _enum("MEMORY_TYPE_", fields["memory_type"])
        if "filter" in fields:
            fields["filter"] = struct(fields["filter"])
        req = spb.ListMemoriesRequest(
            page_size=page_size, page_token=page_token, memory_space_id=self._field(),
            **{k: v for k, v in fields.items() if v is not None},
        )
        return self._call(self.stub.ListMemories, req)

    def delete_memories(self, filter: Mapping[str, Any] | struct_pb2.Struct,
                        mode: str = "suppress") -> spb.DeleteMemoriesResponse:
        """Forget every memory whose metadata matches ``filter`` (not empty), in one durable write."""
        req = spb.DeleteMemoriesRequest(filter=struct(filter), mode=_enum("FORGET_MODE_", mode),
                                        memory_space_id=self._field())
        return self._call(self.stub.DeleteMemories, req)

    # -- cognition --------------------------------------------------------------
    def recognize(self, content: str = "", **fields: Any) -> spb.RecognizeResponse:
        return self._call(
            self.stub.Recognize,
            spb.RecognizeRequest(content=content, memory_space_id=self._field(), **fields),
        )

    def reminisce(self, topic: str = "", **fields: Any) -> spb.ReminisceResponse:
        for name in ("time_start", "time_end"):
            if name in fields:
                fields[name] = _ts(fields[name])
        return self._call(
            self.stub.Reminisce, spb.ReminisceRequest(topic=topic, memory_space_id=self._field(), **fields)
        )

    def associate(
        self, source_id: str, target_id: str, strength: float | None = None
    ) -> spb.AssociateResponse:
        req = spb.AssociateRequest(source_id=source_id, target_id=target_id, strength=strength,
                                   memory_space_id=self._field())
        return self._call(self.stub.Associate, req)

    def consolidate(self, **fields: Any) -> pb.ConsolidationRun:
        return self._call(
            self.stub.Consolidate, spb.ConsolidateRequest(memory_space_id=self._field(), **fields)
        ).run

    def dream(self, **fields: Any) -> Iterator[spb.DreamResponse]:
        req = spb.DreamRequest(memory_space_id=self._field(), **fields)
        return self._stream(self.stub.Dream(req, timeout=self.timeout, metadata=self._metadata()))

    def complete(self, **fields: Any) -> spb.CompleteResponse:
        if "when" in fields:
            fields["when"] = _ts(fields["when"])
        return self._call(self.stub.Complete, spb.CompleteRequest(memory_space_id=self._field(), **fields))

    def introspect(self) -> spb.IntrospectResponse:
        return self._call(self.stub.Introspect, spb.IntrospectRequest(memory_space_id=self._field()))

    # -- streams -------------------------------------------------------------------
    def stream(self, event_types: Sequence[str | int] | None = None,
               timeout: float | None = None, since_lsn: int | None = None) -> Iterator[spb.StreamResponse]:
        """The space's events (``StreamResponse``: event, lag_notice, heartbeat or reset).

        ``since_lsn``: first replay the logged events with an LSN above it, then go live (a
        ``reset`` comes first if the server's log no longer reaches back that far).
        Cancel with ``.cancel()``.
        """
        req = spb.StreamRequest(event_types=_event_types(event_types), memory_space_id=self._field(),
                                since_lsn=since_lsn)
        return self.stub.Stream(req, timeout=timeout, metadata=self._metadata())

    def streaming_remember(self, items: Iterable[pb.MemoryInput | pb.EpisodeInput]
                           ) -> Iterator[spb.StreamingRememberResponse]:
        def requests() -> Iterator[spb.StreamingRememberRequest]:
            for seq, item in enumerate(items, 1):
                if isinstance(item, pb.EpisodeInput):
                    yield spb.StreamingRememberRequest(
                        sequence=seq, episode=item, memory_space_id=self._field()
                    )
                else:
                    yield spb.StreamingRememberRequest(
                        sequence=seq, memory=item, memory_space_id=self._field()
                    )

        return self._stream(self.stub.StreamingRemember(requests(), metadata=self._metadata()))

    def streaming_recall(self, cues: Iterable[pb.Cue]) -> Iterator[spb.StreamingRecallResponse]:
        reqs = (spb.StreamingRecallRequest(sequence=seq, cue=c, memory_space_id=self._field())
                for seq, c in enumerate(cues, 1))
        return self._stream(self.stub.StreamingRecall(reqs, metadata=self._metadata()))

    def memory_flow(self, requests: Iterable[spb.MemoryFlowRequest]) -> Iterator[spb.MemoryFlowResponse]:
        """Raw MemoryFlow; requests without memory_space_id get this client's space."""
        def fill() -> Iterator[spb.MemoryFlowRequest]:
            for req in requests:
                if not req.memory_space_id and self._field():
                    req.memory_space_id = self._field()
                yield req

        return self._stream(self.stub.MemoryFlow(fill(), metadata=self._metadata()))

    # -- spaces ---------------------------------------------------------------------
    def create_space(self, space: str | None = None, dimension: int | None = None, *,
                     embedder: str | Mapping[str, Any] | spb.EmbedderChoice | None = None,
                     model: str | None = None) -> spb.CreateSpaceResponse:
        """Create a space; ``embedder`` is a provider name (with ``model=``) or ``{"provider", "model"}``."""
        req = spb.CreateSpaceRequest(memory_space_id=self._admin_space(space), dimension=dimension,
                                     embedder=embedder_choice(embedder, model))
        return self._call(self.stub.CreateSpace, req)

    def get_space(self, space: str | None = None) -> pb.SpaceDescriptor:
        return self._call(
            self.stub.GetSpace, spb.GetSpaceRequest(memory_space_id=self._admin_space(space))
        ).space

    def reembed(self, space: str | None = None, provider: str | None = None,
                model: str | None = None) -> spb.ReembedStatus:
        """Start (or resume) re-embedding a space with ``provider``/``model`` (omitted: the server's
        default embedder); poll :meth:`reembed_status` until ``REEMBED_STATE_IDLE``."""
        req = spb.ReembedSpaceRequest(memory_space_id=self._admin_space(space),
                                      embedder=embedder_choice(provider, model))
        return self._call(self.stub.ReembedSpace, req).status

    def reembed_status(self, space: str | None = None) -> spb.ReembedStatus:
        req = spb.GetReembedStatusRequest(memory_space_id=self._admin_space(space))
        return self._call(self.stub.GetReembedStatus, req).status

    def delete_space(self, space: str | None = None) -> spb.DeleteSpaceResponse:
        return self._call(
            self.stub.DeleteSpace, spb.DeleteSpaceRequest(memory_space_id=self._admin_space(space))
        )

    def list_spaces(self, page_size: int = 0, page_token: str = "") -> spb.ListSpacesResponse:
        return self._call(
            self.stub.ListSpaces, spb.ListSpacesRequest(page_size=page_size, page_token=page_token)
        )

    def with_space(self, space: str) -> GrpcClient:
        """Another client on the same channel, bound to ``space``."""
        return GrpcClient(space=space, space_via=self.space_via, timeout=self.timeout, channel=self.channel,
                          api_key=self.api_key)

    # -- API keys (admin keys only) --------------------------------------------------
    def create_key(self, role: str, spaces: Sequence[str] = (), name: str = "",
                   expires_in_seconds: int = 0) -> spb.CreateKeyResponse:
        """A new key; ``token`` in the answer is the only time the key itself is shown."""
        return self._call(self.stub.CreateKey, spb.CreateKeyRequest(
            name=name, role=role, spaces=list(spaces), expires_in_seconds=expires_in_seconds))

    def list_keys(self) -> spb.ListKeysResponse:
        return self._call(self.stub.ListKeys, spb.ListKeysRequest())

    def revoke_key(self, key_id: str) -> spb.RevokeKeyResponse:
        return self._call(self.stub.RevokeKey, spb.RevokeKeyRequest(key_id=key_id))

    def close(self) -> None:
        if self._own:
            self.channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGrpcClient(_Base):
    """asyncio gRPC client bound to one memory space (same methods as :class:`GrpcClient`, awaitable)."""

    def __init__(self, target: str = "127.0.0.1:50051", *, space: str | None = None,
                 space_via: SpaceVia = "field", timeout: float | None = 30.0,
                 channel: grpc.aio.Channel | None = None, max_message_bytes: int = 4_194_304,
                 tls: bool = False, ca_file: str | os.PathLike[str] | None = None,
                 api_key: str | None = None) -> None:
        super().__init__(space, space_via, timeout, api_key)
        self._own = channel is None
        options = _channel_options(max_message_bytes)
        if channel is None and (tls or ca_file):
            channel = grpc.aio.secure_channel(target, _channel_credentials(ca_file), options=options)
        self.channel = channel or grpc.aio.insecure_channel(target, options=options)
        self.stub = spb_grpc.EngramServiceStub(self.channel)

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        call = method(request, timeout=self.timeout, metadata=self._metadata())
        try:
            resp = await call
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        return resp

    async def _stream(self, call: Any) -> AsyncIterator[Any]:
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    async def remember(self, content: str = "", **fields: Any) -> pb.StoreReceipt:
        req = spb.RememberRequest(memory=memory_input(content, **fields), memory_space_id=self._field())
        return (await self._call(self.stub.Remember, req)).receipt

    async def remember_batch(self, items: Iterable[pb.MemoryInput | Mapping[str, Any]]
                       ) -> spb.RememberBatchResponse:
        """Store 1 to 1,000 memories in one durable commit; ``results[i]`` has a receipt or an error."""
        req = spb.RememberBatchRequest(memories=[_batch_input(i) for i in items],
                                       memory_space_id=self._field())
        return await self._call(self.stub.RememberBatch, req)

    async def update_memory(self, memory_id: str, content: str = "",
                            **fields: Any) -> spb.UpdateMemoryResponse:
        """Create or replace a memory (empty update_mask); ``.created`` says which."""
        req = _update_request(memory_id, self._field(), {"content": content, **fields}, patch=False)
        return await self._call(self.stub.UpdateMemory, req)

    async def patch_memory(self, memory_id: str, **fields: Any) -> spb.UpdateMemoryResponse:
        """Change only the given fields (``content=``, ``tags=`` ...) of an existing memory."""
        req = _update_request(memory_id, self._field(), fields, patch=True)
        return await self._call(self.stub.UpdateMemory, req)

    async def experience(self, what: str = "", *, when: datetime | float, **fields: Any) -> pb.StoreReceipt:
        req = spb.ExperienceRequest(
            episode=episode_input(what, when=when, **fields), memory_space_id=self._field()
        )
        return (await self._call(self.stub.Experience, req)).receipt

    async def recall(self, query: str | None = None, **fields: Any) -> pb.RecallResult:
        req = spb.RecallRequest(cue=cue(query, **fields), memory_space_id=self._field())
        return (await self._call(self.stub.Recall, req)).result

    async def forget(self, memory_id: str, mode: str = "suppress") -> spb.ForgetResponse:
        req = spb.ForgetRequest(
            memory_id=memory_id, mode=_enum("FORGET_MODE_", mode), memory_space_id=self._field()
        )
        return await self._call(self.stub.Forget, req)

    async def delete_memories(self, filter: Mapping[str, Any] | struct_pb2.Struct,
                              mode: str = "suppress") -> spb.DeleteMemoriesResponse:
        """Forget every memory whose metadata matches ``filter`` (not empty), in one durable write."""
        req = spb.DeleteMemoriesRequest(filter=struct(filter), mode=_enum("FORGET_MODE_", mode),
                                        memory_space_id=self._field())
        return await self._call(self.stub.DeleteMemories, req)

    async def get_memory(self, memory_id: str, include_embedding: bool = False) -> pb.Memory:
        req = spb.GetMemoryRequest(memory_id=memory_id, include_embedding=include_embedding,
                                   memory_space_id=self._field())
        return (await self._call(self.stub.GetMemory, req)).memory

    async def introspect(self) -> spb.IntrospectResponse:
        return await self._call(self.stub.Introspect,
                                spb.IntrospectRequest(memory_space_id=self._field()))

    def stream(self, event_types: Sequence[str | int] | None = None, since_lsn: int | None = None) -> Any:
        """The space's events: an async-iterable call (``.cancel()`` to stop); ``since_lsn`` resumes."""
        req = spb.StreamRequest(event_types=_event_types(event_types), memory_space_id=self._field(),
                                since_lsn=since_lsn)
        return self.stub.Stream(req, metadata=self._metadata())

    def streaming_remember(self, items: Any) -> AsyncIterator[spb.StreamingRememberResponse]:
        """Pipelined stores: ``items`` is an (async) iterable of MemoryInput/EpisodeInput."""
        field = self._field()

        async def requests() -> AsyncIterator[spb.StreamingRememberRequest]:
            seq = 0
            if hasattr(items, "__aiter__"):
                async for item in items:
                    seq += 1
                    yield _remember_req(seq, item, field)
            else:
                for item in items:
                    seq += 1
                    yield _remember_req(seq, item, field)

        return self._stream(self.stub.StreamingRemember(requests(), metadata=self._metadata()))

    def streaming_recall(self, cues: Iterable[pb.Cue]) -> AsyncIterator[spb.StreamingRecallResponse]:
        reqs = [spb.StreamingRecallRequest(sequence=seq, cue=c, memory_space_id=self._field())
                for seq, c in enumerate(cues, 1)]
        return self._stream(self.stub.StreamingRecall(iter(reqs), metadata=self._metadata()))

    async def create_space(self, space: str | None = None, dimension: int | None = None, *,
                           embedder: str | Mapping[str, Any] | spb.EmbedderChoice | None = None,
                           model: str | None = None) -> spb.CreateSpaceResponse:
        req = spb.CreateSpaceRequest(memory_space_id=self._admin_space(space), dimension=dimension,
                                     embedder=embedder_choice(embedder, model))
        return await self._call(self.stub.CreateSpace, req)

    async def get_space(self, space: str | None = None) -> pb.SpaceDescriptor:
        req = spb.GetSpaceRequest(memory_space_id=self._admin_space(space))
        return (await self._call(self.stub.GetSpace, req)).space

    async def reembed(self, space: str | None = None, provider: str | None = None,
                      model: str | None = None) -> spb.ReembedStatus:
        req = spb.ReembedSpaceRequest(memory_space_id=self._admin_space(space),
                                      embedder=embedder_choice(provider, model))
        return (await self._call(self.stub.ReembedSpace, req)).status

    async def reembed_status(self, space: str | None = None) -> spb.ReembedStatus:
        req = spb.GetReembedStatusRequest(memory_space_id=self._admin_space(space))
        return (await self._call(self.stub.GetReembedStatus, req)).status

    async def delete_space(self, space: str | None = None) -> spb.DeleteSpaceResponse:
        req = spb.DeleteSpaceRequest(memory_space_id=self._admin_space(space))
        return await self._call(self.stub.DeleteSpace, req)

    async def list_spaces(self, page_size: int = 0, page_token: str = "") -> spb.ListSpacesResponse:
        req = spb.ListSpacesRequest(page_size=page_size, page_token=page_token)
        return await self._call(self.stub.ListSpaces, req)

    async def create_key(self, role: str, spaces: Sequence[str] = (), name: str = "",
                         expires_in_seconds: int = 0) -> spb.CreateKeyResponse:
        req = spb.CreateKeyRequest(name=name, role=role, spaces=list(spaces),
                                   expires_in_seconds=expires_in_seconds)
        return await self._call(self.stub.CreateKey, req)

    async def list_keys(self) -> spb.ListKeysResponse:
        return await self._call(self.stub.ListKeys, spb.ListKeysRequest())

    async def revoke_key(self, key_id: str) -> spb.RevokeKeyResponse:
        return await self._call(self.stub.RevokeKey, spb.RevokeKeyRequest(key_id=key_id))

    async def close(self) -> None:
        if self._own:
            await self.channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _remember_req(seq: int, item: Any, field: str) -> spb.StreamingRememberRequest:
    if isinstance(item, pb.EpisodeInput):
        return spb.StreamingRememberRequest(sequence=seq, episode=item, memory_space_id=field)
    return spb.StreamingRememberRequest(sequence=seq, memory=item, memory_space_id=field)
