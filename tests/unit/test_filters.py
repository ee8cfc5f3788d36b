"""Metadata filters (core.filters): the grammar and its limits, and the two SQL forms against
the Python evaluator, over a real space database (its triggers fill the metadata index)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.core import filters as f
from engram.storage.sqlite_store import SpaceStore

# -- strategies -----------------------------------------------------------------------------------

FILTER_KEYS = ["a", "b", "c", "k.x", 'q"uote', "é", ""]
KEYS = st.sampled_from(FILTER_KEYS)
META_KEYS = st.sampled_from([*FILTER_KEYS, "$d"])  # stored, but not named by a filter
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=6)
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.integers(f.INT_MIN, f.INT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 2**53 + 0.0, float(2**63), -float(2**63)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, st.sampled_from(["1", "true", "", "a", "b"]))
METADATA = st.dictionaries(META_KEYS, SCALARS, max_size=5)


def _cond() -> st.SearchStrategy[dict[str, Any]]:
    ops = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), SCALARS),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), st.one_of(NUMBERS, TEXT)),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(SCALARS, max_size=4)),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    single = st.builds(lambda k, o: {k: {o[0]: o[1]}}, KEYS, ops)
    several = st.builds(lambda k, os: {k: dict(os)}, KEYS, st.lists(ops, min_size=1, max_size=3))
    shorthand = st.builds(lambda k, v: {k: v}, KEYS, SCALARS)
    return st.one_of(single, several, shorthand)


FILTERS = st.recursive(
    _cond(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=6,
)


# -- a real database ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpaceStore]:
    s = SpaceStore(Path(tmp_path_factory.mktemp("filters")) / "space", durable=False)
    yield s
    s.close()


def _load(store: SpaceStore, docs: list[dict[str, Any]], update: dict[str, Any] | None = None) -> None:
    """Replace every row by ``docs`` (rowid i+1); then, if given, update row 1's metadata."""

    def op(conn: sqlite3.Connection, lsn: int) -> None:
        conn.execute("DELETE FROM memories")
        for i, meta in enumerate(docs, 1):
            conn.execute(
                "INSERT INTO memories(rowid, id, kind, content, confidence, created_at, last_access, "
                "activation, decay_rate, memory_type, metadata, lsn) "
                "VALUES (?, ?, 'memory', 'x', 0.5, 1, 1, 0.5, 0.1, 'semantic', ?, ?)",
                (i, f"m{i}", json.dumps(meta, ensure_ascii=False, separators=(",", ":")), lsn))
        if update is not None and docs:
            conn.execute("UPDATE memories SET metadata = ? WHERE rowid = 1",
                         (json.dumps(update, ensure_ascii=False),))

    store.write(op)


def _sql_where(store: SpaceStore, node: f.Node) -> set[int]:
    sql, params = f.where_sql(node, "m")
    return {r for (r,) in store.reader().execute(f"SELECT rowid FROM memories AS m WHERE {sql}", params)}


def _sql_set(store: SpaceStore, node: f.Node) -> set[int]:
    sql, params = f.rowid_set_sql(node)
    return {r for (r,) in store.reader().execute(sql, params)}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(METADATA, max_size=8), raw=FILTERS, update=st.none() | METADATA)
def test_sql_forms_agree_with_the_evaluator(store: SpaceStore, docs: list[dict[str, Any]],
                                            raw: dict[str, Any], update: dict[str, Any] | None) -> None:
    node = f.parse(raw)
    assert node is not None
    _load(store, docs, update)
    if update is not None and docs:
        docs = [update, *docs[1:]]
    expected = {i for i, meta in enumerate(docs, 1) if f.evaluate(node, meta)}
    assert _sql_where(store, node) == expected, (raw, docs)
    assert _sql_set(store, node) == expected, (raw, docs)


def test_the_index_follows_every_write(store: SpaceStore) -> None:
    _load(store, [{"a": 1}, {"a": "1"}, {"a": True}, {"b": None}])
    rows = sorted(store.reader().execute("SELECT mrowid, mkey, vtype, v FROM memory_meta").fetchall())
    assert rows == [(1, "a", 2, 1), (2, "a", 3, "1"), (3, "a", 1, 1), (4, "b", 0, None)]
    store.write(lambda conn, lsn: conn.execute("DELETE FROM memories WHERE rowid = 2"))
    store.write(lambda conn, lsn: conn.execute(
        "UPDATE memories SET metadata = '{\"z\":2.5}' WHERE rowid = 1"))
    rows = sorted(store.reader().execute("SELECT mrowid, mkey, vtype, v FROM memory_meta").fetchall())
    assert rows == [(1, "z", 2, 2.5), (3, "a", 1, 1), (4, "b", 0, None)]


