"""Versioned migrations: applied in order on an empty database, a no-op when applied again, and
safe when several servers start on the same empty database at once."""

from __future__ import annotations

import threading
import uuid

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
