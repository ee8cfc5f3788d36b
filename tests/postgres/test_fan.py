"""The fan adjustment on PostgreSQL ranks as on SQLite (issue 17; recall.fan_adjusted, index/density.py).

A real SQLite server and a real PostgreSQL server, both with the ``hash`` embedder (the server
embeds, so the fan applies), get the same memories: a crowded neighbourhood of small talk and a few
sparse, distinctive memories. The same cues then rank alike on both, with the same ``signals.fan``
(within the float16 rounding both backends store vectors with), crowded memories discounted
(fan > 0) and sparse ones lifted (fan < 0).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from engram.cognition.recall import W_TEXT
from engram.core.filters import parse
from engram.core.postgres import MemoryRow, PostgresStore
from engram.index import density
from engram.testing.clients import RestSpaceClient
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, start_pg_server

FAN_TOL = 0.01

CROWD = [f"so how are you doing today friend {i}" for i in range(8)] + [
    "how are you doing today my friend", "so how are you today friend", "how are you doing friend"]
SPARSE = ["the marathon went well today, friend", "quarterly tax forms are due in april",
          "the heron stands in the reeds by the river", "my sister moved to lisbon in june",
          "you should water the fern on fridays"]
CUES = ["how are you doing at the marathon today", "are you doing the tax forms today friend",
        "how is the heron doing today"]


Pair = tuple[EngramProcess, EngramProcess]


@pytest.fixture(scope="module")
def pair(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    lite = EngramProcess.start(tmp_path_factory.mktemp("lite"), settings={"embedder": "hash"})
    try:
        post = start_pg_server(tmp_path_factory.mktemp("post"), fresh_database(pg, "fan"))
        try:
            yield lite, post
        finally:
            post.stop()
    finally:
        lite.stop()


def _space(srv: EngramProcess) -> str:
    sid = f"fan-{uuid.uuid4().hex[:8]}"
    r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid}, timeout=30)
    assert r.status_code == 201, r.text
    return sid


def _fill(srv: EngramProcess, texts: list[tuple[str, str]]) -> str:
    sid = _space(srv)
    with RestSpaceClient(srv.http_url, sid) as c:
        for mid, text in texts:
            c.remember(id=mid, content=text)
    return sid


def _ranked(srv: EngramProcess, sid: str, cue: str) -> list[tuple[str, dict[str, float]]]:
    """The ids a recall ranked, best first, each with its signals and its score (``"score"``)."""
    with RestSpaceClient(srv.http_url, sid) as c:
        res = c.recall(query=cue, max_results=20, wait_for_embeddings=True)
    return [(it["memory"]["id"], {**it["signals"], "score": it["score"]}) for it in res["results"]]


def _in_order(got: list[tuple[str, dict[str, float]]], ref: list[tuple[str, dict[str, float]]]) -> bool:
    """``got`` ranks the ids of ``ref`` in ``ref``'s order, where ``ref`` scored them apart: only
    the order of equal scores (near-identical small talk) may differ, as the two backends break
    ties each its own way."""
    group: dict[str, int] = {}
    for i, (mid, sig) in enumerate(ref):
        group[mid] = group[ref[i - 1][0]] if i and abs(sig["score"] - ref[i - 1][1]["score"]) < 1e-6 else i
    order = [group.get(mid, -1) for mid, _ in got]
    return set(group) == {m for m, _ in got} and order == sorted(order)


DATA = [(f"crowd{i}", t) for i, t in enumerate(CROWD)] + [(f"sparse{i}", t) for i, t in enumerate(SPARSE)]


def _vector_part(sig: dict[str, float]) -> float:
    """The relevance a result's fan-adjusted cosine gave (recall.relevance_array's ``v``), out of
    its relevance and text score: the part the fan moves, and the one both backends compute from
    the same inputs (the text scores differ by design: BM25 against ts_rank)."""
    return 1.0 - (1.0 - sig["relevance"]) / (1.0 - W_TEXT * sig.get("text", 0.0))


def test_postgres_ranks_and_discounts_crowds_as_sqlite_does(pair: Pair) -> None:
    lite, post = pair
    a, b = _fill(lite, DATA), _fill(post, DATA)
    for n, cue in enumerate(CUES):
        got_lite, got_post = _ranked(lite, a, cue), _ranked(post, b, cue)
        if n == 0:  # its text scores agree in order: the whole ranking is the same
            assert _in_order(got_post, got_lite) and _in_order(got_lite, got_post), (cue, got_lite, got_post)
        post_of = dict(got_post)
        for mid, s_lite in got_lite:
            s_post = post_of[mid]
            assert ("fan" in s_post) == ("fan" in s_lite), (cue, mid)
            assert s_post.get("fan", 0.0) == pytest.approx(s_lite.get("fan", 0.0), abs=FAN_TOL), (cue, mid)
            assert _vector_part(s_post) == pytest.approx(_vector_part(s_lite), abs=FAN_TOL), (cue, mid)
        by_vector = [(m, {"score": round(_vector_part(sig), 3)}) for m, sig in got_lite]
        by_vector_post = [(m, {"score": round(_vector_part(sig), 3)}) for m, sig in got_post]
        by_vector.sort(key=lambda t: -t[1]["score"])
        by_vector_post.sort(key=lambda t: -t[1]["score"])
        assert _in_order(by_vector_post, by_vector), cue
        crowded = [sig["fan"] for m, sig in got_post if m.startswith("crowd")]
        sparse = [sig["fan"] for m, sig in got_post if m.startswith("sparse")]
        assert crowded and sparse and min(crowded) > 0 > max(sparse), (cue, got_post)
        # the fan moved the ranking: a sparse memory is above a crowded one it is less similar to
        assert any(ls["vector"] < cs["vector"] and _vector_part(ls) > _vector_part(cs)
                   for m, ls in got_post if m.startswith("sparse")
                   for c, cs in got_post if c.startswith("crowd")), cue


def test_fans_are_the_mean_of_the_k_nearest_and_unmeasured_rows_get_measured(store: PostgresStore) -> None:
    """index/density.py's definition, kept by the writes: each memory's fan is the mean cosine of
    its ``K`` nearest, whether they came before or after it; rows without one (older than schema
    migration 7, a re-embedding's) are measured by ``measure_fans``, once."""
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(density.K + 1, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    sid = f"fan-{uuid.uuid4().hex[:8]}"
    assert store.create_space(sid, dimension=8)
    ids = [f"m{i}" for i in range(len(vecs))]
    for mid, v in zip(ids, vecs, strict=True):
        store.remember(sid, MemoryRow(id=mid, content=mid, metadata={"n": int(mid[1:])}), v)
    cos = vecs @ vecs.T
    want = {mid: float((cos[i].sum() - cos[i, i]) / density.K) for i, mid in enumerate(ids)}  # K = all others

    def check() -> None:
        got, mean, n = store.fans(sid, ids)
        assert n == len(ids) and mean == pytest.approx(np.mean(list(want.values())), abs=2e-3)
        assert set(got) == set(ids)
        for mid in ids:
            assert got[mid] == pytest.approx(want[mid], abs=2e-3), mid

    check()
    with store.db.space(sid) as tx:  # as an older schema left them
        tx.execute("DELETE FROM engram.fans WHERE space_id = %(space)s")
    assert store.fans(sid, ids) == ({}, 0.0, 0)
    assert store.measure_fans(sid, limit=4) == 4 and store.measure_fans(sid) == 2
    assert store.measure_fans(sid) == 0
    got, _, n = store.fans(sid, ids)
    assert n == len(ids) and set(got) == set(ids)
    store.forget(sid, "m0", "suppress")  # out of the average, as SQLite's LocalDensity drops it
    store.forget_matching(sid, parse({"n": 1}), "suppress")
    got, _, n = store.fans(sid, ids)
    assert n == len(ids) - 2 and set(got) == set(ids) - {"m0", "m1"}


def test_a_space_that_embeds_nothing_keeps_no_fans(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory
                                                    ) -> None:
    """As on SQLite (core/embedded.py ``_load_pending``): only a space whose text the server embeds
    weighs fans in recall, so a space of client vectors only pays no search for them on write;
    a server-embedding space keeps them."""
    dsn = fresh_database(pg, "nofan")
    rng = np.random.default_rng(3)
    counts = {}
    for embedder in ("none", "hash"):
        srv = start_pg_server(tmp_path_factory.mktemp(f"fan-{embedder}"), dsn, embedder=embedder)
        try:
            sid = f"fan-{embedder}-{uuid.uuid4().hex[:6]}"
            r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid}, timeout=30)
            assert r.status_code == 201, r.text
            client = RestSpaceClient(srv.http_url, sid)
            dim = 384 if embedder == "hash" else 16
            for i in range(12):
                client.remember(content=f"memory {i}", embedding=rng.normal(size=dim).tolist())
            with psycopg.connect(dsn) as conn:  # the app role: row-level security, the space set
                conn.execute("SELECT set_config('engram.space_id', %s, true)", (sid,))
                row = conn.execute("SELECT count(*) FROM engram.fans WHERE space_id = %s", (sid,)).fetchone()
            counts[embedder] = int(row[0]) if row else 0
        finally:
            srv.stop()
    assert counts == {"none": 0, "hash": 12}, counts


