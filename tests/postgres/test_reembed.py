"""Re-embedding and per-space embedders on PostgreSQL (SPEC §9; core/postgres/reembed.py).

At the store: two workers (two servers' pools) never embed a row twice; an update during a
re-embedding gets the new text's vector; a write embedded with the old model that meets the
switch is embedded again. With two real servers on one database: a space created with its own
embedder through one is served with it by the other; a re-embedding started through one finishes
while the other writes, and both then use the new model (every vector is the new model's of the
memory's text)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from engram.core.models import MemoryInput
from engram.core.postgres import PostgresDatabase, PostgresStore
from engram.core.postgres import reembed as pg_reembed
from engram.core.postgres.space import PostgresSpace
from engram.core.postgres.store import MemoryRow
from engram.embedding import Embedders, EmbedderSpec
from engram.settings import Settings
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers

OLD = EmbedderSpec("hash", "hash-16")
NEW = EmbedderSpec("hash", "hash-32")
TOL = 2e-3  # halfvec storage


@pytest.fixture(scope="module")
def embedders() -> Iterator[Embedders]:
    pool = Embedders(Settings(embedder="hash"))
    yield pool
    pool.close()


def embed(embedders: Embedders, spec: EmbedderSpec, text: str) -> np.ndarray:
    model = embedders.get(spec)
    assert model is not None
    return np.asarray(model.embed([text])[0], dtype=np.float32)


def hash_space(store: PostgresStore, embedders: Embedders, n: int) -> str:
    """A space with OLD as its embedder and ``n`` memories embedded by it."""
    sid = f"r-{uuid.uuid4().hex[:12]}"
    assert store.create_space(sid, 16, embedder=json.dumps({**OLD.to_dict(), "explicit": True}))
    store.remember_many(sid, [(MemoryRow(id=f"m{i}", content=f"memory number {i} about topic {i % 3}"),
                               embed(embedders, OLD, f"memory number {i} about topic {i % 3}"))
                              for i in range(n)])
    return sid


def run_to_end(store: PostgresStore, sid: str, embedders: Embedders, limit: int = 4) -> None:
    for _ in range(100):
        if not pg_reembed.step(store, sid, embedders, limit):
            return
    raise AssertionError("the re-embedding did not finish")


class GatedEmbedder:
    """A real (hash) embedder that counts the texts it embeds and can hold its first call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.dimension = inner.dimension

    def embed(self, texts: Sequence[str]) -> Any:
        self.texts.extend(texts)
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.embed(texts)


class OneModel:
    """The Embedders API of one embedder (``step`` asks only ``get``)."""

    def __init__(self, model: GatedEmbedder) -> None:
        self.model = model

    def get(self, spec: EmbedderSpec) -> GatedEmbedder:
        return self.model


def test_two_workers_never_embed_a_row_twice(pg: PgCluster, store: PostgresStore,
                                             embedders: Embedders) -> None:
    sid = hash_space(store, embedders, 6)
    assert pg_reembed.start(store, sid, NEW)
    assert not pg_reembed.start(store, sid, NEW)  # the same target again: resumed, not restarted
    gated = GatedEmbedder(embedders.get(NEW))
    other = PostgresStore(PostgresDatabase(pg.app, min_size=1, max_size=2), vector_index=False)  # server B
    try:
        first: list[bool] = []
        worker = threading.Thread(target=lambda: first.append(
            pg_reembed.step(store, sid, OneModel(gated), 6)))  # type: ignore[arg-type]
        worker.start()
        assert gated.entered.wait(30)  # A holds the space's re-embedding, mid-batch
        assert pg_reembed.step(other, sid, OneModel(gated), 6) is False  # type: ignore[arg-type]
        gated.release.set()
        worker.join(30)
        assert first == [True]
        run_to_end(other, sid, OneModel(gated))  # type: ignore[arg-type]
    finally:
        gated.release.set()
        other.db.close()
    assert sorted(gated.texts) == sorted(f"memory number {i} about topic {i % 3}" for i in range(6))
    info = store.space(sid)
    assert info is not None and info.dimension == 32 and info.reembed is None
    assert json.loads(info.embedder or "{}")["model"] == "hash-32"
    for i in range(6):
        got = store.embedding(sid, f"m{i}")
        assert got is not None and got.shape == (32,)
        assert np.allclose(got, embed(embedders, NEW, f"memory number {i} about topic {i % 3}"), atol=TOL)


