"""Proto messages <-> engine models (``engram.core.models``).

Inputs are turned into plain dicts and validated by the *same* pydantic models
REST uses, so there is one set of rules; a validation failure becomes an
``InvalidInput`` naming the proto field path (``memory.embedding``). Proto3
cannot tell "absent" from zero for plain scalars, so only fields marked
``optional`` in the proto (or with an ``*_UNSPECIFIED`` enum value, or an empty
list) fall back to the engine's defaults.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from pydantic import BaseModel, ValidationError

from ...core import models as m
from ...core.events import Event, Lagged, Reset
from ...errors import EngramError
from .errors import describe_validation_error
from .gen import memory_pb2 as pb
from .gen import service_pb2 as spb
from .values import scalar_value

M = TypeVar("M", bound=BaseModel)

MEMORY_TYPES = {
    pb.MEMORY_TYPE_EPISODIC: m.MemoryType.episodic, pb.MEMORY_TYPE_SEMANTIC: m.MemoryType.semantic,
    pb.MEMORY_TYPE_PROCEDURAL: m.MemoryType.procedural, pb.MEMORY_TYPE_WORKING: m.MemoryType.working,
}
MEMORY_TYPES_OUT = {v.value: k for k, v in MEMORY_TYPES.items()}
RECALL_MODES = {
    pb.RECALL_MODE_SIMILARITY: m.RecallMode.similarity,
    pb.RECALL_MODE_SPREADING: m.RecallMode.spreading,
    pb.RECALL_MODE_HYBRID: m.RecallMode.hybrid,
}
RECALL_MODES_OUT = {v.value: k for k, v in RECALL_MODES.items()}
RANK_MODES = {pb.RANK_MODE_COGNITIVE: m.RankMode.cognitive, pb.RANK_MODE_SIMILARITY: m.RankMode.similarity}
FORGET_MODES = {pb.FORGET_MODE_SUPPRESS: m.ForgetMode.suppress, pb.FORGET_MODE_DELETE: m.ForgetMode.delete}
FORGET_MODES_OUT = {v.value: k for k, v in FORGET_MODES.items()}
CONSOLIDATION_OUT = {
    "recent": pb.CONSOLIDATION_STATE_RECENT, "consolidating": pb.CONSOLIDATION_STATE_CONSOLIDATING,
    "consolidated": pb.CONSOLIDATION_STATE_CONSOLIDATED,
}
CATEGORY_OUT = {
    "none": pb.CONFIDENCE_CATEGORY_NONE,
    "low": pb.CONFIDENCE_CATEGORY_LOW,
    "medium": pb.CONFIDENCE_CATEGORY_MEDIUM,
    "high": pb.CONFIDENCE_CATEGORY_HIGH,
    "certain": pb.CONFIDENCE_CATEGORY_CERTAIN,
}
SOURCE_OUT = {"similarity": pb.RECALL_SOURCE_SIMILARITY, "text": pb.RECALL_SOURCE_TEXT,
              "context": pb.RECALL_SOURCE_CONTEXT, "spreading": pb.RECALL_SOURCE_SPREADING}
DURABILITY_OUT = {"fsync": pb.DURABILITY_FSYNC, "buffered": pb.DURABILITY_BUFFERED}
REEMBED_STATES_OUT = {"running": spb.REEMBED_STATE_RUNNING, "idle": spb.REEMBED_STATE_IDLE}
ASSOCIATION_OUT = {"explicit": pb.ASSOCIATION_KIND_EXPLICIT, "auto": pb.ASSOCIATION_KIND_AUTO_LINK,
                   "auto_link": pb.ASSOCIATION_KIND_AUTO_LINK, "temporal": pb.ASSOCIATION_KIND_TEMPORAL}
EVENT_TYPES = {
    pb.EVENT_TYPE_STORED: "stored",
    pb.EVENT_TYPE_RECALLED: "recalled",
    pb.EVENT_TYPE_ACTIVATION: "activation",
    pb.EVENT_TYPE_ASSOCIATION: "association",
    pb.EVENT_TYPE_CONSOLIDATION: "consolidation",
    pb.EVENT_TYPE_FORGOTTEN: "forgotten",
    pb.EVENT_TYPE_DECAY: "decay",
    pb.EVENT_TYPE_SPACE: "space",
    pb.EVENT_TYPE_UPDATED: "updated",
    pb.EVENT_TYPE_EXPIRED: "expired",
}
EVENT_TYPES_OUT = {v: k for k, v in EVENT_TYPES.items()}


# ----------------------------------------------------------------------------- helpers


def parse(model: type[M], data: dict[str, Any], prefix: str) -> M:
    """Validate ``data`` with ``model``; errors name ``prefix.field``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(exc, prefix) from None


