"""The data Engram speaks: inputs (validated once, for every transport) and results.

Inputs are pydantic models with ``extra="forbid"`` so REST bodies, gRPC
messages (converted to dicts) and in-process callers go through exactly the
same validation. Results are pydantic models too, so REST gets an OpenAPI
schema for free and gRPC maps them field by field.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar, cast

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)

from . import filters

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
#: A vector component: an int or a float, never a boolean or a numeric string (pydantic's lax
#: mode would read ``true`` as 1.0 and ``"0.5"`` as 0.5). Checked in Rust, so it costs nothing.
Component = Annotated[float, Strict()]

#: Numeric times are Unix seconds (UTC) in this range: from 1970-01-01T00:00:01Z to
#: 9999-12-31T23:59:59Z. Fractions are fine (``time.time()`` works); 0, negatives, values below
#: one second (a confidence sent in the wrong field) and milliseconds are rejected.
EPOCH_MIN = 1.0
EPOCH_MAX = 253_402_300_799.0
EPOCH_RULE = (
    "a number here is Unix seconds (UTC) from 1 (1970-01-01T00:00:01Z) to 253402300799 "
    "(9999-12-31T23:59:59Z), not milliseconds; or send an ISO-8601 string such as 2026-11-01T09:00:00Z"
)


def _instant(value: Any) -> Any:
    """Numbers (and numeric strings, as in query parameters) become UTC datetimes if plausible."""
    if isinstance(value, bool):
        raise ValueError("a time must be an ISO-8601 string or Unix seconds, not a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value  # ISO-8601 (or garbage): pydantic's datetime parsing decides
    else:
        return value
    if not (math.isfinite(number) and EPOCH_MIN <= number <= EPOCH_MAX):
        raise ValueError(f"{value!r} is not a plausible time: {EPOCH_RULE}")
    return datetime.fromtimestamp(number, tz=UTC)


#: A point in time given by a client: ISO-8601, or Unix seconds within ``EPOCH_MIN..EPOCH_MAX``.
Instant = Annotated[datetime, BeforeValidator(_instant)]

EMBEDDING_B64_RULE = (
    "an embedding given as a string is base64 (RFC 4648, padded) of little-endian float32 values, "
    "4 bytes each, as OpenAI's encoding_format \"base64\" returns it"
)


def embedding_from_wire(value: Any) -> Any:
    """A string ``embedding`` is the vector as base64 of little-endian float32 (SPEC §9, docs/rest.md).

    Decoding it costs one C call instead of parsing one JSON number per component (the
    dominant cost of a REST remember with a vector). The decoded values go on through the
    same checks as a list (finite, not empty, not all zeros; the length against the space's
    dimension later), so both spellings of a vector are one input to the rest of Engram.
    """
    if not isinstance(value, str):
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"embedding string is not valid base64: {EMBEDDING_B64_RULE}") from None
    if len(raw) % 4:
        raise ValueError(f"embedding string decodes to {len(raw)} bytes, not a multiple of 4: "
                         f"{EMBEDDING_B64_RULE}")
    # Finite, not empty, not all zeros: checked once, for both spellings (_check_embedding).
    return np.frombuffer(raw, dtype="<f4").astype(np.float64).tolist()


MI = TypeVar("MI", bound="MemoryInput")

#: Validation-context key of a vector already decoded by :func:`validate_memory_input`.
_DECODED_VECTOR = "engram.decoded_vector"


def vector_from_base64(value: str) -> np.ndarray | None:
    """A base64 embedding as ONE float32 array (no Python float per component), or ``None``
    when it breaks any rule of an embedding (bad base64, a length that is not whole float32
    values, empty, NaN/Infinity, all zeros): the caller then validates the usual way, which
    names the problem exactly as for every other input."""
    return vectors_from_base64([value])[0]


def vectors_from_base64(values: list[Any]) -> list[np.ndarray | None]:
    """:func:`vector_from_base64` of many values at once (a batch): per value its float32 array
    (a read-only row of one matrix per vector length) or ``None``; a non-string is ``None``.
    The checks run once per matrix, not once per vector."""
    out: list[np.ndarray | None] = [None] * len(values)
    by_len: dict[int, list[tuple[int, bytes]]] = {}
    for i, value in enumerate(values):
        if not isinstance(value, str):
            continue
        try:
            # strict_mode: only the alphabet, correct padding, nothing after it (as
            # b64decode(validate=True), without its regex pass over the text).
            raw = binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            continue
        if raw and not len(raw) % 4:
            by_len.setdefault(len(raw), []).append((i, raw))
    for size, group in by_len.items():
        mat = np.frombuffer(b"".join(raw for _, raw in group), dtype="<f4").reshape(len(group), size // 4)
        # float32 values are within +-FLOAT32_MAX exactly when finite.
        good = np.isfinite(mat).all(axis=1) & mat.any(axis=1)
        for row, ((i, _), ok) in enumerate(zip(group, good.tolist(), strict=True)):
            if ok:
                out[i] = mat[row]
    return out


def vector_from_floats(values: Any) -> np.ndarray | None:
    """Float32 values already (gRPC's packed ``repeated float``) as ONE float32 array, or ``None``
    when they break a rule of an embedding (empty, NaN/Infinity, all zeros): the caller then
    validates the usual way, which names the problem. No Python float is validated one by one."""
    with np.errstate(over="ignore"):  # a value beyond float32 becomes Infinity, refused below
        vec = np.array(values, dtype=np.float32)
    if vec.ndim != 1 or not len(vec) or not np.isfinite(vec).all() or not vec.any():
        return None
    return vec


def validate_with_vector(raw: dict[str, Any], vec: np.ndarray, model: type[MI]) -> MI | None:
    """``model.model_validate(raw)`` with ``vec`` (a checked float32 vector) as its embedding, or
    ``None`` if the other fields do not validate (the caller then takes the ordinary path, which
    reports every problem exactly as always). ``raw`` must not hold an ``embedding``."""
    try:
        return model.model_validate(raw, context={_DECODED_VECTOR: vec})
    except ValidationError:
        return None


def validate_memory_input(raw: Any, cls: type[MI] | None = None, *, vector: Any = "") -> MI:
    """``cls.model_validate(raw)`` (MemoryInput by default), cheaper for a base64 embedding.

    The write path's fast lane (REST remember and batch): a valid base64 vector is decoded
    once into a float32 array, which the model then holds as its ``embedding`` (a sequence
    of the same values the list spelling would give), and the other fields are validated as
    always. Anything wrong anywhere sends the whole input through plain ``model_validate``,
    so errors (and what is accepted) are exactly those of the ordinary path. ``vector``: the
    embedding already decoded by :func:`vectors_from_base64` (a batch decodes all at once).
    """
    model = cast(type[MI], MemoryInput if cls is None else cls)
    emb = raw.get("embedding") if isinstance(raw, dict) else None
    if isinstance(emb, str):
        vec = vector_from_base64(emb) if isinstance(vector, str) else vector
        if vec is not None:
            done = validate_with_vector({k: v for k, v in raw.items() if k != "embedding"}, vec, model)
            if done is not None:
                return done
            # else the ordinary path below reports every problem, as it always does
    return model.model_validate(raw)


def _take_decoded_vector(item: MemoryInput, info: ValidationInfo) -> None:
    """Give ``item`` the vector :func:`validate_memory_input` decoded (before the checks that
    need to know whether there is an embedding)."""
    ctx = info.context
    if ctx:
        vec = ctx.get(_DECODED_VECTOR)
        if vec is not None:
            item.embedding = vec  # a float32 array: a sequence of floats, as the list would be


def embedding_to_wire(values: Any) -> str:
    """The base64 little-endian float32 spelling of a vector (what clients send to save bytes)."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


#: A vector: a JSON array of numbers, or (REST) a string of base64 little-endian float32.
Embedding = Annotated[
    list[Component],
    BeforeValidator(embedding_from_wire),
    WithJsonSchema({
        "anyOf": [
            {"type": "array", "items": {"type": "number"}},
            {"type": "string", "contentEncoding": "base64",
             "description": "base64 of little-endian float32 values (4 bytes each)"},
        ],
    }),
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


class MemoryType(str, Enum):
    episodic = "episodic"
    semantic = "semantic"
    procedural = "procedural"
    working = "working"


class ConsolidationState(str, Enum):
    recent = "recent"
    consolidating = "consolidating"
    consolidated = "consolidated"


class RecallMode(str, Enum):
    similarity = "similarity"
    spreading = "spreading"
    hybrid = "hybrid"


class RankMode(str, Enum):
    cognitive = "cognitive"  # fused text + meaning + context + activation + recency (the default)
    similarity = "similarity"  # pure cosine order against the query embedding (float32-exact)


class ForgetMode(str, Enum):
    suppress = "suppress"
    delete = "delete"


class ConfidenceCategory(str, Enum):
    none = "none"
    low = "low"
    medium = "medium"
    high = "high"
    certain = "certain"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1_000_000)


FLOAT32_MAX = 3.4028234663852886e38


def _check_embedding(v: list[float] | None) -> list[float] | None:
    if v is None:
        return v
    if len(v) == 0:
        raise ValueError("embedding must not be empty; omit it to store text only")
    # One vectorised pass instead of a Python loop per value (~2x cheaper at 768-d,
    # on every write of every transport). ``v`` holds Python floats (pydantic has
    # validated each), so float64 holds them exactly. ``not |x| <= MAX`` is true for
    # NaN, +-Infinity and values beyond float32 alike; the *first* such value then
    # picks the message, exactly as the per-value loop did.
    arr = np.asarray(v, dtype=np.float64)
    bad = ~(np.abs(arr) <= FLOAT32_MAX)
    if bad.any():
        x = v[int(bad.argmax())]
        if not math.isfinite(x):
            raise ValueError("embedding values must be finite numbers (no NaN or Infinity)")
        # Stored as float32: a larger value would silently become Infinity (found by fuzzing).
        raise ValueError(f"embedding values must fit in 32-bit floats (|x| <= {FLOAT32_MAX:.6e}); got {x!r}")
    if not arr.any():
        raise ValueError("embedding must not be all zeros (cosine similarity is undefined)")
    return v


MemoryId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
Tag = Annotated[str, Field(min_length=1, max_length=128)]

# -- typed metadata and filters (SPEC §11 "Metadata") --------------------------------------
#: At most this many metadata entries per memory.
METADATA_MAX_ENTRIES = 64
MetaScalar = str | int | float | bool | None


def _metadata(value: Any) -> Any:
    """Metadata: an object of string keys and scalar values (string, number, boolean, null).

    Checked here, once, for every transport; nested objects and arrays are refused naming
    their key. The value rules are the filter operands' (``filters.check_scalar``), so every
    stored value can be filtered on exactly.
    """
    if not isinstance(value, dict):
        return value  # pydantic says "a valid dictionary"
    if len(value) > METADATA_MAX_ENTRIES:
        raise ValueError(f"metadata has {len(value)} entries; at most {METADATA_MAX_ENTRIES} are allowed")
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError("metadata keys must be strings")
        filters.check_text(key, f"metadata key {key[:40]!r}", filters.MAX_KEY_CHARS)
        filters.check_scalar(item, f"metadata.{key}")
    return value


Metadata = Annotated[dict[str, MetaScalar], BeforeValidator(_metadata)]


def _filter(value: Any) -> Any:
    """A metadata filter (an object, or its JSON text): checked against ``core.filters``."""
    if isinstance(value, str):
        value = filters.decode(value)
    filters.parse(value)
    return value


Filter = Annotated[dict[str, Any] | None, BeforeValidator(_filter)]
FILTER_DESCRIPTION = (
    'Metadata filter: {"key": value} equality, or operators $eq $ne $in $nin $gt $gte $lt $lte '
    "$exists, combined with $and / $or (docs/rest.md \"Metadata filters\")."
)


class MemoryInput(_Input):
    """What ``remember`` accepts."""

    id: MemoryId | None = Field(None, description="Client-chosen id; generated if omitted.")
    content: str = Field("", description="Text of the memory; may be empty if an embedding is given.")
    embedding: Embedding | None = Field(
        None, description="Float vector; its length must match the space's dimension."
    )
    confidence: Unit = 0.7
    decay_rate: Annotated[float, Field(ge=0.0, le=10.0)] = 0.1
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    memory_type: MemoryType = MemoryType.semantic
    metadata: Metadata = Field(
        default_factory=dict,
        description="Up to 64 entries of string keys and scalar values (string, number, boolean, null).",
    )
    auto_link: bool = Field(False, description="Link to near neighbours above the auto-link threshold.")
    memory_space_id: str | None = Field(None, description="Target space (REST body source; see SPEC §2).")
    # -- expiry (SPEC §11; core.expiry) --
    ttl_seconds: Annotated[float, Field(gt=0.0, le=1e10)] | None = Field(
        None, description="Expire this many seconds after the store (> 0). Not with expires_at.")
    expires_at: Instant | None = Field(
        None,
        description="Expire at this time (ISO-8601 or Unix seconds; in the future). Not with ttl_seconds.")

    @field_validator("embedding")
    @classmethod
    def _v_emb(cls, v: list[float] | None) -> list[float] | None:
        return _check_embedding(v)

    @model_validator(mode="after")
    def _content_or_embedding(self, info: ValidationInfo) -> MemoryInput:
        _take_decoded_vector(self, info)
        if not self.content and self.embedding is None:
            raise ValueError("a memory needs content, an embedding, or both")
        _one_expiry(self)
        return self


class EpisodeInput(MemoryInput):
    """What ``experience`` accepts: a memory with episodic context."""

    memory_type: MemoryType = MemoryType.episodic
    when: Instant = Field(..., description="When it happened: ISO-8601, or Unix seconds (1 to 253402300799).")
    what: str = ""
    where_location: str | None = Field(None, max_length=1024)
    who: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=256)
    why: str | None = Field(None, max_length=4096)
    how: str | None = Field(None, max_length=4096)
    emotional_valence: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
    importance: Unit = 0.5

    @model_validator(mode="after")
    def _content_or_embedding(self, info: ValidationInfo) -> EpisodeInput:
        _take_decoded_vector(self, info)
        if not self.content:
            self.content = self.what
        if not self.content and self.embedding is None:
            raise ValueError("an episode needs what/content, an embedding, or both")
        _one_expiry(self)
        return self


