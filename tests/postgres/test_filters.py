"""Metadata filters (SPEC §11) in PostgreSQL: the SQL of core/postgres/filters.py over the typed
memory_meta table selects exactly the memories ``core.filters.evaluate`` says match."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engram.core.filters import evaluate, parse
from engram.core.postgres import MemoryRow, PostgresStore
from engram.core.postgres.filters import where

from .conftest import new_space

# Values where a translation goes wrong if it can: classes that look alike (1, 1.0, True, "1"),
# integers a double cannot hold (2**53 + 1, 2**60 + 1 beside float(2**60)), a float's exact value
# (0.1), denormals, and strings whose code point order differs from a collation's ("B" < "a").
EDGES: list[Any] = [0, 1, -1, 0.5, 1.0, -0.0, 2**53, 2**53 + 1, float(2**53), 2**60 + 1, float(2**60),
                    2**63 - 1, -(2**63), 0.1, 1e-300, 5e-324, True, False, None, "", "a", "B", "ab", "é",
                    "\U0001f600", "\uffff", "10", "9", "1"]
KEYS = ["a", "b", "c"]
edge_values = st.sampled_from(EDGES)
scalars = st.one_of(  # edge values three times as often as the rest: collisions are the point
    edge_values, edge_values, edge_values,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=4),
)
ordered = st.one_of(st.sampled_from([e for e in EDGES if isinstance(e, int | float | str)
                                     and not isinstance(e, bool)]), st.integers(-5, 5), st.text(max_size=2)
                    .filter(lambda s: "\x00" not in s))
metadata = st.dictionaries(st.sampled_from(KEYS), scalars, max_size=3)
leaf = st.one_of(
    st.builds(lambda k, v: {k: v}, st.sampled_from(KEYS), scalars),
    st.builds(lambda k, op, v: {k: {op: v}}, st.sampled_from(KEYS), st.sampled_from(["$eq", "$ne"]), scalars),
    st.builds(lambda k, op, v: {k: {op: v}}, st.sampled_from(KEYS),
              st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ordered),
    st.builds(lambda k, op, v: {k: {op: v}}, st.sampled_from(KEYS), st.sampled_from(["$in", "$nin"]),
              st.lists(scalars, max_size=3)),
    st.builds(lambda k, v: {k: {"$exists": v}}, st.sampled_from(KEYS), st.booleans()),
)
raw_filters = st.recursive(leaf, lambda inner: st.builds(
    lambda op, xs: {op: xs}, st.sampled_from(["$and", "$or"]), st.lists(inner, min_size=1, max_size=3)),
    max_leaves=6)


COLLIDING = [{"a": True}, {"a": 1}, {"a": 1.0}, {"a": "1"}, {"a": None}, {}, {"a": 2**53 + 1}]


@example(metas=COLLIDING, raw={"a": 1})
@example(metas=COLLIDING, raw={"a": {"$nin": [True, "1"]}})
@example(metas=COLLIDING, raw={"$or": [{"a": None}, {"a": {"$gte": 2**53}}]})
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=st.lists(metadata, min_size=1, max_size=6), raw=raw_filters)
def test_sql_filter_matches_evaluate(store: PostgresStore, metas: list[dict[str, Any]],
                                     raw: dict[str, Any]) -> None:
    node = parse(raw)
    sid = f"f-{uuid.uuid4().hex[:12]}"
    store.create_space(sid)
    try:
        store.remember_many(sid, [(MemoryRow(id=f"m{i}", content="x", metadata=m, created_at=float(i)), None)
                                  for i, m in enumerate(metas)])
        got = [m.id for m in store.list_memories(sid, filter=node)]
        want = [f"m{i}" for i, m in enumerate(metas) if evaluate(node, m)]
        assert got == want, (raw, metas)
    finally:
        store.delete_space(sid)


def test_exact_numbers_classes_and_code_point_order(store: PostgresStore) -> None:
    sid = new_space(store, dim=None)
    metas = {"big": {"n": 2**53 + 1}, "bigf": {"n": float(2**53)}, "one": {"n": 1}, "onef": {"n": 1.0},
             "true": {"n": True}, "text": {"n": "1"}, "tenth": {"n": 0.1}, "B": {"s": "B"}, "a": {"s": "a"},
             "smile": {"s": "\U0001f600"}, "nul": {"n": None}}
    store.remember_many(sid, [(MemoryRow(id=k, content=k, created_at=float(i)), None)
                              for i, k in enumerate(metas)])
    for k, m in metas.items():
        store.patch(sid, k, {"metadata": m})

    def ids(raw: dict[str, Any]) -> set[str]:
        return {m.id for m in store.list_memories(sid, filter=parse(raw), limit=100)}

    assert ids({"n": 1}) == {"one", "onef"}  # 1 == 1.0; never True, never "1"
    assert ids({"n": True}) == {"true"}
    assert ids({"n": {"$gt": 2**53}}) == {"big"}  # a double would make 2**53 + 1 equal to 2**53
    assert ids({"n": {"$lt": 2**53 + 1}}) == {"bigf", "one", "onef", "tenth"}  # the operand exact too
    assert ids({"n": {"$gt": 0.1}}) == {"one", "onef", "big", "bigf"}  # 0.1 is its double's exact value
    assert ids({"n": {"$lte": 0.1}}) == {"tenth"}
    assert ids({"s": {"$lt": "a"}}) == {"B"}  # code point order, not a language's collation
    assert ids({"s": {"$gt": "\uffff"}}) == {"smile"}
    assert ids({"n": None}) == {"nul"} and ids({"n": {"$exists": False}}) == {"B", "a", "smile"}
    assert ids({"n": {"$in": []}}) == set() and len(ids({"n": {"$nin": []}})) == len(metas)


def test_recall_applies_the_filter_inside_the_top_k(store: PostgresStore) -> None:
    sid = new_space(store)
    rng = np.random.default_rng(5)
    store.remember_many(sid, [(MemoryRow(id=f"r{i}", content="x", metadata={"team": "a" if i < 20 else "b"}),
                               rng.standard_normal(4).astype(np.float32)) for i in range(25)])
    got = store.recall(sid, np.ones(4, dtype=np.float32), k=3, filter=parse({"team": "b"}))
    assert len(got) == 3 and all(int(i[1:]) >= 20 for i, _ in got)  # not the 3 nearest of all, filtered


def test_the_filter_expression_fixes_the_space_in_every_subquery() -> None:
    node = parse({"a": 1, "$or": [{"b": {"$in": ["x", 2]}}, {"c": {"$exists": False}}, {"d": {"$gt": "m"}}]})
    expr, params = where(node)
    text = expr.as_string()
    assert text.count("FROM engram.memory_meta") == 4
    assert text.count("mm.space_id = %(space)s") == 4
    assert text.startswith("(") and text.endswith(")")  # AND-ed whole after the space filter
    assert not any("space" in p for p in params)
    # String ranges compare code points whatever the database's collation. The test database is
    # C.UTF-8 and this PostgreSQL build has neither ICU nor other libc locales, so no test here can
    # observe a collation's order: the text of the comparison is what is checked.
    assert 'mm.vtext COLLATE "C" >' in text