def ts_in(msg: Message, name: str) -> datetime | None:
    if not msg.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, name)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # out-of-range seconds/nanos: a client mistake, not INTERNAL
        from ...errors import InvalidInput

        raise InvalidInput(
            f"{name}: {exc}", suggestion="Send a Timestamp between 0001-01-01 and 9999-12-31."
        ) from None


def ts_out(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    fields = ts_fields(value)
    return None if fields is None else timestamp_pb2.Timestamp(**fields)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_fields(value: datetime | None) -> dict[str, int] | None:
    """A Timestamp as the dict a message constructor takes (no Timestamp object to build and copy).

    The same numbers as ``Timestamp.FromDatetime``: whole seconds of the UTC instant, floored
    (``timegm(utctimetuple())``), and the datetime's own microseconds.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    d = value - _EPOCH
    return {"seconds": d.days * 86400 + d.seconds, "nanos": value.microsecond * 1000}


def ts_epoch(value: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(value * 1e9))
    return ts


def struct(data: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if not data:
        return None
    s = struct_pb2.Struct()
    s.update(_jsonable(data))
    return s


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _opt(msg: Message, name: str, out: dict[str, Any], key: str | None = None) -> None:
    if msg.HasField(name):
        out[key or name] = getattr(msg, name)


def _emb(values: Any) -> list[float] | None:
    return list(values) if len(values) else None


# ----------------------------------------------------------------------------- inputs


def memory_input(msg: pb.MemoryInput, prefix: str = "memory") -> m.MemoryInput:
    """The packed float32 embedding is checked once as an array (``vector_from_floats``) and the
    model holds that array; anything wrong takes the ordinary path, so errors are unchanged."""
    data = _memory_fields(msg, embedding=False)
    if len(msg.embedding):
        vec = m.vector_from_floats(msg.embedding)
        if vec is not None:
            done = m.validate_with_vector(data, vec, m.MemoryInput)
            if done is not None:
                return done
        data["embedding"] = list(msg.embedding)
    return parse(m.MemoryInput, data, prefix)


def _memory_fields(msg: pb.MemoryInput | pb.EpisodeInput, embedding: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {"content": msg.content, "tags": list(msg.tags), "metadata": _metadata_in(msg),
                            "auto_link": msg.auto_link}
    if msg.id:
        data["id"] = msg.id
    if embedding and len(msg.embedding):
        data["embedding"] = list(msg.embedding)
    _opt(msg, "confidence", data)
    _opt(msg, "decay_rate", data)
    if msg.memory_type != pb.MEMORY_TYPE_UNSPECIFIED:
        data["memory_type"] = MEMORY_TYPES.get(msg.memory_type, msg.memory_type)
    _opt(msg, "ttl_seconds", data)  # expiry (revision 5)
    expires_at = ts_in(msg, "expires_at")
    if expires_at is not None:
        data["expires_at"] = expires_at
    return data


def batch_items(msgs: Any) -> list[m.MemoryInput | EngramError]:
    """Each item of a RememberBatch parsed alone: its input, or the error that fails only it."""
    out: list[m.MemoryInput | EngramError] = []
    for i, msg in enumerate(msgs):
        try:
            out.append(memory_input(msg, f"memories[{i}]"))
        except EngramError as exc:
            out.append(exc)
    return out


#: UpdateMemory's update_mask paths this server applies, and the value of one named but not set.
UPDATE_MASK_DEFAULTS: dict[str, Any] = {
    "content": "", "embedding": None, "confidence": 0.7, "decay_rate": 0.1, "tags": [],
    "memory_type": m.MemoryType.semantic, "metadata": {}, "typed_metadata": {},
}


def update_input(req: spb.UpdateMemoryRequest) -> tuple[m.MemoryInput | None, m.MemoryPatch | None]:
    """(put, None) for an empty update_mask (create or replace), else (None, patch) of the named fields."""
    from ...errors import InvalidInput

    if not req.memory_id:
        raise InvalidInput("memory_id: required, the id of the memory to create or change",
                           example='memory_id: "m-1", memory: {content: "new text"}')
    if req.memory.id and req.memory.id != req.memory_id:
        raise InvalidInput(f"memory.id {req.memory.id!r} differs from memory_id {req.memory_id!r}",
                           suggestion="Leave memory.id empty, or set it to memory_id.")
    paths = list(req.update_mask.paths)
    if not paths:
        return memory_input(req.memory), None
    unknown = sorted(set(paths) - set(UPDATE_MASK_DEFAULTS))
    if unknown:
        raise InvalidInput(f"update_mask: this server cannot update {', '.join(unknown)}; "
                           f"it updates {', '.join(UPDATE_MASK_DEFAULTS)}",
                           example='update_mask: {paths: ["content", "tags"]}')
    given = _memory_fields(req.memory)
    if "embedding" in paths and "embedding" not in given:
        raise InvalidInput("memory.embedding: named in update_mask but empty; send the new vector",
                           suggestion="Drop \"embedding\" from update_mask to keep the stored vector.")
    data: dict[str, Any] = {}
    for path in paths:
        key = "metadata" if path == "typed_metadata" else path
        data[key] = given.get(key, UPDATE_MASK_DEFAULTS[path])
    return None, parse(m.MemoryPatch, data, "memory")
#: Integral doubles within this bound arrive as integers (google.protobuf.Value has only doubles),
#: so a 3 sent over gRPC reads back as 3, not 3.0, over REST. Numbers compare as one class anyway.
_EXACT_INT = 2**53


def value_in(value: struct_pb2.Value, where: str) -> Any:
    """A google.protobuf.Value holding a metadata scalar, as Python; lists and structs are refused."""
    which = value.WhichOneof("kind")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "number_value":
        x = value.number_value
        return int(x) if x.is_integer() and abs(x) <= _EXACT_INT else x
    if which == "null_value" or which is None:
        return None
    from ...errors import InvalidInput

    raise InvalidInput(f"{where}: got a {which.replace('_value', '')}; values must be a string, number, "
                       "bool or null (nested lists and structs are not allowed)",
                       example='typed_metadata { key: "priority" value { number_value: 2 } }')


def _metadata_in(msg: pb.MemoryInput | pb.EpisodeInput) -> dict[str, Any]:
    """``metadata`` (strings) and ``typed_metadata`` (typed values) as one map; a key in both is an error."""
    out: dict[str, Any] = dict(msg.metadata)
    prefix = "episode" if isinstance(msg, pb.EpisodeInput) else "memory"
    for key, value in msg.typed_metadata.items():
        if key in out:
            from ...errors import InvalidInput

            raise InvalidInput(f"{prefix}.typed_metadata: key {key[:40]!r} is also in {prefix}.metadata; "
                               "send each key in one of the two maps")
        out[key] = value_in(value, f"{prefix}.typed_metadata.{key[:40]}")
    return out


def metadata_string(value: Any) -> str:
    """How a typed value reads in the string map ``Memory.metadata`` (for clients before revision 5):
    a string as itself, anything else as its JSON text (``2``, ``2.5``, ``true``, ``null``)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:  # json.dumps writes an int as int.__repr__, a finite float as float.__repr__
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return value if isinstance(value, str) else json.dumps(value)


def filter_in(msg: Message, name: str = "filter") -> dict[str, Any] | None:
    """A google.protobuf.Struct filter field as a dict (numbers arrive as doubles); unset: None."""
    if not msg.HasField(name):
        return None
    try:
        data = json_format.MessageToDict(getattr(msg, name))
    except (ValueError, json_format.Error) as exc:  # e.g. a NaN number: the client's mistake
        from ...errors import InvalidInput

        raise InvalidInput(f"{name}: cannot be read as JSON ({exc})") from None
    return data if isinstance(data, dict) else None


def episode_input(msg: pb.EpisodeInput, prefix: str = "episode") -> m.EpisodeInput:
    data = _memory_fields(msg)
    when = ts_in(msg, "when")
    if when is not None:
        data["when"] = when
    data["what"] = msg.what
    for name in ("where_location", "why", "how"):
        if getattr(msg, name):
            data[name] = getattr(msg, name)
    data["who"] = list(msg.who)
    _opt(msg, "emotional_valence", data)
    _opt(msg, "importance", data)
    return parse(m.EpisodeInput, data, prefix)


def cue(msg: pb.Cue, prefix: str = "cue") -> m.Cue:
    data: dict[str, Any] = {"participants": list(msg.participants), "tags": list(msg.tags),
                            "trace_activation": msg.trace_activation}
    if len(msg.embedding):
        data["embedding"] = list(msg.embedding)
    if msg.query:
        data["query"] = msg.query
    if msg.location:
        data["location"] = msg.location
    for name in ("time_start", "time_end"):
        value = ts_in(msg, name)
        if value is not None:
            data[name] = value
    if msg.memory_type != pb.MEMORY_TYPE_UNSPECIFIED:
        data["memory_type"] = MEMORY_TYPES.get(msg.memory_type, msg.memory_type)
    if msg.mode != pb.RECALL_MODE_UNSPECIFIED:
        data["mode"] = RECALL_MODES.get(msg.mode, msg.mode)
    if msg.rank != pb.RANK_MODE_UNSPECIFIED:
        # An unknown number stays a number, so the Cue model rejects it naming the allowed values.
        data["rank"] = RANK_MODES.get(msg.rank, msg.rank)
    if msg.wait_for_embeddings:
        data["wait_for_embeddings"] = True
    _opt(msg, "threshold", data)
    _opt(msg, "max_results", data)
    _opt(msg, "max_hops", data)
    flt = filter_in(msg)
    if flt:
        data["filter"] = flt
    return parse(m.Cue, data, prefix)


def embedder_choice(msg: spb.CreateSpaceRequest | spb.ReembedSpaceRequest) -> m.EmbedderChoice | None:
    """The requested embedder, or None (the server's default) when the field is not set."""
    if not msg.HasField("embedder"):
        return None
    data: dict[str, Any] = {"provider": msg.embedder.provider}
    if msg.embedder.model:
        data["model"] = msg.embedder.model
    return parse(m.EmbedderChoice, data, "embedder")


def forget_mode(value: int) -> m.ForgetMode:
    if value == pb.FORGET_MODE_UNSPECIFIED:
        return m.ForgetMode.suppress
    mode: m.ForgetMode | None = FORGET_MODES.get(value)  # type: ignore[call-overload]
    if mode is None:
        from ...errors import InvalidInput

        raise InvalidInput(
            f"mode: unknown ForgetMode value {value}; expected FORGET_MODE_SUPPRESS or FORGET_MODE_DELETE"
        )
    return mode


def recognize_input(msg: spb.RecognizeRequest) -> m.RecognizeInput:
    data: dict[str, Any] = {}
    if msg.content:
        data["content"] = msg.content
    if len(msg.embedding):
        data["embedding"] = list(msg.embedding)
    _opt(msg, "threshold", data)
    _opt(msg, "max_matches", data)
    return parse(m.RecognizeInput, data, "")


def reminisce_query(msg: spb.ReminisceRequest) -> m.ReminisceQuery:
    data: dict[str, Any] = {}
    if msg.topic:
        data["topic"] = msg.topic
    if len(msg.embedding):
        data["embedding"] = list(msg.embedding)
    for name in ("time_start", "time_end"):
        value = ts_in(msg, name)
        if value is not None:
            data[name] = value
    if msg.HasField("max_results"):
        data["limit"] = msg.max_results
    return parse(m.ReminisceQuery, data, "")


def consolidate_input(msg: spb.ConsolidateRequest | spb.DreamRequest) -> m.ConsolidateInput:
    data: dict[str, Any] = {}
    _opt(msg, "similarity_threshold", data, "similarity")
    _opt(msg, "min_cluster_size", data, "min_cluster")
    return parse(m.ConsolidateInput, data, "")


def complete_input(msg: spb.CompleteRequest) -> m.CompleteInput:
    data: dict[str, Any] = {"who": list(msg.who)}
    what = msg.what or msg.content
    if what:
        data["what"] = what
    for name in ("where_location", "why", "how"):
        if getattr(msg, name):
            data[name] = getattr(msg, name)
    when = ts_in(msg, "when")
    if when is not None:
        data["when"] = when
    if len(msg.embedding):
        data["embedding"] = list(msg.embedding)
    _opt(msg, "threshold", data, "min_confidence")
    return parse(m.CompleteInput, data, "")


def associate_input(msg: spb.AssociateRequest) -> m.AssociateInput:
    data: dict[str, Any] = {"source_id": msg.source_id, "target_id": msg.target_id}
    _opt(msg, "strength", data)
    return parse(m.AssociateInput, data, "")


def event_types(values: Any, prefix: str = "event_types") -> list[str] | None:
    if not len(values):
        return None
    out = []
    for v in values:
        name = EVENT_TYPES.get(v)
        if name is None:
            from ...errors import InvalidInput

            raise InvalidInput(f"{prefix}: EVENT_TYPE_UNSPECIFIED and unknown values ({v}) are not allowed",
                               example="event_types: [EVENT_TYPE_STORED, EVENT_TYPE_FORGOTTEN]")
        out.append(name)
    return out


# ----------------------------------------------------------------------------- results


def confidence(c: m.Confidence) -> pb.Confidence:
    return pb.Confidence(
        value=c.value,
        category=CATEGORY_OUT.get(c.category.value, pb.CONFIDENCE_CATEGORY_UNSPECIFIED),
        reasoning=c.reasoning,
    )


def receipt(r: m.StoreReceipt) -> pb.StoreReceipt:
    return pb.StoreReceipt(
        memory_id=r.memory_id,
        storage_confidence=confidence(r.storage_confidence),
        consolidation_state=CONSOLIDATION_OUT.get(
            r.consolidation_state.value, pb.CONSOLIDATION_STATE_UNSPECIFIED
        ),
        observed_at=ts_out(r.observed_at),
        stored_at=ts_out(r.stored_at),
        auto_links=[pb.AutoLink(target_id=a.target_id, strength=a.strength) for a in r.auto_links],
        lsn=r.lsn,
        durability=DURABILITY_OUT.get(r.durability, pb.DURABILITY_UNSPECIFIED),
        memory_space_id=r.memory_space_id,
    )


def receipt_fields(r: m.ReceiptParts) -> dict[str, Any]:
    """:func:`receipt` of ``r.receipt()``, as the dict a message constructor takes, built from the
    plain values without the pydantic models in between (StreamingRemember's per-message path)."""
    value, category = m.confidence_value(r.confidence)
    return {
        "memory_id": r.memory_id,
        "storage_confidence": {
            "value": value, "reasoning": r.reasoning,
            "category": CATEGORY_OUT.get(category.value, pb.CONFIDENCE_CATEGORY_UNSPECIFIED),
        },
        "consolidation_state": pb.CONSOLIDATION_STATE_RECENT,
        "observed_at": ts_fields(m.from_epoch(r.observed_at)),
        "stored_at": ts_fields(m.from_epoch(r.stored_at)),
        "auto_links": [{"target_id": t, "strength": s} for t, s in r.auto_links],
        "lsn": r.lsn,
        "durability": DURABILITY_OUT.get(r.durability, pb.DURABILITY_UNSPECIFIED),
        "memory_space_id": r.memory_space_id,
    }


def batch_response(outcome: m.BatchOutcome) -> spb.RememberBatchResponse:
    from .errors import map_error

    results = []
    for i, r in enumerate(outcome.results):
        if isinstance(r, m.StoreReceipt):
            results.append(pb.BatchItemResult(index=i, receipt=receipt(r)))
        else:
            results.append(pb.BatchItemResult(index=i, error=map_error(r).detail()))
    return spb.RememberBatchResponse(results=results, stored=outcome.stored,
                                     memory_space_id=outcome.memory_space_id)


def memory(mem: m.Memory) -> pb.Memory:
    return pb.Memory(**memory_fields(mem))


def memory_fields(mem: m.Memory) -> dict[str, Any]:
    """A ``Memory`` as constructor keywords, nested messages as dicts.

    Built this way (not as messages handed to a parent's constructor) because each message
    passed to a constructor is copied, and each ``Timestamp`` built through ``FromDatetime``
    costs ~2 us: a 10-result recall response took ~0.31 ms to convert and serialise, now ~0.21 ms
    (bench/notes/grpc_convert.py). The bytes are the same (tests/unit/test_grpc_recall_convert.py).
    """
    meta = mem.metadata
    out: dict[str, Any] = {
        "id": mem.id, "content": mem.content, "confidence": mem.confidence,
        "created_at": ts_fields(mem.created_at), "last_access": ts_fields(mem.last_access),
        "access_count": mem.access_count, "activation": mem.activation, "decay_rate": mem.decay_rate,
        "tags": mem.tags,
        "memory_type": MEMORY_TYPES_OUT.get(mem.memory_type.value, pb.MEMORY_TYPE_UNSPECIFIED),
        "suppressed": mem.suppressed, "lsn": mem.lsn,
    }
    if mem.embedding:
        out["embedding"] = mem.embedding
    if meta:
        out["metadata"] = {k: metadata_string(v) for k, v in meta.items()}
        out["typed_metadata"] = {k: _value_fields(v) for k, v in meta.items()}
    if mem.expires_at is not None:
        out["expires_at"] = ts_fields(mem.expires_at)
    if mem.when is not None:
        out["episode"] = {
            "when": ts_fields(mem.when),
            "what": mem.what or "",
            "where_location": mem.where_location or "",
            "who": mem.who or (),
            "why": mem.why or "",
            "how": mem.how or "",
            "emotional_valence": mem.emotional_valence or 0.0,
            "importance": mem.importance or 0.0,
            "consolidation_state": CONSOLIDATION_OUT.get(
                mem.consolidation_state.value if mem.consolidation_state else "",
                pb.CONSOLIDATION_STATE_UNSPECIFIED,
            ),
        }
    return out


def _value_out(value: Any) -> struct_pb2.Value:
    try:
        return scalar_value(value)
    except TypeError:  # stored metadata is validated scalars; anything else reads as its text
        return scalar_value(str(value))


def _value_fields(value: Any) -> dict[str, Any]:
    """``_value_out`` as a constructor dict (see ``memory_fields``)."""
    if value is None:
        return {"null_value": struct_pb2.NULL_VALUE}
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, (int, float)):
        return {"number_value": float(value)}
    return {"string_value": value if isinstance(value, str) else str(value)}


