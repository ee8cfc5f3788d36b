"""The gRPC write path's cheaper conversions give exactly what the plain ones gave.

* A packed float32 embedding is checked once as an array (``models.vector_from_floats``):
  the stored values are the sent ones, and every bad vector or field gets the very error
  the ordinary path (pydantic over a list of floats) gives.
* ``ts_out`` computes seconds and nanos itself: equal to ``Timestamp.FromDatetime``.
* ``receipt_fields`` builds StreamingRemember's receipt from ``ReceiptParts`` with no pydantic
  model: the message equals, field for field, the one ``receipt(parts.receipt())`` builds.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from google.protobuf import timestamp_pb2

from engram.api.grpc import convert as c
from engram.api.grpc.gen import memory_pb2 as pb
from engram.core import models as m
from engram.errors import EngramError


def _plain(msg: pb.MemoryInput) -> m.MemoryInput:
    """The ordinary path: every field, the embedding as a list of Python floats, through pydantic."""
    return c.parse(m.MemoryInput, c._memory_fields(msg), "memory")


def _outcome(fn: object, msg: pb.MemoryInput) -> tuple[str, object]:
    try:
        item = fn(msg)  # type: ignore[operator]
    except EngramError as exc:
        return ("error", (exc.code, str(exc), exc.details))
    emb = None if item.embedding is None else [float(x) for x in item.embedding]
    return ("ok", {**item.model_dump(exclude={"embedding"}), "embedding": emb})


def test_a_good_vector_is_held_as_float32_with_the_sent_values() -> None:
    values = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    msg = pb.MemoryInput(content="hello", embedding=values.tolist(), tags=["a"], confidence=0.4)
    item = c.memory_input(msg)
    assert isinstance(item.embedding, np.ndarray) and item.embedding.dtype == np.float32
    assert np.array_equal(item.embedding, values)
    assert _outcome(c.memory_input, msg) == _outcome(_plain, msg)


@pytest.mark.parametrize("embedding, extra", [
    ([1.0, math.nan, 2.0], {}),
    ([1.0, math.inf], {}),
    ([-math.inf, 0.0], {}),
    ([0.0, 0.0, 0.0], {}),
    ([0.5, 0.25], {"confidence": 2.0}),              # a good vector, a bad other field
    ([0.5, 0.25], {"id": "bad\x01id"}),
    ([0.5, 0.25], {"content": "", "memory_type": 99}),
    ([], {"content": ""}),                            # neither content nor embedding
])
def test_every_bad_input_gets_the_ordinary_paths_error(embedding: list[float],
                                                       extra: dict[str, object]) -> None:
    msg = pb.MemoryInput(content="text", embedding=embedding)
    for key, value in extra.items():
        setattr(msg, key, value)
    fast, plain = _outcome(c.memory_input, msg), _outcome(_plain, msg)
    assert fast == plain
    assert fast[0] == "error" or not embedding


def test_vector_from_floats_refuses_what_an_embedding_may_not_be() -> None:
    assert m.vector_from_floats([]) is None
    assert m.vector_from_floats([0.0, -0.0]) is None
    assert m.vector_from_floats([1.0, math.nan]) is None
    assert m.vector_from_floats([3.5e38]) is None  # beyond float32: would be stored as Infinity
    vec = m.vector_from_floats([0.0, 1.5])
    assert vec is not None and vec.dtype == np.float32 and vec.tolist() == [0.0, 1.5]


def test_ts_out_equals_from_datetime() -> None:
    def reference(value: datetime) -> timestamp_pb2.Timestamp:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
        return ts

    edges = [
        datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(2020, 5, 5, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 12, 5, 7, 0, 1, 999999),
    ]
    rng = random.Random(7)
    rand = [datetime.fromtimestamp(rng.uniform(-6e10, 2.5e11), UTC) for _ in range(2000)]
    for value in edges + rand:
        assert c.ts_out(value) == reference(value), value
    assert c.ts_out(None) is None


_REASONS = ("durable on disk (fsync) before acknowledgement",
            "buffered: acknowledged before fsync, may be lost on power failure")


def _parts(rng: random.Random, i: int) -> m.ReceiptParts:
    # Confidences at and around every category edge, epochs with odd fractions (microsecond
    # rounding), with and without auto-links, both durabilities.
    edges = [0.0, 0.05, 0.0500001, 0.2, 0.35, 0.3499999, 0.5, 0.65, 0.7, 0.95, 0.9499999, 1.0,
             0.123456789, 1.5, -0.2]
    durability = ("fsync", "buffered", "unknown")[i % 3]
    return m.ReceiptParts(
        memory_id=f"m_{rng.getrandbits(64):016x}",
        confidence=edges[i % len(edges)],
        reasoning=_REASONS[i % 2],
        observed_at=rng.uniform(0, 4e9) if i % 4 else 1_700_000_000.0000005,
        stored_at=rng.uniform(0, 4e9),
        auto_links=[(f"m_{rng.getrandbits(64):016x}", round(rng.random(), 6)) for _ in range(i % 3)],
        lsn=rng.randrange(1, 1 << 40),
        durability=durability,
        memory_space_id=("alpha", "", "space-é")[i % 3],
    )


def test_receipt_fields_equal_the_model_paths_receipt() -> None:
    from engram.api.grpc.gen import service_pb2 as spb

    rng = random.Random(15)
    for i in range(200):
        parts = _parts(rng, i)
        fast = spb.StreamingRememberResponse(sequence=i, receipt=c.receipt_fields(parts), memory_space_id="s")
        plain = spb.StreamingRememberResponse(sequence=i, receipt=c.receipt(parts.receipt()),
                                              memory_space_id="s")
        assert fast == plain, (parts, fast, plain)
        assert fast.SerializeToString(deterministic=True) == plain.SerializeToString(deterministic=True)
