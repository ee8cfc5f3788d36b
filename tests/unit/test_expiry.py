"""Expiry with an injected clock (no sleeping): an expired memory is never returned by any read
path even before the sweep; the sweep deletes it durably, removes its vector and logs
``expired``; bad expiry input is refused (SPEC §11)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engram.cognition.associations import edges_of
from engram.cognition.recall import recall
from engram.core.models import (
    AssociateInput,
    CompleteInput,
    Cue,
    EpisodeInput,
    ForgetMode,
    MemoryInput,
    MemoryPatch,
    RecallMode,
    RecognizeInput,
    ReminisceQuery,
)
from engram.errors import InvalidInput, MemoryNotFound
from engram.storage.eventlog import read_after
from engram.testing import FakeClock, make_service

T0 = 1_800_000_000.0
VEC_A = [1.0, 0.0, 0.0, 0.1]
VEC_B = [0.9, 0.1, 0.0, 0.1]


def _ids(res) -> set[str]:  # type: ignore[no-untyped-def]
    return {i.memory.id for i in res.memories.vivid + res.memories.associated}


def _episode(mid: str, **kw) -> EpisodeInput:  # type: ignore[no-untyped-def]
    return EpisodeInput(id=mid, when=datetime(2026, 5, 1, 9, tzinfo=UTC), what="coffee with sam at the cafe",
                        where_location="corner cafe", who=["sam"], embedding=VEC_A, **kw)


def test_expired_memory_is_never_returned_before_the_sweep(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = make_service(tmp_path, ["exp"], clock=clock)
    space = svc.space("exp")
    cog = svc.cognition("exp")
    space.remember(_episode("short", ttl_seconds=60))
    space.remember(_episode("keep"))
    space.remember(MemoryInput(id="plain", content="coffee notes", embedding=VEC_B,
                               expires_at=datetime.fromtimestamp(T0 + 60, tz=UTC)))
    cog.associate(AssociateInput(source_id="keep", target_id="short", strength=0.9))
    assert space.get("short").expires_at == datetime.fromtimestamp(T0 + 60, tz=UTC)
    assert space.get("keep").expires_at is None

    def every_read() -> dict[str, set[str]]:
        vec = recall(space, Cue(embedding=VEC_A, max_results=10))
        text = recall(space, Cue(query="coffee", max_results=10))
        spread = recall(space, Cue(embedding=VEC_A, mode=RecallMode.spreading, max_results=10))
        hybrid = recall(space, Cue(query="coffee", mode=RecallMode.hybrid, max_results=10))
        rec = cog.recognize(RecognizeInput(content="coffee with sam at the cafe", threshold=0.1))
        rem = cog.reminisce(ReminisceQuery(limit=10))
        rem_topic = cog.reminisce(ReminisceQuery(topic="coffee", limit=10))
        comp = cog.complete(CompleteInput(what="coffee with sam", max_hypotheses=5, min_confidence=0.0))
        page = space.list(limit=10)
        return {
            "vector": _ids(vec), "text": _ids(text), "spreading": _ids(spread), "hybrid": _ids(hybrid),
            "recognize": {m.memory_id for m in rec.matches},
            "reminisce": {m.id for m in rem.episodes}, "reminisce_topic": {m.id for m in rem_topic.episodes},
            "complete": {i for h in [comp.best, *comp.alternatives] for i in h.source_memory_ids},
            "list": {m.id for m in page.memories},
        }

    before = every_read()
    for path, ids in before.items():
        assert "short" in ids, (path, ids)
    assert space.count() == 3

    clock.advance(61)  # expired now; no sweep has run
    after = every_read()
    for path, ids in after.items():
        assert "short" not in ids and "plain" not in ids, (path, ids)
    assert "keep" in after["vector"] and "keep" in after["list"]
    with pytest.raises(MemoryNotFound):
        space.get("short")
    with pytest.raises(MemoryNotFound):
        space.forget("short", ForgetMode.suppress)
    with pytest.raises(MemoryNotFound):
        cog.associate(AssociateInput(source_id="keep", target_id="plain"))
    assert space.count() == 1 and space.list().total == 1
    assert len(space.vectors) == 3  # still indexed: the sweep has not run

    last = space.last_lsn
    assert space.sweep_expired() == 2
    assert len(space.vectors) == 1
    assert space.last_lsn == last + 1  # one batch: one write, one LSN
    assert space.sweep_expired() == 0 and space.last_lsn == last + 1  # nothing expired: no write
    assert space.store is not None
    events, _, _ = read_after(space.store.reader(), (last, 99), 100, None)
    assert [(e.type, e.lsn, e.seq, e.data["memory_id"]) for e in events] == [
        ("expired", last + 1, 0, "short"), ("expired", last + 1, 1, "plain")]
    # the deleted memories' text does not live on in the log's `stored` events
    logged, _, _ = read_after(space.store.reader(), (0, -1), 100, frozenset({"stored"}))
    assert {e.data["memory_id"]: "content" in e.data for e in logged} == {
        "short": False, "keep": True, "plain": False}
    svc.close()

    svc = make_service(tmp_path, [], clock=clock)  # durable: gone after a reopen too
    space = svc.space("exp")
    assert space.count() == 1 and space.list().total == 1
    svc.close()


def test_default_ttl_and_batches(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = make_service(tmp_path, [], clock=clock, expiry_sweep_batch=3)
    space, created = svc.registry.create("ttl", default_ttl_seconds=100)
    assert created and space.default_ttl == 100
    for i in range(7):
        space.remember(MemoryInput(id=f"m{i}", content=f"note {i}"))
    space.remember(MemoryInput(id="own", content="own ttl", ttl_seconds=1000))
    assert space.get("m0").expires_at == datetime.fromtimestamp(T0 + 100, tz=UTC)
    assert svc.registry.describe("ttl").default_ttl_seconds == 100
    clock.advance(100)
    assert space.count() == 1
    last = space.last_lsn
    assert svc.registry.sweep_expired() == 7
    assert space.last_lsn == last + 3  # batches of 3, 3, 1
    assert [m.id for m in space.list().memories] == ["own"]
    svc.close()
    svc = make_service(tmp_path, [], clock=clock)
    assert svc.registry.describe("ttl").default_ttl_seconds == 100  # from the marker, unloaded
    assert svc.space("ttl").default_ttl == 100  # from the space's meta
    svc.close()


def test_sweep_on_load(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = make_service(tmp_path, ["load"], clock=clock)
    svc.space("load").remember(MemoryInput(id="x", content="soon gone", ttl_seconds=5))
    svc.close()
    clock.advance(10)
    svc = make_service(tmp_path, [], clock=clock)
    space = svc.space("load")  # opening queues one sweep batch
    assert space.store is not None
    space.store.write(lambda conn, lsn: None, mutates=False)  # FIFO barrier behind the sweep
    assert space.store.reader().execute("SELECT count(*) FROM memories").fetchone()[0] == 0
    svc.close()


def test_an_expired_memory_frees_its_id_before_the_sweep(tmp_path: Path) -> None:
    """Gone to readers means gone to writers too: remember, batch and PUT may take the id of an
    expired, unswept memory (deleting it as the sweep would); PATCH finds nothing to change."""
    clock = FakeClock(T0)
    svc = make_service(tmp_path, ["reuse"], clock=clock)
    space = svc.space("reuse")
    cog = svc.cognition("reuse")
    for mid in ("a", "b", "c"):
        space.remember(MemoryInput(id=mid, content=f"first {mid}", embedding=VEC_A, ttl_seconds=10))
    space.remember(MemoryInput(id="anchor", content="stays", embedding=VEC_B))
    cog.associate(AssociateInput(source_id="anchor", target_id="c", strength=0.9))
    clock.advance(11)
    start = space.last_lsn

    with pytest.raises(MemoryNotFound):
        space.update("a", patch=MemoryPatch(content="patched"))
    assert space.last_lsn == start  # the refused PATCH wrote nothing

    space.remember(MemoryInput(id="a", content="second a", embedding=VEC_B))
    [queued] = space.submit_remember_batch([MemoryInput(id="b", content="second b")])
    assert not isinstance(queued, Exception)
    fut, receipt = queued
    receipt(fut.result())
    put = space.update("c", put=MemoryInput(id="c", content="second c"))
    assert put.created  # from the caller's view the memory did not exist
    assert {m.id: m.content for m in space.list(limit=10).memories} == {
        "a": "second a", "b": "second b", "c": "second c", "anchor": "stays"}
    assert all(m.expires_at is None for m in space.list(limit=10).memories)
    # the expired c's association went with it: the new c starts with none
    assert edges_of(space, ["c"], 10) == []
    # the full-text index follows: the old texts are gone, the new ones found (a batch indexes late)
    assert _ids(recall(space, Cue(query="first", max_results=10))) == set()
    assert _ids(recall(space, Cue(query="second", max_results=10))) == {"a", "b", "c"}
    logged, _, _ = read_after(space.store.reader(), (start, 10**6), 100, None)  # type: ignore[union-attr]
    assert [(e.type, e.data["memory_id"]) for e in logged] == [
        ("expired", "a"), ("stored", "a"), ("expired", "b"), ("stored", "b"),
        ("expired", "c"), ("stored", "c")]
    assert svc.registry.sweep_expired() == 0  # nothing left for the sweep
    svc.close()


def test_a_batch_reusing_the_newest_expired_id_is_indexed_for_words(tmp_path: Path) -> None:
    """The expired memory holding the largest rowid gives that rowid to the next INSERT: inside a
    batch (whose full text is indexed after its rows) the new memory must still be found by words."""
    clock = FakeClock(T0)
    svc = make_service(tmp_path, ["newest"], clock=clock)
    space = svc.space("newest")
    space.remember(MemoryInput(id="keep", content="alpha words"))
    space.remember(MemoryInput(id="x", content="first text", ttl_seconds=10))  # the largest rowid
    clock.advance(11)
    for queued in space.submit_remember_batch([MemoryInput(id="x", content="brandnew zebra"),
                                               MemoryInput(id="y", content="another zebra")]):
        assert not isinstance(queued, Exception)
        fut, receipt = queued
        receipt(fut.result())
    assert _ids(recall(space, Cue(query="zebra", max_results=5))) == {"x", "y"}
    assert _ids(recall(space, Cue(query="first", max_results=5))) == set()
    svc.close()
    conn = sqlite3.connect(tmp_path / "newest" / "space.db")
    try:  # FTS5's own check: every index entry matches its row's text (raises when not)
        conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES('integrity-check', 1)")
    finally:
        conn.close()


def test_a_reused_rowid_carries_the_new_vector_only(tmp_path: Path) -> None:
    """Reusing the newest expired memory's id gives its rowid to the new row: the vector index must
    hold the new vector under that rowid, not the old one, in memory and after a reopen."""
    old, new = [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    clock = FakeClock(T0)
    svc = make_service(tmp_path, ["vec"], clock=clock)
    space = svc.space("vec")
    space.remember(MemoryInput(id="keep", content="stays", embedding=VEC_A))
    space.remember(MemoryInput(id="x", content="old", embedding=old, ttl_seconds=10))  # the largest rowid
    rowid = int(space.row_by_id("x")[0])
    clock.advance(11)
    space.remember(MemoryInput(id="x", content="new", embedding=new))
    assert int(space.row_by_id("x")[0]) == rowid  # the case under test: the rowid was handed on

    def top(s: object, vec: list[float]) -> tuple[str, float]:
        best = recall(s, Cue(embedding=vec, max_results=1, rank="similarity")).results[0]  # type: ignore[arg-type]
        return best.memory.id, best.score

    for _ in range(2):  # live, then reopened from disk
        # the index itself: one live row per memory, the rowid under the new vector alone
        assert len(space.vectors) == 2
        hits = dict(space.vectors.search_exact(np.asarray(old, dtype=np.float32), 2))
        assert hits.get(rowid, 0.0) < 0.5
        got, score = top(space, new)
        assert got == "x" and score > 0.99
        got, score = top(space, old)  # nothing points at the old vector any more
        assert got != "x" or score < 0.5
        svc.close()
        svc = make_service(tmp_path, [], clock=clock)
        space = svc.space("vec")
    svc.close()


@pytest.mark.parametrize("fields, words", [
    ({"ttl_seconds": -1}, "ttl_seconds"),
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"ttl_seconds": 10, "expires_at": T0 + 100}, "not both"),
    ({"expires_at": T0 - 1}, "not in the future"),
    ({"expires_at": "yesterday"}, "expires_at"),
])
def test_bad_expiry_is_refused(tmp_path: Path, fields: dict[str, object], words: str) -> None:
    clock = FakeClock(T0)
    svc = make_service(tmp_path, ["bad"], clock=clock)
    space = svc.space("bad")
    from pydantic import ValidationError

    with pytest.raises((InvalidInput, ValidationError)) as err:
        space.remember(MemoryInput.model_validate({"content": "x", **fields}))
    assert words in str(err.value)
    assert space.count() == 0 and space.last_lsn == 0
    with pytest.raises(InvalidInput):
        svc.registry.create("bad-ttl", default_ttl_seconds=-5)
    svc.close()