def _confidence_fields(c: m.Confidence) -> dict[str, Any]:
    return {"value": c.value,
            "category": CATEGORY_OUT.get(c.category.value, pb.CONFIDENCE_CATEGORY_UNSPECIFIED),
            "reasoning": c.reasoning}


def recall_item(it: m.RecallItem) -> pb.RecallItem:
    fields: dict[str, Any] = {  # nested messages as dicts (see memory_fields)
        "memory": memory_fields(it.memory), "score": it.score, "similarity": it.similarity,
        "text_score": it.text_score, "activation": it.activation, "recency": it.recency,
        "confidence": _confidence_fields(it.confidence),
        "source": SOURCE_OUT.get(it.source, pb.RECALL_SOURCE_UNSPECIFIED),
        "activation_path": [{"memory_id": s.memory_id, "activation": s.activation}
                            for s in it.activation_path or ()],
        "signals": it.signals,
    }
    return pb.RecallItem(**fields)


def recall_result(r: m.RecallResult) -> pb.RecallResult:
    meta = dict(r.metadata)
    timing = meta.pop("timing_ms", None)
    timing_ms = (
        dict(timing) if isinstance(timing, dict) else ({"total": float(timing)} if timing is not None else {})
    )
    mode = meta.pop("mode", None)
    candidates = meta.pop("candidates", 0)
    # Each item is converted once; the flat ``results`` (rank order) and the buckets share them.
    converted = {i.memory.id: recall_item(i) for i in r.results}

    def items(bucket: list[m.RecallItem]) -> list[pb.RecallItem]:
        return [converted[i.memory.id] if i.memory.id in converted else recall_item(i) for i in bucket]

    return pb.RecallResult(
        memories=pb.RecallBuckets(
            vivid=items(r.memories.vivid),
            associated=items(r.memories.associated),
            reconstructed=items(r.memories.reconstructed),
        ),
        results=list(converted.values()),
        recall_confidence=confidence(r.recall_confidence),
        confidence_interval=pb.ConfidenceInterval(
            lower=r.confidence_interval.lower,
            point=r.confidence_interval.point,
            upper=r.confidence_interval.upper,
        ),
        metadata=pb.RecallMetadata(
            timing_ms=timing_ms,
            candidates=int(candidates or 0),
            mode=RECALL_MODES_OUT.get(str(mode), pb.RECALL_MODE_UNSPECIFIED),
            extra=struct(meta),
        ),
        memory_space_id=r.memory_space_id,
    )