def _one_expiry(item: MemoryInput) -> None:
    if item.ttl_seconds is not None and item.expires_at is not None:
        raise ValueError("give ttl_seconds or expires_at, not both")


class Cue(_Input):
    """What ``recall`` asks with."""

    embedding: Embedding | None = None
    query: str | None = Field(None, max_length=65_536, description="Full-text query (BM25).")
    time_start: Instant | None = None
    time_end: Instant | None = None
    location: str | None = Field(None, max_length=1024)
    participants: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=256)
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    memory_type: MemoryType | None = None
    threshold: Unit = 0.0
    max_results: Annotated[int, Field(ge=1, le=1000)] = 10
    mode: RecallMode = RecallMode.similarity
    rank: RankMode = Field(
        RankMode.cognitive,
        description='"cognitive": fused, activation- and recency-aware order; '
                    '"similarity": pure cosine order.',
    )
    wait_for_embeddings: bool = Field(
        False, description="Wait (at most embedding_wait_seconds) until earlier writes are embedded."
    )
    trace_activation: bool = False
    max_hops: Annotated[int, Field(ge=0, le=10)] | None = None
    filter: Filter = Field(None, description=FILTER_DESCRIPTION)
    memory_space_id: str | None = None

    @field_validator("embedding")
    @classmethod
    def _v_emb(cls, v: list[float] | None) -> list[float] | None:
        return _check_embedding(v)

    @model_validator(mode="after")
    def _something_to_recall_by(self) -> Cue:
        if (
            not self.filter
            and self.embedding is None
            and not (self.query and self.query.strip())
            and self.time_start is None
            and self.time_end is None
            and not self.location
            and not self.participants
            and not self.tags
        ):
            raise ValueError(
                "a cue needs at least one of: embedding, query, time_start/time_end, location, "
                "participants, tags, filter"
            )
        if self.time_start and self.time_end and to_epoch(self.time_start) > to_epoch(self.time_end):
            raise ValueError("time_start must not be after time_end")
        return self