def test_an_existing_database_gets_its_index_on_open(tmp_path: Path) -> None:
    s = SpaceStore(tmp_path / "old", durable=False)
    _load(s, [{"team": "core", "n": 3}, {"team": "web"}])

    def forget_the_index(conn: sqlite3.Connection, lsn: int) -> None:
        conn.execute("DROP TABLE memory_meta")  # (drops its triggers too)
        conn.execute("DELETE FROM meta WHERE key = 'metadata_index'")

    s.write(forget_the_index)
    s.close()
    s = SpaceStore(tmp_path / "old", durable=False)
    try:
        node = f.parse({"team": "core"})
        assert node is not None
        assert _sql_set(s, node) == {1}
        _load(s, [{"team": "web"}, {"team": "core"}])  # the triggers are back too
        assert _sql_set(s, node) == {2}
    finally:
        s.close()


# -- the grammar ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "says"), [
    ({"a": {"$gtx": 1}}, "filter.a.$gtx: unknown operator '$gtx'"),
    ({"$not": {"a": 1}}, "unknown operator '$not'"),
    ({"a": [1, 2]}, "filter.a: got an array"),
    ({"a": {"b": 1}}, "filter.a.b: unknown operator 'b'"),
    ({"a": {"$gt": True}}, "filter.a.$gt: compares numbers or strings"),
    ({"a": {"$gt": None}}, "filter.a.$gt: compares numbers or strings"),
    ({"$and": []}, "filter.$and: must be a non-empty array"),
    ({"$or": {"a": 1}}, "filter.$or: must be a non-empty array"),
    ({"$and": [{}]}, "filter.$and[0]: must be a non-empty JSON object"),
    ({"$or": [{"a": 1}, {"b": {"$in": [{"x": 1}]}}]}, "filter.$or[1].b.$in[0]: got an object"),
    ({"a": {"$in": "x"}}, "filter.a.$in: expected an array"),
    ({"a": {"$exists": 1}}, "filter.a.$exists: expected true or false"),
    ({"a": {}}, "filter.a: an empty object"),
    ({"a": 2**64}, "outside the 64-bit range"),
    ({"a": "x\x00y"}, "NUL"),
    ({"k" * 129: 1}, "at most 128"),
    ([{"a": 1}], "must be a JSON object, got an array"),
    ("{not json", "not valid JSON"),
])
def test_bad_filters_are_named(raw: Any, says: str) -> None:
    with pytest.raises(f.FilterError) as err:
        f.parse(raw)
    assert says in str(err.value)


def test_limits_keep_a_hostile_filter_small() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(f.MAX_DEPTH):
        deep = {"$and": [deep]}
    assert f.parse(deep) is not None
    with pytest.raises(f.FilterError, match="nested more than"):
        f.parse({"$or": [deep]})
    very_deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(f.FilterError):
        f.parse('{"$and": ' + very_deep + "}")
    many = {f"k{i}": i for i in range(f.MAX_CONDITIONS + 1)}
    with pytest.raises(f.FilterError, match="conditions"):
        f.parse(many)
    with pytest.raises(f.FilterError, match="values in \\$in"):
        f.parse({"a": {"$in": list(range(f.MAX_IN_VALUES))}, "b": {"$nin": [1]}})
    assert f.parse({}) is None and f.parse(None) is None


def test_semantics_in_words() -> None:
    def match(raw: dict[str, Any], meta: dict[str, Any]) -> bool:
        return f.evaluate(f.parse(raw), meta)

    assert match({"n": 3}, {"n": 3.0})  # numbers are one class
    assert not match({"n": 3}, {"n": "3"}) and not match({"n": 1}, {"n": True})
    assert match({"n": None}, {"n": None}) and not match({"n": None}, {})
    assert match({"n": {"$ne": 1}}, {}) and match({"n": {"$nin": [1]}}, {"n": "1"})
    assert not match({"n": {"$gt": 1}}, {}) and not match({"n": {"$gt": 1}}, {"n": "2"})
    assert match({"s": {"$lt": "b"}}, {"s": "a"}) and match({"n": {"$exists": True}}, {"n": None})
    assert not match({"n": {"$in": []}}, {"n": 1}) and match({"n": {"$nin": []}}, {})