def forget_response(r: m.ForgetReceipt) -> spb.ForgetResponse:
    return spb.ForgetResponse(
        memory_id=r.memory_id,
        mode=FORGET_MODES_OUT.get(r.mode.value, pb.FORGET_MODE_UNSPECIFIED),
        lsn=r.lsn,
        removed_associations=r.removed_associations,
        memory_space_id=r.memory_space_id,
    )


def embedder_info(e: m.EmbedderInfo) -> pb.EmbedderInfo:
    return pb.EmbedderInfo(provider=e.provider, model=e.model, dimension=e.dimension)


def space_descriptor(d: m.SpaceDescriptor) -> pb.SpaceDescriptor:
    out = pb.SpaceDescriptor(id=d.id, created_at=ts_out(d.created_at), memory_count=d.memory_count,
                             dimension=d.dimension, last_lsn=d.last_lsn, healthy=d.healthy, loaded=d.loaded,
                             reason=d.reason or "", embedding_backlog=d.embedding_backlog,
                             default_ttl_seconds=d.default_ttl_seconds)
    if d.embedder is not None:
        out.embedder.CopyFrom(embedder_info(d.embedder))
    if d.stats:
        out.stats.CopyFrom(_stats(d.stats))
    return out


def _stats(s: dict[str, Any]) -> pb.SpaceStatistics:
    def n(*keys: str) -> int:
        for k in keys:
            v = s.get(k)
            if isinstance(v, (int, float)):
                return int(v)
        return 0

    by_type = s.get("by_type") or s.get("memories_by_type") or {}
    return pb.SpaceStatistics(
        memory_count=n("memories", "memory_count"),
        memories_by_type={str(k): int(v) for k, v in by_type.items() if isinstance(v, (int, float))},
        episode_count=n("episodes", "episode_count"),
        association_count=n("associations", "association_count"),
        belief_count=n("beliefs", "belief_count"),
        suppressed_count=n("suppressed", "suppressed_count"),
        mean_activation=float(s.get("average_activation") or s.get("mean_activation") or 0.0),
        pending_consolidation=n("pending_consolidation"),
        disk_bytes=n("storage_bytes", "disk_bytes"),
        subscriber_count=n("subscribers", "subscriber_count"),
    )


