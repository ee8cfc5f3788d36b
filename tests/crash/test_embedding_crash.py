"""kill -9 while vectors are pending loses none (SPEC §9, issue 10).

A real server embeds through a real OpenAI-wire embeddings server (``FakeOpenAI``)
that first refuses (503), so every acknowledged text memory is pending; the server is
SIGKILLed; the embeddings server recovers; after restart every acknowledged memory
gets *its own* vector (the fake's vector for its own text) in its own space, and is
found by meaning. A second cycle kills the server while the backlog is draining.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from engram.testing import EngramProcess
from engram.testing.clients import RestSpaceClient
from engram.testing.openai_fake import FakeOpenAI

SPACES = ["embed-a", "embed-b"]
DIM = 32


def settings(url: str) -> dict[str, Any]:
    return {"embedder": "openai", "openai_base_url": url, "openai_dimension": DIM,
            "openai_max_retries": 0, "openai_timeout_seconds": 5, "embedding_batch_size": 8,
            "consolidation_interval_seconds": 0}


def backlog(srv: EngramProcess, space: str) -> int:
    with RestSpaceClient(srv.http_url, space) as c:
        return int(c.describe(space)["embedding_backlog"])


def wait_drained(srv: EngramProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(backlog(srv, s) for s in SPACES):
        assert time.monotonic() < deadline, f"backlog never drained: {[backlog(srv, s) for s in SPACES]}"
        time.sleep(0.1)


def write(srv: EngramProcess, n: int, start: int) -> dict[str, dict[str, str]]:
    acked: dict[str, dict[str, str]] = {s: {} for s in SPACES}
    for s in SPACES:
        with RestSpaceClient(srv.http_url, s) as c:
            for i in range(start, start + n):
                text = f"{s} memory {i}: the {['red', 'blue', 'green'][i % 3]} kite number {i} flew"
                c.remember(id=f"m{i}", content=text)
                acked[s][f"m{i}"] = text
    return acked


def check_vectors(srv: EngramProcess, fake: FakeOpenAI, acked: dict[str, dict[str, str]]) -> None:
    for s, memories in acked.items():
        with RestSpaceClient(srv.http_url, s) as c:
            for mid, text in memories.items():
                got = c.get(mid)
                assert got["content"] == text
                vec = got.get("embedding")
                assert vec is not None and len(vec) == DIM, f"{s}/{mid} has no vector after restart"
                want = fake.vectors.embed([text])[0]
                assert float(np.dot(np.asarray(vec, dtype=np.float32), want)) > 0.999, f"{s}/{mid}"
            sample = list(memories.items())[:: max(1, len(memories) // 5)]
            for mid, text in sample:
                res = c.recall(query=text, rank="similarity", max_results=1)
                top = (res["memories"]["vivid"] + res["memories"]["associated"])[0]
                assert top["memory"]["id"] == mid and top["memory"]["content"] == text


def test_pending_vectors_survive_kill_9(tmp_path: Path) -> None:
    with FakeOpenAI.serve(dimension=DIM) as fake:
        fake.failing = True
        srv = EngramProcess.start(tmp_path / "srv", SPACES, settings(fake.url))
        try:
            acked = write(srv, 40, 0)
            assert all(backlog(srv, s) == 40 for s in SPACES)  # all pending: the embedder refuses
            srv.kill()
            fake.failing = False
            srv = srv.restart()
            wait_drained(srv)
            check_vectors(srv, fake, acked)

            # Kill again while the backlog drains (the fake answers slowly enough to catch it).
            fake.failing = True
            more = write(srv, 40, 40)
            fake.failing = False
            deadline = time.monotonic() + 30
            while all(backlog(srv, s) == 40 for s in SPACES) and time.monotonic() < deadline:
                time.sleep(0.005)
            srv.kill()
            srv = srv.restart()
            wait_drained(srv)
            for s in SPACES:
                acked[s].update(more[s])
            check_vectors(srv, fake, acked)
        finally:
            srv.kill() if srv.running else None
