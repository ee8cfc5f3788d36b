"""``engram.v1`` protobuf results -> the engine's pydantic models, for the CLI's gRPC backend.

The CLI renders one set of models (``engram.core.models``) whatever the
transport, so the gRPC answers are turned back into exactly what the REST
client returns. :func:`to_dict` walks the message descriptor (so enums, proto3
``optional`` presence, maps, Timestamps and Structs each come out right, and
nothing is guessed from values); the small functions below only undo the
places where the proto's shape differs from the REST JSON (an episode's context
nested under ``episode``, recall metadata split into typed fields, statistics
under proto field names).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..api.grpc.gen import memory_pb2 as pb
from ..api.grpc.gen import service_pb2 as spb
from ..client.http import CreatedSpace
from ..core import models as m


# Descriptors are typed as the pure-Python or the upb class depending on the backend: take Any.
def _enum(field: Any, number: int) -> str | None:
    """``MEMORY_TYPE_SEMANTIC`` -> ``"semantic"``; the zero (``*_UNSPECIFIED``) value -> None."""
    if number == 0:
        return None
    values = field.enum_type.values_by_number
    prefix = values[0].name.removesuffix("UNSPECIFIED") if 0 in values else ""
    value = values.get(number)
    return value.name.removeprefix(prefix).lower() if value is not None else str(number)


def _value(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return value.ToDatetime(tzinfo=UTC)
        if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
            return json_format.MessageToDict(value)
        return to_dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum(field, value)
    return value


def to_dict(msg: Message) -> dict[str, Any]:
    """Every field of ``msg`` by its proto name; unset optional scalars and messages are None."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(inner, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out


# ----------------------------------------------------------------------------- memories


_EPISODE_TEXT = ("where_location", "why", "how")


def _memory_dict(d: dict[str, Any]) -> dict[str, Any]:
    typed = d.pop("typed_metadata", None)
    if typed:  # revision 5: the values with their types (numbers arrive as doubles)
        d["metadata"] = {k: int(v) if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53 else v
                         for k, v in typed.items()}
    episode = d.pop("episode", None)
    if episode:
        for key in _EPISODE_TEXT:
            episode[key] = episode.get(key) or None
        d.update(episode)
    d["embedding"] = d.get("embedding") or None
    return d


def memory(msg: pb.Memory) -> m.Memory:
    return m.Memory.model_validate(_memory_dict(to_dict(msg)))


def receipt(msg: pb.StoreReceipt) -> m.StoreReceipt:
    return m.StoreReceipt.model_validate(to_dict(msg))


def recall_result(msg: pb.RecallResult) -> m.RecallResult:
    d = to_dict(msg)
    for items in (d["memories"] or {}).values():
        for item in items:
            _memory_dict(item["memory"])
            item["activation_path"] = item["activation_path"] or None
    meta = d.get("metadata") or {}
    d["metadata"] = {**(meta.get("extra") or {}), "timing_ms": meta.get("timing_ms") or {},
                     "candidates": meta.get("candidates", 0), "mode": meta.get("mode")}
    return m.RecallResult.model_validate(d)


def memory_page(msg: spb.ListMemoriesResponse) -> m.MemoryPage:
    return m.MemoryPage(memories=[memory(x) for x in msg.memories], next_cursor=msg.next_page_token or None,
                        total=msg.total, memory_space_id=msg.memory_space_id)


def delete_receipt(msg: spb.DeleteMemoriesResponse, mode: str) -> m.DeleteReceipt:
    return m.DeleteReceipt(count=msg.count, lsn=msg.lsn, mode=m.ForgetMode(mode),
                           memory_space_id=msg.memory_space_id)


def forget_receipt(msg: spb.ForgetResponse) -> m.ForgetReceipt:
    return m.ForgetReceipt.model_validate(to_dict(msg))


# ----------------------------------------------------------------------------- spaces

#: proto SpaceStatistics field -> the key GET /api/v1/spaces/{id} uses in ``stats``, in REST's order.
#: The proto does not carry REST's ``by_consolidation_state``, ``last_consolidation`` or ``index``.
_STATS_KEYS = {
    "memory_count": "memories", "memories_by_type": "by_type", "suppressed_count": "suppressed",
    "association_count": "associations", "belief_count": "beliefs", "mean_activation": "average_activation",
    "disk_bytes": "storage_bytes",
}


def _descriptor_dict(msg: pb.SpaceDescriptor) -> dict[str, Any]:
    d = to_dict(msg)
    d["reason"] = d.get("reason") or None
    stats = d.pop("stats", None)
    if stats:
        d["stats"] = {"memory_space_id": d["id"], **{rest: stats[key] for key, rest in _STATS_KEYS.items()},
                      "last_lsn": d["last_lsn"], "dimension": d["dimension"], "healthy": d["healthy"]}
    else:
        d["stats"] = None
    return d


def space_descriptor(msg: pb.SpaceDescriptor) -> m.SpaceDescriptor:
    return m.SpaceDescriptor.model_validate(_descriptor_dict(msg))


def created_space(msg: spb.CreateSpaceResponse) -> CreatedSpace:
    return CreatedSpace.model_validate({**_descriptor_dict(msg.space), "created": msg.created})


def space_page(msg: spb.ListSpacesResponse) -> m.SpacePage:
    return m.SpacePage(
        spaces=[space_descriptor(s) for s in msg.spaces], next_cursor=msg.next_page_token or None
    )


def space_deletion(msg: spb.DeleteSpaceResponse) -> m.SpaceDeletion:
    return m.SpaceDeletion.model_validate(to_dict(msg))


def reembed_status(msg: spb.ReembedStatus) -> m.ReembedStatus:
    return m.ReembedStatus.model_validate(to_dict(msg))