def introspect_response(st: m.SpaceStats, durability: str, version: str) -> spb.IntrospectResponse:
    stats = st.model_dump()
    desc = pb.SpaceDescriptor(id=st.memory_space_id, memory_count=st.memories, dimension=st.dimension,
                              last_lsn=st.last_lsn, healthy=st.healthy, loaded=True, stats=_stats(stats),
                              embedding_backlog=st.embedding_backlog)
    if st.embedder is not None:
        desc.embedder.CopyFrom(embedder_info(st.embedder))
    return spb.IntrospectResponse(
        space=desc,
        durability=DURABILITY_OUT.get(durability, pb.DURABILITY_UNSPECIFIED),
        server_version=version,
        memory_space_id=st.memory_space_id,
    )


def reembed_status(st: m.ReembedStatus) -> spb.ReembedStatus:
    out = spb.ReembedStatus(state=REEMBED_STATES_OUT.get(st.state, spb.REEMBED_STATE_UNSPECIFIED),
                            embedder=embedder_info(st.embedder), done=st.done, total=st.total,
                            memory_space_id=st.memory_space_id)
    if st.target is not None:
        out.target.CopyFrom(embedder_info(st.target))
    return out


def association(a: m.Association) -> pb.Association:
    return pb.Association(source_id=a.source_id, target_id=a.target_id, strength=a.strength,
                          kind=ASSOCIATION_OUT.get(a.kind, pb.ASSOCIATION_KIND_UNSPECIFIED))


