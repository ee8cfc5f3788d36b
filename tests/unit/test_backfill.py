"""Text becomes vectors in the background (SPEC §9): durable first, embedded after, never lost.

In-process, with the hash embedder (deterministic, no model): the pipeline is the same
one the local model runs through.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.cognition.recall import recall
from engram.core.models import ConsolidateInput, Cue, EmbedderChoice, EpisodeInput, MemoryInput, RankMode
from engram.embedding import EmbedderSpec
from engram.errors import DimensionMismatch, InvalidInput
from engram.service import EngramService
from engram.settings import load_settings


def service(root: Path, **overrides: object) -> EngramService:
    settings = load_settings(overrides={
        "data_dir": root, "embedder": "hash", "bootstrap_spaces": ("home", "away"), **overrides,
    }, use_env=False)
    return EngramService(settings)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[EngramService]:
    s = service(tmp_path)
    yield s
    s.close()


def stored_vector(db: Path, memory_id: str) -> bytes | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT embedding FROM memories WHERE id = ?", (memory_id,)).fetchone()
    return None if row is None else row[0]


def test_text_gets_a_vector_after_the_acknowledgement(svc: EngramService) -> None:
    space = svc.space("home")
    receipt = space.remember(MemoryInput(id="m1", content="the espresso machine is on the third floor"))
    assert receipt.lsn >= 1
    assert space.wait_embedded(10.0) == 0
    assert space.embedding_backlog == 0
    assert space.dim == 384 and len(space.vectors) == 1
    vec = np.frombuffer(stored_vector(space.store.path, "m1") or b"", dtype=np.float32)  # type: ignore[union-attr]
    assert vec.shape == (384,) and abs(float(vec @ vec) - 1.0) < 1e-4
    # The vector never took an LSN: LSNs number client-visible mutations only.
    assert space.last_lsn == receipt.lsn


def test_recall_embeds_the_query_and_says_so(svc: EngramService) -> None:
    space = svc.space("home")
    space.remember(MemoryInput(id="coffee", content="espresso machine coffee beans grinder"))
    space.remember(MemoryInput(id="tax", content="quarterly tax return deadline"))
    res = recall(space, Cue(query="espresso coffee", wait_for_embeddings=True))
    assert res.metadata["query_vector"] == "embedder"
    top = (res.memories.vivid + res.memories.associated)[0]
    assert top.memory.id == "coffee"
    assert top.signals["vector"] > 0.3 and "text" in top.signals and top.signals["relevance"] > 0
    sim = recall(space, Cue(query="espresso coffee", rank=RankMode.similarity))
    items = sim.memories.vivid + sim.memories.associated
    assert [it.score for it in items] == sorted((it.score for it in items), reverse=True)
    assert all(it.score == it.signals["vector"] for it in items)


def test_similar_texts_are_associated_by_meaning_within_their_space_only(svc: EngramService) -> None:
    home, away = svc.space("home"), svc.space("away")
    home.remember(MemoryInput(id="a", content="our beagle puppy Max chewed the sofa again"))
    home.remember(MemoryInput(id="b", content="our beagle puppy Max chewed the sofa"))
    home.remember(MemoryInput(id="t", content="quarterly tax return deadline"))
    away.remember(MemoryInput(id="c", content="our beagle puppy Max chewed the sofa"))
    assert home.wait_embedded(10.0) == 0 and away.wait_embedded(10.0) == 0
    with sqlite3.connect(home.store.path) as conn:  # type: ignore[union-attr]
        kinds = conn.execute("SELECT kind, strength FROM associations").fetchall()
    # a <-> b (cosine ~0.93 under hash-384), both directions; the unrelated memory gets none.
    assert len(kinds) == 2 and all(k == "semantic" and s >= 0.55 for k, s in kinds)
    with sqlite3.connect(away.store.path) as conn:  # type: ignore[union-attr]
        assert conn.execute("SELECT count(*) FROM associations").fetchone()[0] == 0


def test_pending_rows_survive_a_close_and_are_embedded_on_reopen(tmp_path: Path) -> None:
    s = service(tmp_path)
    space = s.space("home")
    # Written while nothing embeds (the worker stopped), then closed: as after a crash.
    space.backfill.close()  # type: ignore[union-attr]
    for i in range(5):
        space.remember(MemoryInput(id=f"p{i}", content=f"pending memory number {i}"))
    assert space.embedding_backlog == 5
    s.close()
    assert stored_vector(tmp_path / "home" / "space.db", "p0") is None
    s = service(tmp_path)
    try:
        space = s.space("home")
        assert space.wait_embedded(10.0) == 0
        assert all(stored_vector(tmp_path / "home" / "space.db", f"p{i}") for i in range(5))
        assert len(space.vectors) == 5
    finally:
        s.close()


def test_forgotten_pending_memories_are_not_embedded(tmp_path: Path) -> None:
    s = service(tmp_path)
    try:
        space = s.space("home")
        space.backfill.close()  # type: ignore[union-attr]
        space.remember(MemoryInput(id="gone", content="to be forgotten before its vector"))
        space.forget("gone")
        assert space.embed_pending(10) is False
        assert space.embedding_backlog == 0 and len(space.vectors) == 0
    finally:
        s.close()


def test_wait_for_embeddings_times_out_and_reports_the_rest(tmp_path: Path) -> None:
    s = service(tmp_path, embedding_wait_seconds=0.2)
    try:
        space = s.space("home")
        space.backfill.close()  # type: ignore[union-attr]
        space.remember(MemoryInput(id="slow", content="never embedded in this test"))
        res = recall(space, Cue(query="embedded", wait_for_embeddings=True))
        assert res.metadata["embeddings_pending"] == 1
        # Still findable by its words meanwhile.
        assert [it.memory.id for it in res.memories.vivid + res.memories.associated] == ["slow"]
    finally:
        s.close()


def test_an_explicit_embedder_fixes_the_dimension(svc: EngramService) -> None:
    async def create() -> None:
        choice = EmbedderChoice(provider="hash", model="hash-64")
        desc, created = await svc.create_space("fixed", embedder=choice)
        assert created and desc.embedder is not None
        info = desc.embedder
        assert (info.provider, info.model, info.dimension) == ("hash", "hash-64", 64)

    asyncio.run(create())
    with pytest.raises(DimensionMismatch) as err:
        svc.space("fixed").remember(MemoryInput(content="x", embedding=[0.1] * 8))
    assert "8" in err.value.message and "64" in err.value.message


def test_an_implicit_embedder_yields_to_client_vectors_of_another_length(svc: EngramService) -> None:
    space = svc.space("away")
    space.remember(MemoryInput(id="v", content="client vector", embedding=[1.0, 0.0, 0.0]))
    assert space.embedder_spec.provider == "none" and space.dim == 3
    space.remember(MemoryInput(id="t", content="text only now"))
    assert space.embedding_backlog == 0  # nothing to embed with


def test_consolidation_clusters_text_only_episodes(svc: EngramService) -> None:
    space = svc.space("home")
    when = "2026-01-05T09:00:00Z"
    for i, text in enumerate(["went running in the park at dawn", "went running in the park at dusk",
                              "went running in the park at noon"]):
        space.remember(EpisodeInput(id=f"e{i}", content=text, when=when))
    report = svc.cognition("home").consolidate(ConsolidateInput())
    assert report.episodes_considered == 3 and report.clusters == 1 and report.episodes_skipped == {}


def test_consolidation_counts_what_it_skipped(tmp_path: Path) -> None:
    s = service(tmp_path, embedder="none")
    try:
        space = s.space("home")
        space.remember(EpisodeInput(id="e", content="text but no embedder", when="2026-01-05T09:00:00Z"))
        report = s.cognition("home").consolidate(ConsolidateInput())
        assert report.episodes_considered == 0 and report.episodes_skipped == {"no_embedding": 1}
    finally:
        s.close()


def wait_idle(space: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = space.reembed_status()
        if status["state"] == "idle" or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def test_reembed_switches_model_and_dimension_atomically(svc: EngramService) -> None:
    space = svc.space("home")
    for i in range(30):
        space.remember(MemoryInput(id=f"r{i}", content=f"note {i} about the garden and its tomatoes"))
    assert space.wait_embedded(10.0) == 0 and space.dim == 384
    target = EmbedderSpec("hash", "hash-96")
    status = space.start_reembed(target)
    assert status["target"] == {"provider": "hash", "model": "hash-96"} and status["total"] == 30
    assert wait_idle(space)["state"] == "idle"
    assert space.embedder_spec == target and space.dim == 96 and len(space.vectors) == 30
    vec = np.frombuffer(stored_vector(space.store.path, "r7") or b"", dtype=np.float32)  # type: ignore[union-attr]
    assert vec.shape == (96,)
    res = recall(space, Cue(query="note 7 about the garden and its tomatoes", rank=RankMode.similarity))
    assert (res.memories.vivid + res.memories.associated)[0].memory.id == "r7"
    with pytest.raises(DimensionMismatch):
        space.remember(MemoryInput(content="old size", embedding=[0.1] * 384))


def test_reembed_resumes_after_a_restart(tmp_path: Path) -> None:
    s = service(tmp_path)
    space = s.space("home")
    for i in range(10):
        space.remember(MemoryInput(id=f"r{i}", content=f"memory {i} for the resumed re-embedding"))
    assert space.wait_embedded(10.0) == 0
    space.backfill.close()  # type: ignore[union-attr]  # nothing runs: the target is only recorded
    space.start_reembed(EmbedderSpec("hash", "hash-48"))
    s.close()
    with sqlite3.connect(tmp_path / "home" / "space.db") as conn:  # recorded, not done
        assert conn.execute("SELECT value FROM meta WHERE key = 'reembed'").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0] == 0
    s = service(tmp_path)
    try:
        space = s.space("home")
        assert wait_idle(space)["state"] == "idle"
        assert space.embedder_spec.model == "hash-48" and space.dim == 48 and len(space.vectors) == 10
    finally:
        s.close()


def test_reembed_refuses_client_vectors_without_text(svc: EngramService) -> None:
    space = svc.space("away")
    space.remember(MemoryInput(id="v", content="", embedding=[1.0, 0.0, 0.0]))
    with pytest.raises(InvalidInput, match="client vector and no text"):
        space.start_reembed(EmbedderSpec("hash", "hash-48"))


def test_recognition_of_text_uses_meaning_in_a_space_that_embeds(svc: EngramService) -> None:
    from engram.cognition.recognition import dice
    from engram.core.models import RecognizeInput
    from engram.core.text import tokens

    space = svc.space("home")
    stored, asked = "our beagle puppy Max chewed the sofa again", "beagle puppies chewing sofas"
    space.remember(MemoryInput(id="k", content=stored))
    assert space.wait_embedded(10.0) == 0
    got = svc.cognition("home").recognize(RecognizeInput(content=asked, threshold=0.3))
    by_words = dice(set(tokens(asked)), set(tokens(stored)))
    # The familiarity is the vector's (the hash embedder's trigrams see "puppies" ~ "puppy"),
    # above what shared words alone give.
    assert got.matches[0].memory_id == "k" and got.familiarity > by_words + 0.1
