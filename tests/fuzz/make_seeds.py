"""Write the seed corpora (valid inputs) for the atheris targets: ``python tests/fuzz/make_seeds.py``.

The fuzzers mutate these; without them most random bytes never parse as a
protobuf message or reach past the first JSON decode. Re-running rewrites
only the ``seed-*`` files, never the inputs a long run added.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def proto_seeds() -> dict[str, bytes]:
    from google.protobuf.timestamp_pb2 import Timestamp

    from engram.api.grpc.gen import memory_pb2 as pb
    from engram.api.grpc.gen import service_pb2 as spb

    mem = pb.MemoryInput(
        id="m1",
        content="hello",
        embedding=[0.1, 0.2, 0.3],
        confidence=0.9,
        tags=["t"],
        memory_type=pb.MEMORY_TYPE_SEMANTIC,
        metadata={"k": "v"},
        auto_link=True,
    )
    ep = pb.EpisodeInput(
        id="e1",
        what="met bob",
        when=Timestamp(seconds=1_700_000_000),
        who=["bob"],
        where_location="office",
        importance=0.5,
        emotional_valence=-0.2,
    )
    cue = pb.Cue(
        embedding=[0.1, 0.2, 0.3],
        query="hello",
        mode=pb.RECALL_MODE_HYBRID,
        trace_activation=True,
        max_results=5,
        threshold=0.1,
        time_start=Timestamp(seconds=1),
        time_end=Timestamp(seconds=2),
    )
    msgs = [
        spb.RememberRequest(memory=mem, memory_space_id="fz-a"),
        spb.ExperienceRequest(episode=ep, memory_space_id="fz-b"),
        spb.RecallRequest(cue=cue, memory_space_id="fz-a"),
        spb.ForgetRequest(memory_id="m1", mode=pb.FORGET_MODE_DELETE, memory_space_id="fz-a"),
        spb.RecognizeRequest(content="hello", threshold=0.5, max_matches=3, memory_space_id="fz-a"),
        spb.ReminisceRequest(
            topic="bob", time_start=Timestamp(seconds=1), max_results=3, memory_space_id="fz-c"
        ),
        spb.ConsolidateRequest(similarity_threshold=0.8, min_cluster_size=2, memory_space_id="fz-a"),
        spb.DreamRequest(
            similarity_threshold=0.8, min_cluster_size=2, replay_cycles=2, memory_space_id="fz-a"
        ),
        spb.CompleteRequest(what="met", who=["bob"], embedding=[0.1], threshold=0.2, memory_space_id="fz-a"),
        spb.AssociateRequest(source_id="a", target_id="b", strength=0.5, memory_space_id="fz-a"),
        spb.StreamRequest(event_types=[pb.EVENT_TYPE_STORED], memory_space_id="fz-a"),
        spb.StreamingRememberRequest(sequence=1, episode=ep, memory_space_id="fz-a"),
        spb.StreamingRecallRequest(sequence=2, cue=cue, memory_space_id="fz-a"),
        spb.MemoryFlowRequest(sequence=3, recall=cue, memory_space_id="fz-a"),
    ]
    out = {f"seed-{i:02d}-{type(m).__name__}": bytes([i]) + m.SerializeToString() for i, m in enumerate(msgs)}
    # Regressions: inputs that once failed (kept so every short run replays them).
    out["regress-timestamp-out-of-range"] = (
        bytes([2])
        + spb.RecallRequest(
            cue=pb.Cue(query="x", time_start=Timestamp(seconds=10**15)), memory_space_id="fz-a"
        ).SerializeToString()
    )
    out["regress-episode-when-out-of-range"] = (
        bytes([1])
        + spb.ExperienceRequest(
            episode=pb.EpisodeInput(what="x", when=Timestamp(seconds=-(10**15)))
        ).SerializeToString()
    )
    return out


def random_seeds(n: int, size: int) -> dict[str, bytes]:
    rng = random.Random(20261124)
    return {f"seed-random-{i:02d}": rng.randbytes(size) for i in range(n)}


def main() -> None:
    corpora = {
        "proto_decoding": proto_seeds(),
        "multi_space_routing": random_seeds(12, 160),
        "rest_decoding": {
            **random_seeds(12, 200),
            "seed-json": json.dumps({"content": "x", "embedding": [1.0, 2.0]}).encode(),
        },
    }
    for target, seeds in corpora.items():
        d = HERE / "corpus" / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)


if __name__ == "__main__":
    main()