def recognize_response(r: m.Recognition) -> spb.RecognizeResponse:
    return spb.RecognizeResponse(
        recognized=r.recognized, familiarity=r.familiarity, confidence=confidence(r.confidence),
        matches=[pb.RecallItem(memory=pb.Memory(id=x.memory_id, content=x.content), score=x.similarity,
                               similarity=x.similarity) for x in r.matches],
        memory_space_id=r.memory_space_id,
    )


def belief(b: m.Belief) -> pb.Belief:
    return pb.Belief(
        id=b.id,
        content=b.content,
        centroid=b.centroid or (),
        strength=b.strength,
        confidence=confidence(m.confidence_from(b.schema_confidence, "schema confidence of the cluster")),
        citations=[
            pb.Citation(episode_id=c.episode_id, weight=c.similarity, excerpt=c.preview) for c in b.citations
        ],
        created_at=ts_out(b.created_at),
    )


def consolidation_run(r: m.ConsolidationReport) -> pb.ConsolidationRun:
    return pb.ConsolidationRun(consolidation_id=r.run_id, beliefs=[belief(b) for b in r.beliefs],
                               episodes_considered=r.episodes_considered,
                               episodes_consolidated=r.episodes_consolidated, lsn=r.lsn,
                               episodes_skipped=r.episodes_skipped, memory_space_id=r.memory_space_id)


