"""PostgreSQL + pgvector storage for Engram spaces (SPEC §13; issue 17, first milestone).

Needs the ``postgres`` extra (psycopg, psycopg-pool, pgvector). The schema, its migrations, the
space-scoped connection layer, the store operations of a space (store.py), metadata filters in
SQL (filters.py), the LISTEN side of write notifications (listener.py), a space served from the
database (space.py) and each server's event feed (feed.py). A server uses them with
``backend = "postgres"`` (``service_pg.PostgresService``, ``spaces.pg_registry``);
docs/scale-out.md describes deployment and what is not built on PostgreSQL yet.
"""

from __future__ import annotations

from .connection import PostgresDatabase, SpaceTx
from .listener import WriteListener
from .schema import GLOBAL_TABLES, MIGRATIONS, SPACE_TABLES, SchemaTooNew, latest_version, migrate
from .store import Associated, Edge, Event, MemoryRow, PostgresStore, SpaceInfo, Updated

__all__ = [
    "GLOBAL_TABLES",
    "MIGRATIONS",
    "SPACE_TABLES",
    "Associated",
    "Edge",
    "Event",
    "MemoryRow",
    "PostgresDatabase",
    "PostgresStore",
    "SchemaTooNew",
    "SpaceInfo",
    "SpaceTx",
    "Updated",
    "WriteListener",
    "latest_version",
    "migrate",
]
