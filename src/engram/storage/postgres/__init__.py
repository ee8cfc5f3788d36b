"""PostgreSQL + pgvector storage for Engram spaces (SPEC §13; issue 17, first milestone).

Needs the ``postgres`` extra (psycopg, psycopg-pool, pgvector). Not wired into the server yet:
``backend = "postgres"`` is a later milestone; today this package is the schema, its
migrations, the space-scoped connection layer and a first slice of store operations.
docs/scale-out.md describes deployment.
"""

from __future__ import annotations

from .connection import PostgresDatabase, SpaceTx
from .schema import GLOBAL_TABLES, MIGRATIONS, SPACE_TABLES, SchemaTooNew, latest_version, migrate
from .store import Event, MemoryRow, PostgresStore, SpaceInfo

__all__ = [
    "GLOBAL_TABLES",
    "MIGRATIONS",
    "SPACE_TABLES",
    "Event",
    "MemoryRow",
    "PostgresDatabase",
    "PostgresStore",
    "SchemaTooNew",
    "SpaceInfo",
    "SpaceTx",
    "latest_version",
    "migrate",
]