def dream_response(step: m.DreamStep, sequence: int, space: str) -> spb.DreamResponse:
    out = spb.DreamResponse(sequence=sequence, memory_space_id=space)
    if step.kind == "replay":
        out.replay.CopyFrom(spb.DreamReplay(memory_ids=step.memory_ids, strength=step.progress))
    elif step.kind == "insight" and step.belief is not None:
        out.insight.CopyFrom(spb.DreamInsight(belief=belief(step.belief), description=step.message))
    elif step.kind == "done":
        # The run's report (beliefs, counts, LSN), the same as Consolidate answers; a run
        # cancelled because the space closed wrote nothing and reports nothing.
        out.summary.CopyFrom(consolidation_run(step.report) if step.report is not None
                             else pb.ConsolidationRun(memory_space_id=space))
    else:
        out.progress.CopyFrom(spb.DreamProgress(phase=step.message, fraction=step.progress))
    return out


def complete_response(c: m.Completion) -> spb.CompleteResponse:
    best = c.best
    fields = []
    for f in best.fields:
        cf = pb.CompletedField(
            field=f.field,
            confidence=confidence(m.confidence_from(f.confidence, f.source)),
            source_memory_ids=f.from_memory_ids,
            source={
                "given": pb.COMPLETION_SOURCE_GIVEN,
                "recalled": pb.COMPLETION_SOURCE_RECALLED,
                "reconstructed": pb.COMPLETION_SOURCE_RECONSTRUCTED,
            }.get(f.source, pb.COMPLETION_SOURCE_UNSPECIFIED),
        )
        if isinstance(f.value, list):
            cf.values.extend(str(v) for v in f.value)
        elif f.value is not None:
            cf.value = f.value.isoformat() if isinstance(f.value, datetime) else str(f.value)
        fields.append(cf)
    emb = best.episode.get("embedding") if isinstance(best.episode, dict) else None
    return spb.CompleteResponse(fields=fields, embedding=emb or (), confidence=confidence(best.confidence),
                                source_memory_ids=best.source_memory_ids, memory_space_id=c.memory_space_id)