def test_unmeasured_fans_are_measured_a_chunk_per_transaction(store: PostgresStore) -> None:
    """``measure_fans`` holds the space's counter row (so the space's writers wait) for one chunk
    of vectors at a time, not for the whole round: each chunk is its own transaction."""
    rng = np.random.default_rng(11)
    vecs = rng.normal(size=(7, 8)).astype(np.float32)
    sid = f"fanc-{uuid.uuid4().hex[:8]}"
    assert store.create_space(sid, dimension=8)
    ids = [f"c{i}" for i in range(len(vecs))]
    for mid, v in zip(ids, vecs, strict=True):
        store.remember(sid, MemoryRow(id=mid, content=mid), v)
    with store.db.space(sid) as tx:
        tx.execute("DELETE FROM engram.fans WHERE space_id = %(space)s")
    opened: list[str] = []
    real = store.db.space

    def counted(space_id: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(space_id)
        return real(space_id, *args, **kwargs)

    store.db.space = counted  # type: ignore[method-assign]
    try:
        assert store.measure_fans(sid, limit=6, chunk=2) == 6
    finally:
        del store.db.space
    assert opened == [sid] * 3  # three transactions of two
    got, _, n = store.fans(sid, ids)
    assert n == 6
    assert store.measure_fans(sid, chunk=2) == 1 and store.measure_fans(sid) == 0
    got, _, n = store.fans(sid, ids)
    assert n == len(ids) and set(got) == set(ids)
