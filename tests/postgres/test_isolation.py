"""Row-level security: a transaction scoped to space A never sees or writes space B's rows,
even with a query that has no WHERE on space_id (the second guard behind queries.py)."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from engram.core.postgres import SPACE_TABLES, MemoryRow, PostgresDatabase, PostgresStore

from .conftest import PgCluster


@pytest.fixture(scope="module")
def two_spaces(store: PostgresStore) -> tuple[str, str]:
    a, b = f"iso-a-{uuid.uuid4().hex[:8]}", f"iso-b-{uuid.uuid4().hex[:8]}"
    for sid in (a, b):
        store.create_space(sid, dimension=8)
        store.remember(sid, MemoryRow(id=f"{sid}-m", content=f"secret of {sid}", metadata={"k": sid}),
                       np.ones(8, dtype=np.float32))
        with store.db.space(sid) as tx:
            tx.execute("INSERT INTO engram.space_meta (space_id, key, value) VALUES (%(space)s, 'x', 'y')")
    return a, b


def _visible(conn: psycopg.Connection[tuple[object, ...]], table: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(f"SELECT space_id FROM engram.{table}")}  # no WHERE at all


def test_unfiltered_queries_see_only_their_space(db: PostgresDatabase, two_spaces: tuple[str, str]) -> None:
    a, _b = two_spaces
    with db.space(a) as tx:
        for table in ("spaces", "space_meta", "memories", "memory_meta", "events"):
            assert _visible(tx.conn, table) == {a}, table
        for table in SPACE_TABLES:
            assert _visible(tx.conn, table) <= {a}, table


def test_store_reads_of_another_space_find_nothing(store: PostgresStore, two_spaces: tuple[str, str]) -> None:
    a, b = two_spaces
    assert store.get(a, f"{b}-m") is None
    assert [i for i, _ in store.recall(a, np.ones(8, dtype=np.float32), k=10)] == [f"{a}-m"]
    assert store.search_text(a, "secret") == [(f"{a}-m", store.search_text(a, "secret")[0][1])]


def test_writes_into_another_space_are_refused(db: PostgresDatabase, two_spaces: tuple[str, str]) -> None:
    a, b = two_spaces
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.space(a) as tx:
        tx.execute("INSERT INTO engram.space_meta (space_id, key, value) VALUES (%(other)s, 'k', 'v')",
                   {"other": b})
    with db.space(a) as tx:  # B's rows are invisible to UPDATE and DELETE too
        assert tx.execute("UPDATE engram.memories SET content = 'owned' WHERE space_id = %(other)s",
                          {"other": b}).rowcount == 0
        assert tx.execute("DELETE FROM engram.events WHERE space_id = %(other)s", {"other": b}).rowcount == 0
    with db.space(b) as tx:
        assert tx.one("SELECT content FROM engram.memories") == (f"secret of {b}",)


def test_no_space_set_sees_nothing_and_the_setting_ends_with_the_transaction(
        pg: PgCluster, two_spaces: tuple[str, str]) -> None:
    a, _b = two_spaces
    with psycopg.connect(pg.app, autocommit=True) as conn:
        assert _visible(conn, "memories") == set()  # never scoped
        with conn.transaction():
            conn.execute("SELECT set_config('engram.space_id', %s, true)", (a,))
            assert _visible(conn, "memories") == {a}
        assert _visible(conn, "memories") == set()  # SET LOCAL ended with its transaction
        assert _visible(conn, "spaces") == set()  # the directory policy needs engram.directory


def test_rls_binds_the_table_owner_too(pg: PgCluster, two_spaces: tuple[str, str]) -> None:
    """FORCE ROW LEVEL SECURITY: even the (non-superuser) owner sees one space at a time."""
    a, _b = two_spaces
    with psycopg.connect(pg.owner, autocommit=True) as conn:
        assert _visible(conn, "memories") == set()
        with conn.transaction():
            conn.execute("SELECT set_config('engram.space_id', %s, true)", (a,))
            assert _visible(conn, "memories") == {a}


def test_the_app_role_cannot_bypass_rls(pg: PgCluster) -> None:
    with psycopg.connect(pg.app, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False)
        owners = {str(r[0]) for r in conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'engram'")}
        assert owners == {"engram_owner"}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE engram.memories DISABLE ROW LEVEL SECURITY")


def test_a_pooled_connection_carries_no_space_into_its_next_transaction(
        pg: PgCluster, two_spaces: tuple[str, str]) -> None:
    a, _b = two_spaces
    single = PostgresDatabase(pg.app, min_size=1, max_size=1)  # the next caller gets the same connection
    try:
        with single.space(a) as tx:
            assert _visible(tx.conn, "memories") == {a}
        with single.pool.connection() as conn, conn.transaction():
            left = conn.execute("SELECT current_setting('engram.space_id', true)").fetchone()
            assert left in {("",), (None,)}
            assert _visible(conn, "memories") == set()
    finally:
        single.close()