# ----------------------------------------------------------------------------- results


class Confidence(BaseModel):
    value: float
    category: ConfidenceCategory
    reasoning: str


class Memory(BaseModel):
    id: str
    content: str
    embedding: list[float] | None = None
    confidence: float
    created_at: datetime
    last_access: datetime
    access_count: int
    activation: float
    decay_rate: float
    tags: list[str]
    memory_type: MemoryType
    metadata: dict[str, Any]  # string keys, scalar values with their JSON types
    suppressed: bool = False
    lsn: int = 0
    # episodic context (present for episodes)
    when: datetime | None = None
    what: str | None = None
    where_location: str | None = None
    who: list[str] | None = None
    why: str | None = None
    how: str | None = None
    emotional_valence: float | None = None
    importance: float | None = None
    consolidation_state: ConsolidationState | None = None
    expires_at: datetime | None = None  # None: never expires


class AutoLink(BaseModel):
    target_id: str
    strength: float


class StoreReceipt(BaseModel):
    memory_id: str
    storage_confidence: Confidence
    consolidation_state: ConsolidationState
    observed_at: datetime
    stored_at: datetime
    auto_links: list[AutoLink] = Field(default_factory=list)
    lsn: int
    durability: str = "fsync"
    memory_space_id: str = ""


class ActivationStep(BaseModel):
    memory_id: str
    activation: float