def event(e: Event) -> pb.Event:
    return pb.Event(
        type=EVENT_TYPES_OUT.get(e.type, pb.EVENT_TYPE_UNSPECIFIED),
        lsn=e.lsn,
        timestamp=ts_epoch(e.timestamp),
        memory_id=str(e.data.get("memory_id") or ""),
        data=struct(e.data),
        memory_space_id=e.memory_space_id,
    )


def lag_notice(lag: Lagged) -> pb.LagNotice:
    return pb.LagNotice(missed=lag.missed, last_lsn=lag.last_lsn, memory_space_id=lag.memory_space_id)


def reset_notice(reset: Reset) -> pb.ResetNotice:
    return pb.ResetNotice(since_lsn=reset.since_lsn, oldest_lsn=reset.oldest_lsn, last_lsn=reset.last_lsn,
                          reason=reset.reason, memory_space_id=reset.memory_space_id)


def heartbeat(space: str, last_lsn: int) -> pb.Heartbeat:
    return pb.Heartbeat(server_time=ts_epoch(datetime.now(UTC).timestamp()), last_lsn=last_lsn,
                        memory_space_id=space)


def api_key(record: Any) -> spb.ApiKey:
    """A ``KeyRecord`` of ``engram.auth`` as listed: never the token or its hash."""
    spaces = getattr(record, "spaces", None)
    msg = spb.ApiKey(key_id=record.key_id, name=record.name, role=str(record.role),
                     spaces=sorted(spaces or ()), all_spaces=spaces is None)
    for field in ("expires_at", "created_at", "revoked_at"):
        value = getattr(record, field, None)
        if value is not None:
            getattr(msg, field).CopyFrom(ts_epoch(float(value)) if isinstance(value, (int, float))
                                         else ts_out(value))
    return msg