def test_an_update_during_a_reembedding_gets_the_new_texts_vector(store: PostgresStore,
                                                                  embedders: Embedders) -> None:
    sid = hash_space(store, embedders, 3)
    pg_reembed.start(store, sid, NEW)
    assert pg_reembed.step(store, sid, embedders, 10)  # every row staged, not switched yet
    assert pg_reembed.progress(store, sid).done == 3
    store.patch(sid, "m1", {"content": "an entirely different text"},
                embed(embedders, OLD, "an entirely different text"))
    assert pg_reembed.progress(store, sid).done == 2  # its staged vector was of the old text
    run_to_end(store, sid, embedders)
    got = store.embedding(sid, "m1")
    assert got is not None
    assert np.allclose(got, embed(embedders, NEW, "an entirely different text"), atol=TOL)


def test_a_write_embedded_before_the_switch_is_embedded_again(store: PostgresStore,
                                                              embedders: Embedders) -> None:
    sid = hash_space(store, embedders, 2)
    info = store.space(sid)
    assert info is not None
    # this server's handle, made before the switch: it embeds with OLD
    stale = PostgresSpace(sid, store, Settings(embedder="hash"), time.time, dimension=16,
                          embedders=embedders, embedder=info.embedder)
    pg_reembed.start(store, sid, NEW)
    run_to_end(store, sid, embedders)
    receipt = stale.remember(MemoryInput(id="late", content="written by a stale handle"))
    assert receipt.lsn > 0
    got = store.embedding(sid, "late")
    assert got is not None and got.shape == (32,)
    assert np.allclose(got, embed(embedders, NEW, "written by a stale handle"), atol=TOL)
    assert stale.embedder_spec == NEW and stale.dim == 32


# -------------------------------------------------------------------------- two real servers