class RecallItem(BaseModel):
    memory: Memory
    score: float
    similarity: float = 0.0
    text_score: float = 0.0
    activation: float = 0.0
    recency: float = 0.0
    confidence: Confidence
    source: str = "similarity"  # similarity | text | context | spreading
    activation_path: list[ActivationStep] | None = None
    # The per-signal values that placed this result (vector, text, context, spread,
    # activation, recency, confidence, fused); see docs/cognition.md "Ranking".
    signals: dict[str, float] = Field(default_factory=dict)


class RecallBuckets(BaseModel):
    vivid: list[RecallItem] = Field(default_factory=list)
    associated: list[RecallItem] = Field(default_factory=list)
    reconstructed: list[RecallItem] = Field(default_factory=list)


class ConfidenceInterval(BaseModel):
    lower: float
    point: float
    upper: float


class RecallResult(BaseModel):
    memories: RecallBuckets
    recall_confidence: Confidence
    confidence_interval: ConfidenceInterval
    metadata: dict[str, Any] = Field(default_factory=dict)
    memory_space_id: str = ""
    # Every item of the buckets as one list, best first, in the order the recall ranked them
    # (``rank``: cognitive or similarity): the list to index without looking at buckets.
    results: list[RecallItem] = Field(default_factory=list)


class ForgetReceipt(BaseModel):
    memory_id: str
    mode: ForgetMode
    lsn: int
    removed_associations: int = 0
    memory_space_id: str = ""


