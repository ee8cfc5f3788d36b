"""gRPC result conversion: the fast builders give the very bytes of the plain ones they replaced.

``convert.memory`` / ``recall_item`` / ``recall_result`` build nested messages as constructor
dicts and timestamps from arithmetic (bench/notes/grpc_convert.py: ~0.33 -> ~0.23 ms per
10-result response). The reference below is the previous, straightforward code (every nested
message built as a message, ``Timestamp.FromDatetime``, ``json.dumps`` for the string map),
kept here only to compare serialisations over varied, randomly mixed results.

Serialised with ``deterministic=True``: protobuf leaves the order of map entries on the wire
unspecified, and upb's order follows how a map's table was filled (a map copied into a parent
with its message comes out in another order than one built in place), so plain bytes of a
memory with several metadata keys may list them differently while every entry is the same.
Everything else, scalars, timestamps, nested messages and their order, must match exactly.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf import timestamp_pb2

from engram.api.grpc import convert
from engram.api.grpc.gen import memory_pb2 as pb
from engram.core import models as m

# -- the reference: the converter as it was -------------------------------------------------------


def ref_ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def ref_metadata_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def ref_memory(mem: m.Memory) -> pb.Memory:
    out = pb.Memory(
        id=mem.id, content=mem.content, embedding=mem.embedding or (), confidence=mem.confidence,
        created_at=ref_ts(mem.created_at), last_access=ref_ts(mem.last_access),
        access_count=mem.access_count, activation=mem.activation, decay_rate=mem.decay_rate,
        tags=mem.tags,
        memory_type=convert.MEMORY_TYPES_OUT.get(mem.memory_type.value, pb.MEMORY_TYPE_UNSPECIFIED),
        metadata={k: ref_metadata_string(v) for k, v in mem.metadata.items()},
        typed_metadata={k: convert._value_out(v) for k, v in mem.metadata.items()},
        suppressed=mem.suppressed, lsn=mem.lsn, expires_at=ref_ts(mem.expires_at),
    )
    if mem.when is not None:
        out.episode.CopyFrom(pb.EpisodeContext(
            when=ref_ts(mem.when), what=mem.what or "", where_location=mem.where_location or "",
            who=mem.who or (), why=mem.why or "", how=mem.how or "",
            emotional_valence=mem.emotional_valence or 0.0, importance=mem.importance or 0.0,
            consolidation_state=convert.CONSOLIDATION_OUT.get(
                mem.consolidation_state.value if mem.consolidation_state else "",
                pb.CONSOLIDATION_STATE_UNSPECIFIED),
        ))
    return out


def ref_recall_item(it: m.RecallItem) -> pb.RecallItem:
    return pb.RecallItem(
        memory=ref_memory(it.memory), score=it.score, similarity=it.similarity, text_score=it.text_score,
        activation=it.activation, recency=it.recency, confidence=convert.confidence(it.confidence),
        source=convert.SOURCE_OUT.get(it.source, pb.RECALL_SOURCE_UNSPECIFIED),
        activation_path=[pb.ActivationStep(memory_id=s.memory_id, activation=s.activation)
                         for s in it.activation_path or ()],
        signals=it.signals,
    )


def ref_recall_result(r: m.RecallResult) -> pb.RecallResult:
    meta = dict(r.metadata)
    timing = meta.pop("timing_ms", None)
    timing_ms = dict(timing) if isinstance(timing, dict) else (
        {"total": float(timing)} if timing is not None else {})
    mode = meta.pop("mode", None)
    candidates = meta.pop("candidates", 0)
    converted = {i.memory.id: ref_recall_item(i) for i in r.results}

    def items(bucket: list[m.RecallItem]) -> list[pb.RecallItem]:
        return [converted[i.memory.id] if i.memory.id in converted else ref_recall_item(i) for i in bucket]

    return pb.RecallResult(
        memories=pb.RecallBuckets(vivid=items(r.memories.vivid), associated=items(r.memories.associated),
                                  reconstructed=items(r.memories.reconstructed)),
        results=list(converted.values()),
        recall_confidence=convert.confidence(r.recall_confidence),
        confidence_interval=pb.ConfidenceInterval(lower=r.confidence_interval.lower,
                                                  point=r.confidence_interval.point,
                                                  upper=r.confidence_interval.upper),
        metadata=pb.RecallMetadata(timing_ms=timing_ms, candidates=int(candidates or 0),
                                   mode=convert.RECALL_MODES_OUT.get(str(mode), pb.RECALL_MODE_UNSPECIFIED),
                                   extra=convert.struct(meta)),
        memory_space_id=r.memory_space_id,
    )


def wire(msg: Any) -> bytes:
    out: bytes = msg.SerializeToString(deterministic=True)
    return out


# -- varied results -------------------------------------------------------------------------------

ZONES = [UTC, None, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)),
         timezone(timedelta(hours=1, seconds=17, microseconds=250))]
SCALARS: list[Any] = ["text", "", "ünï", 0, 7, -12, 2**53 + 1, 10**18, 0.0, -0.0, 2.5, 1e300, 1e-310, 0.1,
                      float("nan"), float("inf"), float("-inf"), True, False, None]


def when(rng: random.Random) -> datetime:
    base = datetime(1, 1, 2) + timedelta(seconds=rng.randrange(0, 315_000_000_000))
    base = base.replace(microsecond=rng.choice([0, 1, 999_999, rng.randrange(1_000_000)]))
    zone = rng.choice(ZONES)
    return base if zone is None else base.replace(tzinfo=zone)


def a_memory(rng: random.Random, i: int) -> m.Memory:
    episode = rng.random() < 0.5
    return m.Memory.model_construct(
        id=f"m{i}", content=rng.choice(["", "espresso on the third floor", "ü" * rng.randrange(1, 50)]),
        embedding=[rng.uniform(-1, 1) for _ in range(rng.choice([0, 3, 8]))] or None,
        confidence=rng.random(), created_at=when(rng), last_access=when(rng),
        access_count=rng.randrange(0, 10**6), activation=rng.random(), decay_rate=rng.choice([0.0, 0.1, 0.5]),
        tags=rng.sample(["a", "b", "ü", "long tag"], rng.randrange(0, 4)),
        memory_type=rng.choice(list(m.MemoryType)),
        metadata={f"k{j}": rng.choice(SCALARS) for j in range(rng.randrange(0, 6))},
        suppressed=rng.random() < 0.2, lsn=rng.randrange(0, 2**40),
        when=when(rng) if episode else None,
        what=rng.choice([None, "", "met"]) if episode else None,
        where_location=rng.choice([None, "lab"]) if episode else None,
        who=rng.choice([None, [], ["ann", "bo"]]) if episode else None,
        why=rng.choice([None, "because"]) if episode else None,
        how=rng.choice([None, "by train"]) if episode else None,
        emotional_valence=rng.choice([None, 0.0, -0.7]) if episode else None,
        importance=rng.choice([None, 0.9]) if episode else None,
        consolidation_state=rng.choice([None, *m.ConsolidationState]) if episode else None,
        expires_at=rng.choice([None, when(rng)]),
    )


def a_confidence(rng: random.Random) -> m.Confidence:
    return m.Confidence(value=rng.random(), category=rng.choice(list(m.ConfidenceCategory)),
                        reasoning=rng.choice(["", "cosine 0.96, strength 0.53"]))


def an_item(rng: random.Random, i: int) -> m.RecallItem:
    path = rng.choice([None, [], [m.ActivationStep(memory_id=f"m{j}", activation=rng.random())
                                  for j in range(rng.randrange(1, 4))]])
    return m.RecallItem(
        memory=a_memory(rng, i), score=rng.random(), similarity=rng.random(), text_score=rng.random(),
        activation=rng.random(), recency=rng.random(), confidence=a_confidence(rng),
        source=rng.choice(["similarity", "text", "context", "spreading", "other"]), activation_path=path,
        signals={s: rng.random() for s in rng.sample(["vector", "text", "fused"], rng.randrange(0, 3))},
    )


def a_result(rng: random.Random) -> m.RecallResult:
    items = [an_item(rng, rng.randrange(10**6)) for _ in range(rng.randrange(0, 12))]
    extra = [an_item(rng, 10**7 + j) for j in range(rng.randrange(0, 3))]  # in buckets only
    pool = items + extra
    metadata: dict[str, Any] = {
        "timing_ms": rng.choice([None, 3.25, 7, {"total": 1.5, "search": 0.25}]),
        "mode": rng.choice([None, "similarity", "hybrid", "spreading", "odd"]),
        "candidates": rng.choice([0, None, 100]),
        "rank": "cognitive",
        "index": {"kind": "exact", "ready": False, "vectors": 20000, "error": None},
        "nested": [1, "two", [3.5, None], {"at": when(rng)}, {1, 2}],
        "spreading": {"hops": 1, "truncated": True, "ms": 0.285},
    }
    for key in rng.sample(sorted(metadata), rng.randrange(0, 4)):
        del metadata[key]
    buckets = {name: [x for x in pool if rng.random() < 0.4]
               for name in ("vivid", "associated", "reconstructed")}
    return m.RecallResult(
        memories=m.RecallBuckets(**buckets), recall_confidence=a_confidence(rng),
        confidence_interval=m.ConfidenceInterval(lower=0.1, point=rng.random(), upper=0.9),
        metadata=metadata, memory_space_id=rng.choice(["", "alpha"]), results=items,
    )


def test_recall_results_serialise_to_the_same_bytes() -> None:
    rng = random.Random(15)
    checked = 0
    for _ in range(300):
        r = a_result(rng)
        assert wire(convert.recall_result(r)) == wire(ref_recall_result(r))
        checked += len(r.results)
    assert checked > 1000


def test_memories_and_timestamps_match_the_plain_builders() -> None:
    rng = random.Random(16)
    for i in range(2000):
        mem = a_memory(rng, i)
        assert wire(convert.memory(mem)) == wire(ref_memory(mem))
        t = when(rng)
        assert convert.ts_out(t) == ref_ts(t)
    for value in [*SCALARS, [1, 2], {"a": 1}, 3.0e-7, 123456789.125]:
        assert convert.metadata_string(value) == ref_metadata_string(value), value
