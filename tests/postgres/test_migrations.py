"""Versioned migrations: applied in order on an empty database, a no-op when applied again, and
safe when several servers start on the same empty database at once."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx
import psycopg

from engram.core.postgres import MIGRATIONS, latest_version, migrate
from engram.core.postgres.schema import applied_versions

from .conftest import APP, PgCluster


def test_migrations_apply_once_and_reapply_as_a_no_op(pg: PgCluster) -> None:
    dsn = pg.new_database(f"mig_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert applied_versions(conn) == []
        assert migrate(conn, app_role=APP) == [m.version for m in MIGRATIONS]
        assert applied_versions(conn) == list(range(1, latest_version() + 1))
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'engram'").fetchone()
        assert migrate(conn, app_role=APP) == []
        assert applied_versions(conn) == list(range(1, latest_version() + 1))
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'engram'").fetchone() == tables


def test_concurrent_migrators_apply_each_step_once(pg: PgCluster) -> None:
    dsn = pg.new_database(f"mig_{uuid.uuid4().hex[:8]}")
    results: list[list[int]] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(3)

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                gate.wait(timeout=30)
                results.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results, key=len) == [[], [], [m.version for m in MIGRATIONS]]


def test_a_failed_step_leaves_no_version_row(pg: PgCluster) -> None:
    """A step that fails half-way rolls back whole (DDL is transactional), version row included."""
    dsn = pg.new_database(f"mig_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA engram")
        conn.execute("CREATE TABLE engram.events (x int)")  # the step's CREATE TABLE engram.events fails
        try:
            migrate(conn)
        except psycopg.errors.DuplicateTable:
            pass
        else:
            raise AssertionError("the migration should have failed")
        assert applied_versions(conn) == []
        assert conn.execute("SELECT to_regclass('engram.memories')").fetchone() == (None,)


def at_version_2_with_data(pg: PgCluster) -> tuple[str, str]:
    """A database as an Engram of schema 2 left it: memories in two spaces, listed then by
    ``(created_at, id)``; its name and owner DSN."""
    name = f"mig_{uuid.uuid4().hex[:8]}"
    owner = pg.new_database(name)
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, app_role=APP, target=2) == [1, 2]
        old = {"s-one": [("b", 10.0), ("a", 10.0), ("c", 5.0)], "s-two": [("z", 1.0), ("y", 2.0)]}
        for sid, rows in old.items():
            with conn.transaction():  # as schema 2's store wrote them (FORCEd RLS binds the owner too)
                conn.execute("SELECT set_config('engram.space_id', %s, true)", (sid,))
                conn.execute("INSERT INTO engram.spaces (space_id, created_at, dimension, last_lsn) "
                             "VALUES (%s, 0, 4, %s)", (sid, len(rows)))
                for lsn, (mid, at) in enumerate(rows, 1):
                    conn.execute(
                        "INSERT INTO engram.memories (space_id, id, kind, content, confidence, created_at, "
                        "last_access, activation, decay_rate, memory_type, lsn) "
                        "VALUES (%s, %s, 'memory', %s, 1, %s, %s, 1, 0, 'semantic', %s)",
                        (sid, mid, f"old {mid}", at, at, lsn))
    return name, owner


def test_upgrading_a_version_2_database_with_data_keeps_its_list_order(pg: PgCluster) -> None:
    """Migration 3 (``created_lsn``) on a database an Engram of schema 2 left, with memories in two
    spaces: every row is numbered in its old list order (created_at, id), per space, and writes
    after the upgrade list after them; the cursor walks the old and the new rows."""
    from engram.core.postgres import PostgresDatabase, PostgresStore
    from engram.core.postgres.store import MemoryRow

    name, owner = at_version_2_with_data(pg)
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, app_role=APP) == list(range(3, latest_version() + 1))
        assert applied_versions(conn) == list(range(1, latest_version() + 1))
        forced = conn.execute("SELECT relforcerowsecurity FROM pg_class "
                              "WHERE oid = 'engram.memories'::regclass")
        assert forced.fetchone() == (True,)  # lifted for the backfill only
    db = PostgresDatabase(pg.dsn(APP, name), min_size=1, max_size=2)
    try:
        store = PostgresStore(db, vector_index=False)
        assert [(m.id, m.created_lsn) for m in store.list_memories("s-one")] == [("c", 1), ("a", 2), ("b", 3)]
        assert [(m.id, m.created_lsn) for m in store.list_memories("s-two")] == [("z", 1), ("y", 2)]
        assert [(i.memory_rows if i else None) for i in map(store.space, ("s-one", "s-two"))] == [3, 2]
        # a batch after the upgrade, stored at one instant, with ids that sort before the old ones
        assert store.remember_many("s-one", [(MemoryRow(id=i, content=i, created_at=1.0), None)
                                             for i in ("n3", "n1", "n2")]) == [4, 5, 6]
        walked: list[str] = []
        after = 0
        while page := store.list_memories("s-one", after=after, limit=2):
            walked += [m.id for m in page]
            after = page[-1].created_lsn
        assert walked == ["c", "a", "b", "n3", "n1", "n2"]
        info = store.space("s-one")
        assert info is not None and info.memory_rows == 6
    finally:
        db.close()


def test_a_server_started_on_a_version_2_database_migrates_it_and_lists_in_order(
        pg: PgCluster, tmp_path: Path) -> None:
    """``engram start`` connected as the schema owner applies migration 3 at start (as it applies
    every missing step), then serves the old memories in their old order and new ones after."""
    from engram.testing.harness import EngramProcess

    _name, owner = at_version_2_with_data(pg)
    srv = EngramProcess.start(tmp_path, settings={"backend": "postgres", "postgres_dsn": owner,
                                                  "embedder": "none"})
    try:
        with psycopg.connect(owner, autocommit=True) as conn:
            assert applied_versions(conn) == list(range(1, latest_version() + 1))
        with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "s-one"}, timeout=30) as http:
            r = http.post("/api/v1/memories/batch", json={"memories": [
                {"id": i, "content": i, "embedding": [1.0, 0.0, 0.0, 0.0]} for i in ("n2", "n1")]})
            assert r.status_code == 201 and r.json()["stored"] == 2, r.text
            first = http.get("/api/v1/memories", params={"limit": 2}).json()
            rest = http.get("/api/v1/memories", params={"limit": 9, "cursor": first["next_cursor"]}).json()
        assert [m["id"] for m in first["memories"] + rest["memories"]] == ["c", "a", "b", "n2", "n1"]
        assert first["total"] == rest["total"] == 5 and rest["next_cursor"] is None
    finally:
        srv.stop()


def test_migrations_4_to_6_backfill_incarnations_and_byte_counts(pg: PgCluster) -> None:
    """A database at schema 3 with memories: migration 5 gives every space its own incarnation,
    migration 6 counts each space's stored bytes (what the quota reads from then on), and spaces
    already there keep the server's default embedder (migration 4: no record)."""
    from engram.core.postgres import PostgresDatabase, PostgresStore

    name, owner = at_version_2_with_data(pg)
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, target=3) == [3]
        assert migrate(conn, app_role=APP) == list(range(4, latest_version() + 1))
    with psycopg.connect(pg.dsn("postgres", name), autocommit=True) as su:  # RLS bypassed: every space
        rows = su.execute(
            "SELECT s.space_id, s.memory_bytes, s.incarnation, s.embedder, (SELECT sum("
            "pg_column_size(content) + coalesce(pg_column_size(embedding), 0) + pg_column_size(tags) "
            "+ pg_column_size(metadata)) "
            "FROM engram.memories m WHERE m.space_id = s.space_id) FROM engram.spaces s ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in rows] == ["s-one", "s-two"]
    assert all(r[1] == r[4] and r[1] > 0 and r[3] is None for r in rows), rows
    assert rows[0][2] != rows[1][2]
    db = PostgresDatabase(pg.dsn(APP, name), min_size=1, max_size=2)
    try:
        store = PostgresStore(db, vector_index=False)
        info = store.space("s-one")
        assert info is not None and info.incarnation == str(rows[0][2]) and info.embedder is None
    finally:
        db.close()


def test_migration_7_sets_next_expiry_and_leaves_fans_to_be_measured(pg: PgCluster) -> None:
    """A database at schema 6 with expiring memories and vectors: migration 7 gives each space
    its soonest expiry (so any server's sweep finds it) and leaves the fans unmeasured, for
    ``measure_fans``."""
    from engram.core.postgres import PostgresDatabase, PostgresStore

    name, owner = at_version_2_with_data(pg)
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, target=6) == [3, 4, 5, 6]
    with psycopg.connect(pg.dsn("postgres", name), autocommit=True) as su:  # RLS bypassed
        su.execute("UPDATE engram.memories SET embedding = '[1,0,0,0]'::halfvec(4)")
        su.execute("UPDATE engram.memories SET expires_at = 50 WHERE space_id = 's-one' AND id = 'a'")
        su.execute("UPDATE engram.memories SET expires_at = 70 WHERE space_id = 's-one' AND id = 'b'")
    with psycopg.connect(owner, autocommit=True) as conn:
        assert migrate(conn, app_role=APP) == list(range(7, latest_version() + 1))
    db = PostgresDatabase(pg.dsn(APP, name), min_size=1, max_size=2)
    try:
        store = PostgresStore(db, vector_index=False, clock=lambda: 60.0)
        assert store.due_spaces() == ["s-one"]
        assert store.fans("s-two", ["z", "y"]) == ({}, 0.0, 0)
        assert store.measure_fans("s-two") == 2
        got, _, n = store.fans("s-two", ["z", "y"])
        assert n == 2 and got == {"z": 1.0, "y": 1.0}
        assert store.sweep_due() == 1 and store.due_spaces() == []
        store.clock = lambda: 80.0
        assert store.due_spaces() == ["s-one"] and store.sweep_due() == 1
    finally:
        db.close()
