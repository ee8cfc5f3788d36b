#!/usr/bin/env python3
"""The quality benchmark's questions answered deterministically, for comparing two source trees.

    python bench/notes/quality_golden.py --golden FILE [--write-golden] [--conversations 2] [--reinforce]

bench/quality.py varies run to run (the real clock, and reinforcement landing every 50 ms, so
how many questions are answered before a flush depends on speed). This tool asks the same
questions of the same spaces with a fixed clock, no reinforcement and no fan effect (the
neighbourhood densities behind it are measured in the background, as embedding batches land):
one conversation per space as episodes (quality.py's loading), the hash embedder, every Engram
configuration of quality.py; the answers' JSON (minus timings) are written or compared, and
recall@5/10/25 per configuration printed. ``--reinforce``: reinforcement on, each recall's
written before the next question (as quality.py would see it with a slow enough recall).
Spreading and hybrid answers still vary a little between two runs of the same tree (the
association weights they spread over come from background work); the other configurations
are identical run to run. Run it with ``PYTHONPATH=<other tree>/src`` for the other tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: bench/http.py must not shadow http
from quality import ENGRAM, KS, per_question, summarise
from quality_data import generate

NOW = 1_900_000_000.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=2)
    ap.add_argument("--golden", type=Path, required=True)
    ap.add_argument("--write-golden", action="store_true")
    ap.add_argument("--reinforce", action="store_true")
    args = ap.parse_args()
    from engram.cognition import recall as recall_module
    from engram.core.models import Cue, EpisodeInput
    from engram.service import EngramService
    from engram.settings import load_settings

    recall_module.FAN_WEIGHT = 0.0  # type: ignore[misc]
    ds = generate(args.conversations, 0)
    root = Path(tempfile.mkdtemp(prefix="quality-golden-"))
    settings = load_settings(overrides={"data_dir": root, "embedder": "hash", "durability": "buffered",
                                        "log_level": "warning", "embedding_query_cache": 0}, use_env=False)
    svc = EngramService(settings, clock=lambda: NOW)

    async def load() -> None:
        for conv in ds["conversations"]:
            sid = f"quality-{conv['id']}"
            await svc.create_space(sid)
            for s in conv["sessions"]:
                for t in s["turns"]:
                    await svc.experience(sid, EpisodeInput(id=t["id"], content=t["text"], who=[t["speaker"]],
                                                           when=datetime.fromisoformat(t["when"])))

    asyncio.run(load())
    answers: list[Any] = []
    for name, fields in ENGRAM.items():
        ranked: dict[str, list[str]] = {}
        for conv in ds["conversations"]:
            space = svc.space(f"quality-{conv['id']}")
            if not args.reinforce:
                space.reinforcer = None  # answers must not depend on when reinforcement lands
            for q in conv["questions"]:
                res = asyncio.run(svc.recall(space.id, Cue(query=q["question"], max_results=max(KS),
                                                           wait_for_embeddings=True, **fields)))
                body = json.loads(res.__pydantic_serializer__.to_json(res))
                body["metadata"].pop("timing_ms", None)
                body["metadata"].pop("embedding_wait_ms", None)
                body["metadata"].pop("query_embedding_ms", None)
                body["metadata"].get("spreading", {}).pop("ms", None)
                for it in [*body["results"], *body["memories"]["vivid"], *body["memories"]["associated"]]:
                    it["signals"].pop("fan", None)
                answers.append(body)
                if args.reinforce:  # the recall's reinforcement written before the next question
                    space.store.write(lambda conn, lsn: None, mutates=False)
                items = [*res.memories.vivid, *res.memories.associated]
                items.sort(key=lambda it: -it.score)
                ranked[q["id"]] = [it.memory.id for it in items]
        overall = summarise(ds, per_question(ds, ranked))["overall"]
        print(f"{name:30s} overall {json.dumps(overall)}")
    svc.close()
    if args.write_golden:
        args.golden.write_text(json.dumps(answers, sort_keys=True))
        print(f"golden written: {len(answers)} answers")
    else:
        want = json.loads(args.golden.read_text())
        per = len(answers) // len(ENGRAM)
        for j, name in enumerate(ENGRAM):
            same = sum(a == b for a, b in zip(answers[j * per:(j + 1) * per], want[j * per:(j + 1) * per],
                                              strict=True))
            print(f"golden {name:30s} {same}/{per} identical")


if __name__ == "__main__":
    main()
