"""Connections to PostgreSQL: one psycopg pool per server, one space per transaction.

Every unit of work on space data runs in :meth:`PostgresDatabase.space`: a transaction that
first sets ``engram.space_id`` with ``set_config(..., true)`` (the SET LOCAL form). The setting
ends with the transaction, so a pooled connection handed to the next caller carries no space
(``current_setting`` then reads ``''``, which matches no row): a caller that forgets to scope
its transaction sees nothing rather than the previous caller's space.

The pool's connections are in autocommit mode, so ``conn.transaction()`` is a real
BEGIN/COMMIT: the commit has returned (and, with PostgreSQL's default ``synchronous_commit``,
the WAL is flushed) before the context exits. A write is acknowledged only after that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from . import queries as q

Query = str | sql.Composed


def _configure(conn: psycopg.Connection[TupleRow]) -> None:
    register_vector(conn)  # numpy arrays in and out of the vector type, in binary


class SpaceTx:
    """A transaction scoped to one space: every statement gets ``%(space)s`` filled in."""

    __slots__ = ("conn", "space_id")

    def __init__(self, conn: psycopg.Connection[TupleRow], space_id: str) -> None:
        self.conn = conn
        self.space_id = space_id

    def execute(self, query: Query, params: Mapping[str, Any] | None = None) -> psycopg.Cursor[TupleRow]:
        args = {"space": self.space_id}
        if params:
            args.update(params)
        stmt = query if isinstance(query, sql.Composed) else sql.SQL(query)
        return self.conn.execute(stmt, args)

    def one(self, query: Query, params: Mapping[str, Any] | None = None) -> TupleRow | None:
        return self.execute(query, params).fetchone()


class PostgresDatabase:
    """The pool of one Engram server; spaces are reached through :meth:`space`."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            dsn, min_size=min_size, max_size=max(min_size, max_size), timeout=timeout,
            kwargs={"autocommit": True}, configure=_configure, open=False, name="engram")
        self.pool.open(wait=True, timeout=timeout)

    @contextmanager
    def space(self, space_id: str) -> Iterator[SpaceTx]:
        """One transaction on ``space_id``'s rows (commits on normal exit, rolls back on error)."""
        if not space_id:
            raise ValueError("a space transaction needs a space id")
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(q.SET_SPACE, {"space": space_id})
            yield SpaceTx(conn, space_id)

    @contextmanager
    def directory(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A read-only transaction that may list spaces (and nothing else across spaces)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(q.SET_DIRECTORY)
            yield conn

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