#: Most items one batch remember takes (SPEC §11 "Batch"); more is a 400 for the whole request.
MAX_BATCH_ITEMS = 1000


class MemoryBatchInput(_Input):
    """What ``POST /api/v1/memories/batch`` accepts. Each item is validated on its own (an invalid
    item fails alone), so the list is typed loosely here and documented as ``MemoryInput``."""

    memories: list[Any] = Field(
        ..., min_length=1, max_length=MAX_BATCH_ITEMS,
        description=f"1 to {MAX_BATCH_ITEMS} items, each a MemoryInput (as POST /api/v1/memories/remember).",
        json_schema_extra={"items": {"$ref": "#/components/schemas/MemoryInput"}},
    )
    memory_space_id: str | None = Field(None, description="Target space (REST body source; see SPEC §2).")


class ErrorInfo(BaseModel):
    """The error envelope's body, inside a result (a failed batch item)."""

    code: str
    message: str
    suggestion: str = ""
    example: str = ""
    details: dict[str, Any] | None = None


class BatchItemResult(BaseModel):
    """One item of a batch: ``{index, memory_id, lsn}`` when stored, ``{index, error}`` when not."""

    index: int
    memory_id: str | None = None
    lsn: int | None = None
    error: ErrorInfo | None = None


class BatchReceipt(BaseModel):
    results: list[BatchItemResult] = Field(..., description="One per item, in request order.")
    stored: int = Field(..., description="How many items were stored.")
    durability: str = "fsync"
    memory_space_id: str = ""


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A stored batch item when the caller asked for no full receipts: all REST's answer needs."""

    memory_id: str
    lsn: int


@dataclass(frozen=True, slots=True)
class ReceiptParts:
    """A remember's receipt as plain values, before any model is built: what a transport that
    encodes receipts itself (gRPC's StreamingRemember, straight into protobuf) takes instead of
    a validated :class:`StoreReceipt`. :meth:`receipt` is the very model ``remember`` returns.

    ``confidence`` is the item's own (``confidence_from`` clamps and rounds it); ``observed_at``
    and ``stored_at`` are epoch seconds; the consolidation state of a fresh memory is ``recent``.
    """

    memory_id: str
    confidence: float
    reasoning: str
    observed_at: float
    stored_at: float
    auto_links: list[tuple[str, float]]
    lsn: int
    durability: str
    memory_space_id: str

    def receipt(self) -> StoreReceipt:
        return StoreReceipt(
            memory_id=self.memory_id,
            storage_confidence=confidence_from(self.confidence, self.reasoning),
            consolidation_state=ConsolidationState.recent,
            observed_at=from_epoch(self.observed_at),
            stored_at=from_epoch(self.stored_at),
            auto_links=[AutoLink(target_id=t, strength=s) for t, s in self.auto_links],
            lsn=self.lsn,
            durability=self.durability,
            memory_space_id=self.memory_space_id,
        )