@pytest.fixture(scope="module")
def servers(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    dsn = fresh_database(pg, "reembed")
    with pg_servers(dsn, tmp_path_factory, ("ra", "rb"), embedding_batch_size=8) as pair:
        yield pair


def _http(srv: EngramProcess, sid: str) -> httpx.Client:
    return httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": sid})


def _vector_of(client: httpx.Client, mid: str) -> np.ndarray:
    r = client.get(f"/api/v1/memories/{mid}")
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embedding"], dtype=np.float32)


def test_a_reembedding_started_on_one_server_finishes_while_another_writes(
        servers: tuple[EngramProcess, EngramProcess], embedders: Embedders, tmp_path: Path) -> None:
    a, b = servers
    sid = f"re-{uuid.uuid4().hex[:8]}"
    r = httpx.post(a.http_url + "/api/v1/spaces", timeout=30,
                   json={"id": sid, "embedder": {"provider": "hash", "model": "hash-16"}})
    assert r.status_code == 201, r.text
    on_b = httpx.get(f"{b.http_url}/api/v1/spaces/{sid}", timeout=30).json()
    assert on_b["embedder"] == {"provider": "hash", "model": "hash-16", "dimension": 16}
    assert on_b["dimension"] == 16 and on_b["embedding_backlog"] == 0
    ca, cb = _http(a, sid), _http(b, sid)
    texts = {f"a{i}": f"note {i} on the garden and the weather {i % 4}" for i in range(40)}
    for mid, text in texts.items():
        assert cb.post("/api/v1/memories/remember", json={"id": mid, "content": text}).status_code == 201
    assert np.allclose(_vector_of(ca, "a0"), embed(embedders, OLD, texts["a0"]), atol=TOL)

    started = ca.post(f"/api/v1/spaces/{sid}/reembed", json={"provider": "hash", "model": "hash-32"})
    assert started.status_code == 202, started.text
    assert started.json()["target"]["model"] == "hash-32"
    # B writes while the re-embedding runs: stores, a PATCH of text, a delete
    for i in range(20):
        text = f"later note {i} about bicycles {i % 5}"
        texts[f"b{i}"] = text
        assert cb.post("/api/v1/memories/remember", json={"id": f"b{i}", "content": text}).status_code == 201
    texts["a3"] = "rewritten while re-embedding"
    assert cb.patch("/api/v1/memories/a3", json={"content": texts["a3"]}).status_code == 200
    assert cb.delete("/api/v1/memories/a5", params={"mode": "delete"}).status_code == 200
    del texts["a5"]
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = cb.get(f"/api/v1/spaces/{sid}/reembed").json()
        if status["state"] == "idle":
            break
        time.sleep(0.2)
    assert status["state"] == "idle", status
    assert status["embedder"] == {"provider": "hash", "model": "hash-32", "dimension": 32}
    assert status["done"] == status["total"] == len(texts)
    for srv in (a, b):
        desc = httpx.get(f"{srv.http_url}/api/v1/spaces/{sid}", timeout=30).json()
        assert desc["embedder"]["model"] == "hash-32" and desc["dimension"] == 32
    for mid, text in texts.items():
        assert np.allclose(_vector_of(ca, mid), embed(embedders, NEW, text), atol=TOL), mid
    # both servers embed new text and queries with the new model
    after = ca.post("/api/v1/memories/remember", json={"id": "after", "content": "a red bicycle"})
    assert after.status_code == 201
    assert np.allclose(_vector_of(cb, "after"), embed(embedders, NEW, "a red bicycle"), atol=TOL)
    hits = cb.post("/api/v1/memories/recall", json={"query": "a red bicycle", "rank": "similarity",
                                                     "max_results": 3}).json()["results"]
    assert hits[0]["memory"]["id"] == "after" and hits[0]["similarity"] > 0.99
    # a second re-embedding with another target while none runs starts; a bad provider is a 400
    assert ca.post(f"/api/v1/spaces/{sid}/reembed", json={"provider": "none"}).status_code == 400
    assert ca.post("/api/v1/spaces/nope-nope/reembed", json={"provider": "hash"}).status_code == 404
    for c in (ca, cb):
        c.close()


def test_a_space_with_its_own_embedder_is_backed_up_and_restored_with_it(
        servers: tuple[EngramProcess, EngramProcess], embedders: Embedders) -> None:
    a, b = servers
    sid, copy = f"bk-{uuid.uuid4().hex[:8]}", f"cp-{uuid.uuid4().hex[:8]}"
    r = httpx.post(a.http_url + "/api/v1/spaces", timeout=30,
                   json={"id": sid, "embedder": {"provider": "hash", "model": "hash-16"}})
    assert r.status_code == 201, r.text
    with _http(a, sid) as ca:
        assert ca.post("/api/v1/memories/remember", json={"id": "x", "content": "kept"}).status_code == 201
    taken = httpx.get(f"{a.http_url}/api/v1/spaces/{sid}/backup", timeout=30)
    assert taken.status_code == 200
    put = httpx.post(f"{b.http_url}/api/v1/spaces/{copy}/restore", content=taken.content, timeout=30)
    assert put.status_code in (200, 201), put.text
    desc = httpx.get(f"{a.http_url}/api/v1/spaces/{copy}", timeout=30).json()
    assert desc["embedder"] == {"provider": "hash", "model": "hash-16", "dimension": 16}
    with _http(b, copy) as cb:
        stored = cb.post("/api/v1/memories/remember", json={"id": "y", "content": "new text"})
        assert stored.status_code == 201
        assert np.allclose(_vector_of(cb, "y"), embed(embedders, OLD, "new text"), atol=TOL)