#: What a stored batch item's result can be, by the form the caller asked for.
STORED_RESULTS = (StoreReceipt, StoredItem, ReceiptParts)


@dataclass
class BatchOutcome:
    """What ``EngramService.remember_batch`` returns: per item (request order) its receipt or its error."""

    results: list[Any]  # StoreReceipt | StoredItem | ReceiptParts | EngramError, one per item
    stored: int
    durability: str = "fsync"
    memory_space_id: str = ""

    def receipt(self) -> BatchReceipt:
        """The transport-neutral answer (REST's body), as a model."""
        return BatchReceipt.model_validate(self.receipt_dict())

    def receipt_dict(self) -> dict[str, Any]:
        """:meth:`receipt` as plain JSON-ready data (``exclude_none``), built without a model per
        item: what REST sends. An error item is its envelope's body."""
        out: list[dict[str, Any]] = []
        for i, r in enumerate(self.results):
            if isinstance(r, STORED_RESULTS):
                out.append({"index": i, "memory_id": r.memory_id, "lsn": r.lsn})
            else:
                out.append({"index": i, "error": r.to_envelope()["error"]})
        return {"results": out, "stored": self.stored, "durability": self.durability,
                "memory_space_id": self.memory_space_id}


class MemoryPatch(_Input):
    """What ``PATCH /api/v1/memories/{id}`` accepts: only the fields given change.

    The rules of each field are MemoryInput's. ``null`` is not a value here: omit a field to
    keep it. Episode fields (when, what, who ...) cannot be changed by an update.
    """

    content: str | None = Field(None, description="New text; a server embedder recomputes the vector.")
    embedding: Embedding | None = Field(None, description="New vector; its length must match the space's.")
    confidence: Unit | None = None
    decay_rate: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    tags: list[Tag] | None = Field(None, max_length=64, description="Replaces the tags.")
    memory_type: MemoryType | None = None
    metadata: dict[str, Any] | None = Field(None, description="Replaces the metadata (rules of MemoryInput).")
    memory_space_id: str | None = Field(None, description="Target space (REST body source; see SPEC §2).")

    @field_validator("embedding")
    @classmethod
    def _v_emb(cls, v: list[float] | None) -> list[float] | None:
        return _check_embedding(v)

    @field_validator("metadata")
    @classmethod
    def _v_meta(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        from pydantic import ValidationError

        try:  # the one set of metadata rules: MemoryInput's
            return MemoryInput.model_validate({"content": "-", "metadata": v}).metadata
        except ValidationError as exc:
            raise ValueError("; ".join(str(e.get("msg", "invalid")) for e in exc.errors())) from None

    @model_validator(mode="after")
    def _no_nulls(self) -> MemoryPatch:
        nulls = sorted(f for f in self.model_fields_set
                       if f != "memory_space_id" and getattr(self, f) is None)
        if nulls:
            raise ValueError(f"null is not a value for {', '.join(nulls)}: omit a field to keep it")
        if not self.given():
            raise ValueError("nothing to change: give at least one of content, embedding, confidence, "
                             "decay_rate, tags, memory_type, metadata")
        return self

    def given(self) -> dict[str, Any]:
        """The fields this patch sets, by name."""
        return {f: getattr(self, f) for f in self.model_fields_set if f != "memory_space_id"}


class UpdateReceipt(BaseModel):
    """The answer of PUT / PATCH / UpdateMemory: the memory as stored (without its embedding)."""

    memory: Memory
    created: bool = Field(..., description="True when PUT created the memory (201), else False.")
    lsn: int
    durability: str = "fsync"
class DeleteByFilter(_Input):
    """What delete-by-filter accepts (``POST /api/v1/memories/delete``)."""

    filter: dict[str, Any] = Field(..., description=FILTER_DESCRIPTION + " Required and not empty.")
    mode: ForgetMode = Field(ForgetMode.suppress, description="suppress (reversible) or delete (erased).")
    memory_space_id: str | None = None

    @field_validator("filter", mode="before")
    @classmethod
    def _v_filter(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = filters.decode(v)
        if filters.parse(v) is None:
            raise ValueError("an empty filter would forget every memory of the space; name at least one "
                             "condition (to erase a whole space, delete the space)")
        return v


class DeleteReceipt(BaseModel):
    """How many memories a delete-by-filter forgot, and the LSN of that one durable write."""

    count: int
    mode: ForgetMode
    lsn: int
    memory_space_id: str = ""


class MemoryPage(BaseModel):
    memories: list[Memory]
    next_cursor: str | None = None
    total: int = 0
    memory_space_id: str = ""


class EmbedderChoice(_Input):
    """The embedder asked for at space creation (SPEC §9)."""

    provider: str = Field(..., max_length=32, description="local | openai | hash | none")
    model: str | None = Field(None, max_length=256,
                              description="Model name; the provider's default if omitted.")


class EmbedderInfo(BaseModel):
    provider: str
    model: str
    dimension: int | None = None


class SpaceDescriptor(BaseModel):
    id: str
    created_at: datetime
    memory_count: int = 0
    dimension: int | None = None
    embedder: EmbedderInfo | None = None
    embedding_backlog: int = 0
    last_lsn: int = 0
    healthy: bool = True
    loaded: bool = False
    reason: str | None = None
    stats: dict[str, Any] | None = None
    default_ttl_seconds: float | None = None  # expiry of memories stored without their own


class ReembedStatus(BaseModel):
    """Progress of ``engram space reembed``: running until every memory has the new model's vector."""

    memory_space_id: str
    state: str  # running | idle
    embedder: EmbedderInfo  # what the space uses now (the target, once switched)
    target: EmbedderInfo | None = None  # what it is being re-embedded with, while running
    done: int
    total: int


class SpacePage(BaseModel):
    spaces: list[SpaceDescriptor]
    next_cursor: str | None = None


class SpaceDeletion(BaseModel):
    id: str
    deleted: bool
    memories_removed: int
    bytes_removed: int
    files_removed: int


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a result (datetimes as ISO-8601, enums as values)."""
    return model.model_dump(mode="json", exclude_none=False)


def confidence_from(value: float, reasoning: str) -> Confidence:
    value, cat = confidence_value(value)
    return Confidence(value=value, category=cat, reasoning=reasoning)


def confidence_value(value: float) -> tuple[float, ConfidenceCategory]:
    """A confidence as a receipt states it: clamped to [0, 1], rounded to 6 places, with its category."""
    value = min(1.0, max(0.0, float(value)))
    if value <= 0.05:
        cat = ConfidenceCategory.none
    elif value < 0.35:
        cat = ConfidenceCategory.low
    elif value < 0.65:
        cat = ConfidenceCategory.medium
    elif value < 0.95:
        cat = ConfidenceCategory.high
    else:
        cat = ConfidenceCategory.certain
    return round(value, 6), cat


# ----------------------------------------------------------------------------- cognition inputs/outputs


class AssociateInput(_Input):
    source_id: MemoryId
    target_id: MemoryId
    strength: Unit = 0.5
    bidirectional: bool = True
    memory_space_id: str | None = None


class Association(BaseModel):
    source_id: str
    target_id: str
    strength: float
    kind: str = "explicit"  # explicit | auto | temporal
    lsn: int = 0
    memory_space_id: str = ""
    # False when the edge existed and was strengthened (gRPC AssociateResponse.created).
    created: bool = True


class RecognizeInput(_Input):
    content: str | None = Field(None, max_length=65_536)
    embedding: Embedding | None = None
    threshold: Unit = 0.8
    max_matches: Annotated[int, Field(ge=1, le=100)] = 5
    memory_space_id: str | None = None

    @field_validator("embedding")
    @classmethod
    def _v_emb(cls, v: list[float] | None) -> list[float] | None:
        return _check_embedding(v)

    @model_validator(mode="after")
    def _one(self) -> RecognizeInput:
        if not (self.content and self.content.strip()) and self.embedding is None:
            raise ValueError("recognize needs content, an embedding, or both")
        return self


class RecognitionMatch(BaseModel):
    memory_id: str
    similarity: float
    content: str


class Recognition(BaseModel):
    recognized: bool
    familiarity: float
    confidence: Confidence
    matches: list[RecognitionMatch]
    memory_space_id: str = ""


class ReminisceQuery(_Input):
    topic: str | None = Field(None, max_length=4096)
    embedding: Embedding | None = None
    time_start: Instant | None = None
    time_end: Instant | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    memory_space_id: str | None = None

    @field_validator("embedding")
    @classmethod
    def _v_emb(cls, v: list[float] | None) -> list[float] | None:
        return _check_embedding(v)

    @model_validator(mode="after")
    def _window(self) -> ReminisceQuery:
        if self.time_start and self.time_end and to_epoch(self.time_start) > to_epoch(self.time_end):
            raise ValueError("time_start must not be after time_end")
        return self


class Reminiscence(BaseModel):
    episodes: list[Memory]
    memory_space_id: str = ""


class ConsolidateInput(_Input):
    min_cluster: Annotated[int, Field(ge=2, le=1000)] | None = None
    similarity: Unit | None = None
    memory_space_id: str | None = None


class Citation(BaseModel):
    episode_id: str
    preview: str
    similarity: float


class Belief(BaseModel):
    id: str
    content: str
    centroid: list[float] | None = None
    strength: float
    schema_confidence: float
    citations: list[Citation]
    created_at: datetime
    updated_at: datetime
    run_id: str
    lsn: int = 0

    @computed_field(description="The run that produced this belief: gRPC's ConsolidationRun.consolidation_id "
                                "(the same value as run_id, kept for older clients).")
    def consolidation_id(self) -> str:
        return self.run_id


class ConsolidationReport(BaseModel):
    run_id: str
    beliefs: list[Belief]
    episodes_considered: int
    episodes_consolidated: int
    # Episodes left out of this run, by reason (e.g. "awaiting_embedding", "no_text_or_embedding").
    episodes_skipped: dict[str, int] = Field(default_factory=dict)
    clusters: int
    duration_ms: float
    lsn: int = 0
    memory_space_id: str = ""

    @computed_field(description="The run's id, named as gRPC names it (ConsolidationRun.consolidation_id); "
                                "the same value as run_id, kept for older clients.")
    def consolidation_id(self) -> str:
        return self.run_id


class BeliefPage(BaseModel):
    beliefs: list[Belief]
    next_cursor: str | None = None
    last_consolidation: datetime | None = None
    memory_space_id: str = ""


class DreamStep(BaseModel):
    kind: str  # progress | replay | insight | done
    progress: float  # 0..1
    message: str
    memory_ids: list[str] = Field(default_factory=list)
    belief: Belief | None = None
    report: ConsolidationReport | None = None  # on the last step ("done") of a run that wrote


class CompleteInput(_Input):
    what: str | None = Field(None, max_length=65_536)
    when: Instant | None = None
    where_location: str | None = Field(None, max_length=1024)
    who: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=256)
    why: str | None = Field(None, max_length=4096)
    how: str | None = Field(None, max_length=4096)
    embedding: Embedding | None = Field(
        None, description="A partial embedding: leading components, or full length."
    )
    max_hypotheses: Annotated[int, Field(ge=1, le=20)] = 3
    min_confidence: Unit = 0.2
    memory_space_id: str | None = None

    @field_validator("embedding")
    @classmethod
    def _v_emb(cls, v: list[float] | None) -> list[float] | None:
        return _check_embedding(v)


class FieldSource(BaseModel):
    field: str
    value: Any = None
    source: str  # given | recalled | reconstructed
    confidence: float
    from_memory_ids: list[str] = Field(default_factory=list)


class CompletionHypothesis(BaseModel):
    episode: dict[str, Any]
    fields: list[FieldSource]
    confidence: Confidence
    source_memory_ids: list[str]


class Completion(BaseModel):
    best: CompletionHypothesis
    alternatives: list[CompletionHypothesis]
    memory_space_id: str = ""


class SpaceStats(BaseModel):
    memory_space_id: str
    memories: int
    by_type: dict[str, int]
    by_consolidation_state: dict[str, int]
    suppressed: int
    associations: int
    beliefs: int
    average_activation: float
    index: dict[str, Any]
    storage_bytes: int
    last_lsn: int
    last_consolidation: datetime | None = None
    dimension: int | None = None
    embedder: EmbedderInfo | None = None  # what the space embeds text with (SPEC §9)
    embedding_backlog: int = 0  # memories stored but not yet embedded
    healthy: bool = True


def strengthened(old: float, added: float) -> float:
    """Saturating reinforcement of an association: each call closes ``added`` of the remaining
    gap to 1 (the rule of every backend: cognition.associations, core.postgres)."""
    return min(1.0, old + added * (1.0 - old))
