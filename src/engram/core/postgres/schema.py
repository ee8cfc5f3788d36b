"""The PostgreSQL schema of Engram's spaces, as ordered, versioned migrations (SPEC §13).

Layout (the SQLite file of one space, ``storage/sqlite_store.py`` + ``eventlog.py``, mirrored
table by table, with every table keyed by ``space_id`` first)::

    SQLite (one file per space)        PostgreSQL (all spaces, schema "engram")
    meta (key, value)                  spaces (one row per space: dimension, last_lsn)
                                       + space_meta (space_id, key, value)
    memories (rowid, id, ...)          memories (space_id, id, ..., embedding halfvec, search tsvector)
    memories_fts (fts5)                memories.search: a generated tsvector + GIN index
    usearch index beside the file      HNSW (halfvec) index per dimension (ensure_vector_index)
    associations (source, target)      associations (space_id, source_id, target_id)
    beliefs (id)                       beliefs (space_id, id)
    memory_meta (mrowid, mkey, ...)    memory_meta (space_id, memory_id, mkey, ...)
    events (lsn, seq)                  events (space_id, lsn, seq)
    reembed_vectors (rowid)            reembed_vectors (space_id, memory_id)
    (LocalDensity, in memory)          fans (space_id, memory_id): each memory's fan
    _system/keys.json                  api_keys (a reference table: keys span spaces)

Why ``space_id`` leads every primary key: Citus distributes a table by one column and routes a
query to one shard when the query fixes that column. With ``space_id`` first everywhere, a
space's rows of every table live on one shard (the tables are co-located), foreign keys between
them stay local, and a query scoped to a space never fans out.

Isolation has two guards. The queries (``queries.py``) all fix ``space_id``; and row-level
security, FORCEd so it binds the table owner too, hides every row whose ``space_id`` is not the
transaction's ``engram.space_id`` (set with ``set_config(..., true)``, i.e. SET LOCAL, by
``connection.PostgresDatabase.space``). A query that forgot its ``WHERE`` still sees one space.
Superusers and BYPASSRLS roles skip RLS whatever FORCE says: the server must not connect as one.

Migrations: ``MIGRATIONS`` is an ordered list; :func:`migrate` applies the ones missing from
``engram.schema_version`` under an advisory lock (several servers may start at once), each with
its version row in the same transaction, so a crash mid-way leaves the previous version intact
and the next start re-applies the step. Applying again is a no-op. A database whose version is
newer than this code knows is refused (an old server must not write a new schema).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

SCHEMA = "engram"

#: Tables holding one space's data: primary key leads with ``space_id``; RLS on ``space_id``.
#: In Citus these are distributed by ``space_id`` and co-located with ``spaces``.
SPACE_TABLES = ("spaces", "space_meta", "memories", "associations", "beliefs", "memory_meta",
                "events", "reembed_vectors", "fans")
#: Tables not of one space. ``api_keys`` lists keys that may cover many spaces (a Citus reference
#: table, replicated to every node); ``schema_version`` is the migrator's own bookkeeping (kept on
#: the coordinator). Neither is read by a space-scoped query.
GLOBAL_TABLES = ("api_keys", "schema_version")

#: The advisory lock key migrators take (an arbitrary constant: "engram" in ASCII).
MIGRATION_LOCK = 0x656E6772616D

#: Largest dimension an HNSW index of pgvector's ``halfvec`` type accepts.
MAX_INDEXED_DIMENSION = 4000

# The text a memory is found by: its content, an episode's what/where/who/why/how, and its tags
# (the SQLite store's _fts_text plus the FTS ``tags`` column). English stemming, like fts5's porter.
_SEARCH_TEXT = (
    "to_tsvector('english'::regconfig, content || ' ' || coalesce(what, '') || ' ' || "
    "coalesce(where_location, '') || ' ' || coalesce(who, '') || ' ' || coalesce(why, '') || ' ' || "
    "coalesce(how, '')) || to_tsvector('english'::regconfig, tags)"
)

_V1 = f"""
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE engram.spaces (
    space_id text PRIMARY KEY CHECK (space_id <> ''),
    created_at double precision NOT NULL,
    dimension integer CHECK (dimension BETWEEN 1 AND 65535),
    -- The per-space LSN counter: a writer increments it in its own transaction, so the row lock
    -- orders the writers of one space, a rollback gives its number back, and LSNs have no gaps.
    last_lsn bigint NOT NULL DEFAULT 0
);

CREATE TABLE engram.space_meta (
    space_id text NOT NULL REFERENCES engram.spaces ON DELETE CASCADE,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (space_id, key)
);

CREATE TABLE engram.memories (
    space_id text NOT NULL REFERENCES engram.spaces ON DELETE CASCADE,
    id text NOT NULL,
    kind text NOT NULL,
    content text NOT NULL,
    -- float16, as Engram's own vector index keeps them (index/ann.py, index/vector.py): half the
    -- bytes, and HNSW over halfvec takes up to 4,000 dimensions (vector: 2,000)
    embedding halfvec,
    confidence double precision NOT NULL,
    created_at double precision NOT NULL,
    last_access double precision NOT NULL,
    access_count integer NOT NULL DEFAULT 0,
    activation double precision NOT NULL,
    decay_rate double precision NOT NULL,
    tags jsonb NOT NULL DEFAULT '[]',
    memory_type text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    suppressed boolean NOT NULL DEFAULT false,
    lsn bigint NOT NULL,
    ep_when double precision,
    what text,
    where_location text,
    who text,
    why text,
    how text,
    emotional_valence double precision,
    importance double precision,
    consolidation_state text,
    expires_at double precision,
    search tsvector GENERATED ALWAYS AS ({_SEARCH_TEXT}) STORED,
    PRIMARY KEY (space_id, id)
);
CREATE INDEX memories_created ON engram.memories (space_id, created_at, id);
CREATE INDEX memories_when ON engram.memories (space_id, ep_when) WHERE ep_when IS NOT NULL;
CREATE INDEX memories_expires ON engram.memories (space_id, expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_suppressed ON engram.memories (space_id, id) WHERE suppressed;
CREATE INDEX memories_search ON engram.memories USING gin (search);

CREATE TABLE engram.associations (
    space_id text NOT NULL,
    source_id text NOT NULL,
    target_id text NOT NULL,
    strength double precision NOT NULL,
    kind text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    lsn bigint NOT NULL,
    PRIMARY KEY (space_id, source_id, target_id),
    -- the SQLite delete trigger's "DELETE FROM associations WHERE source = old OR target = old"
    FOREIGN KEY (space_id, source_id) REFERENCES engram.memories ON DELETE CASCADE,
    FOREIGN KEY (space_id, target_id) REFERENCES engram.memories ON DELETE CASCADE
);
CREATE INDEX associations_target ON engram.associations (space_id, target_id);

CREATE TABLE engram.beliefs (
    space_id text NOT NULL REFERENCES engram.spaces ON DELETE CASCADE,
    id text NOT NULL,
    content text NOT NULL,
    centroid halfvec,
    strength double precision NOT NULL,
    schema_confidence double precision NOT NULL,
    citations jsonb NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    run_id text NOT NULL,
    lsn bigint NOT NULL,
    PRIMARY KEY (space_id, id)
);

-- Typed metadata (SPEC §11 filters), one row per entry. vtype: 0 null, 1 boolean (vnum 0/1),
-- 2 number (vnum), 3 string (vtext), 4 anything else (never matched): SQLite's classes.
CREATE TABLE engram.memory_meta (
    space_id text NOT NULL,
    memory_id text NOT NULL,
    mkey text NOT NULL,
    vtype smallint NOT NULL,
    vnum double precision,
    vtext text,
    PRIMARY KEY (space_id, memory_id, mkey),
    FOREIGN KEY (space_id, memory_id) REFERENCES engram.memories ON DELETE CASCADE
);
CREATE INDEX memory_meta_num ON engram.memory_meta (space_id, mkey, vtype, vnum);
CREATE INDEX memory_meta_text ON engram.memory_meta (space_id, mkey, vtype, vtext);

-- The durable event log (storage/eventlog.py): a row iff its write committed.
CREATE TABLE engram.events (
    space_id text NOT NULL REFERENCES engram.spaces ON DELETE CASCADE,
    lsn bigint NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    memory_id text,
    data jsonb NOT NULL,
    ts double precision NOT NULL,
    PRIMARY KEY (space_id, lsn, seq)
);
CREATE INDEX events_memory ON engram.events (space_id, memory_id) WHERE memory_id IS NOT NULL;

CREATE TABLE engram.reembed_vectors (
    space_id text NOT NULL,
    memory_id text NOT NULL,
    embedding halfvec NOT NULL,
    PRIMARY KEY (space_id, memory_id),
    FOREIGN KEY (space_id, memory_id) REFERENCES engram.memories ON DELETE CASCADE
);

CREATE TABLE engram.api_keys (
    key_id text PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    spaces text[],
    created_at double precision NOT NULL,
    expires_at double precision,
    revoked_at double precision,
    token_sha256 text NOT NULL UNIQUE
);

-- HNSW needs a fixed dimension, and spaces differ: one partial index per dimension in use, on
-- the column cast to that dimension. The server's role does not own the tables (so it cannot
-- CREATE INDEX); this function, owned by the migrator, creates the index a new dimension needs.
CREATE FUNCTION engram.ensure_vector_index(dim integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF dim IS NULL OR dim < 1 OR dim > {MAX_INDEXED_DIMENSION} THEN
        RAISE EXCEPTION 'vector dimension % cannot be indexed (1..{MAX_INDEXED_DIMENSION})', dim;
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS memories_hnsw_%s ON engram.memories '
                   'USING hnsw ((embedding::halfvec(%s)) halfvec_cosine_ops) '
                   'WHERE vector_dims(embedding) = %s', dim, dim, dim);
END $$;
"""


def _rls(table: str) -> str:
    return (
        f"ALTER TABLE engram.{table} ENABLE ROW LEVEL SECURITY;\n"
        f"ALTER TABLE engram.{table} FORCE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY space_isolation ON engram.{table}\n"
        "    USING (space_id = current_setting('engram.space_id', true))\n"
        "    WITH CHECK (space_id = current_setting('engram.space_id', true));\n"
    )


# The one read across spaces: listing them (engram.directory = 'on', read only, spaces table only).
_DIRECTORY_POLICY = (
    "CREATE POLICY space_directory ON engram.spaces FOR SELECT\n"
    "    USING (current_setting('engram.directory', true) = 'on');\n"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


# Exact metadata numbers. SPEC §11 compares numbers as Python does (3 == 3.0; an integer against a
# float exactly, 2**53 + 1 > 2.0**53); a double loses integers beyond 2**53, so ``vnum`` becomes
# ``numeric``, written with the exact value of the int or float (``Decimal(x)``). The old doubles
# convert through their shortest round-trip text. Strings compare by code point: the text index
# uses the "C" collation (bytes; UTF-8 byte order is code point order), as the filters do.
_V2 = """
ALTER TABLE engram.memory_meta ALTER COLUMN vnum TYPE numeric USING vnum::text::numeric;
DROP INDEX engram.memory_meta_text;
CREATE INDEX memory_meta_text ON engram.memory_meta (space_id, mkey, vtype, vtext COLLATE "C");
"""

# Insertion order. The items of one batch share ``created_at``, so ``(created_at, id)`` listed
# them in random (id) order where SQLite lists by rowid, i.e. as inserted. ``created_lsn`` is the
# LSN of the write that inserted the row: unique in its space (every insert takes its own LSN),
# increasing in commit order, and kept by updates (which change ``lsn``), so it is the rowid's
# twin, and needs no sequence object (Citus: no cross-node counter). Rows already there are
# numbered 1, 2, ... in their old list order, ``(created_at, id)``: each took an LSN when it was
# inserted, so a space has no more rows than LSNs and every later write sorts after them. The
# table owner is bound by FORCEd row-level security too (it would see no row): the backfill runs
# with FORCE lifted, inside this step's transaction, so no other session ever sees it lifted.
# ``spaces.memory_rows`` counts the space's memory rows (expired ones not swept yet included),
# kept by every write that inserts or deletes rows, in its transaction: a quota check reads it
# instead of counting the rows, and counts them only when it is past ``max_memories``.
_V3 = """
ALTER TABLE engram.memories ADD COLUMN created_lsn bigint;
ALTER TABLE engram.memories NO FORCE ROW LEVEL SECURITY;
UPDATE engram.memories AS m SET created_lsn = o.n
    FROM (SELECT space_id, id, row_number() OVER (PARTITION BY space_id ORDER BY created_at, id) AS n
          FROM engram.memories) AS o
    WHERE m.space_id = o.space_id AND m.id = o.id;
ALTER TABLE engram.memories FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.memories ALTER COLUMN created_lsn SET NOT NULL;
CREATE UNIQUE INDEX memories_created_lsn ON engram.memories (space_id, created_lsn);

ALTER TABLE engram.spaces ADD COLUMN memory_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE engram.spaces NO FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.memories NO FORCE ROW LEVEL SECURITY;
UPDATE engram.spaces AS s SET memory_rows = c.n
    FROM (SELECT space_id, count(*) AS n FROM engram.memories GROUP BY space_id) AS c
    WHERE s.space_id = c.space_id;
ALTER TABLE engram.memories FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.spaces FORCE ROW LEVEL SECURITY;
"""

# A space's embedder and its re-embedding (SPEC §9). ``embedder``: the JSON record
# ``{"provider", "model", "explicit"}`` chosen at creation or by a finished re-embedding (NULL: the
# server's default, as a space created before this step has). ``reembed``: the target of a
# re-embedding in progress (NULL: none), a column rather than a ``space_meta`` row so the servers'
# re-embedding workers find the spaces that have one in the directory listing (spaces table only),
# and so the write path reads the space's embedder in the counter row it already holds.
_V4 = """
ALTER TABLE engram.spaces ADD COLUMN embedder text;
ALTER TABLE engram.spaces ADD COLUMN reembed text;
"""

# A space's incarnation: a fresh value each time a row of ``spaces`` is inserted (created, or
# restored under its id, replacing the space or not), never repeated. A server holding a handle or
# streams of the space compares it with the row's: another value means the space it streams was
# deleted and made again (a restore with replace keeps ``created_at`` and may lower the LSN), so
# its streams end as SQLite ends a replaced space's. The spaces already there get one each.
_V5 = """
ALTER TABLE engram.spaces ADD COLUMN incarnation uuid NOT NULL DEFAULT gen_random_uuid();
"""

# ``spaces.memory_bytes``: the stored bytes of the space's rows (queries.ROW_BYTES: content, vector,
# tags, metadata), kept by every write that inserts, deletes or resizes rows, in its transaction
# (as ``memory_rows``), so ``max_space_bytes`` reads one number instead of summing the space's rows
# on every write. Backfilled here, FORCE lifted for it as in migration 3.
_V6 = """
ALTER TABLE engram.spaces ADD COLUMN memory_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE engram.spaces NO FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.memories NO FORCE ROW LEVEL SECURITY;
UPDATE engram.spaces AS s SET memory_bytes = c.n
    FROM (SELECT space_id, sum(pg_column_size(content) + coalesce(pg_column_size(embedding), 0)
                               + pg_column_size(tags) + pg_column_size(metadata)) AS n
          FROM engram.memories GROUP BY space_id) AS c
    WHERE s.space_id = c.space_id;
ALTER TABLE engram.memories FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.spaces FORCE ROW LEVEL SECURITY;
"""

# The fan of each memory (index/density.py, SQLite's LocalDensity), in a narrow table of its own:
# ``top`` the cosines of its ``density.K`` nearest memories (ascending), ``fan`` their mean,
# written by the transaction that stores the memory's vector (which also lets each neighbour take
# it into its own list: UPDATEs of small rows here, not of the wide, many-indexed memory rows).
# No row: not measured (rows from before this migration, a re-embedding's new vectors): the
# server's maintenance measures them; recall counts them as average. Gone with the memory.
# ``spaces.next_expiry``: no memory of the space expires before it (lowered by every write that
# sets an ``expires_at``, settled only by a sweep of the space), so the maintenance of any server
# finds the spaces with due memories in the directory, held open by a server or not.
_V7 = """
CREATE TABLE engram.fans (
    space_id text NOT NULL,
    memory_id text NOT NULL,
    top real[] NOT NULL,
    fan double precision NOT NULL,
    PRIMARY KEY (space_id, memory_id),
    FOREIGN KEY (space_id, memory_id) REFERENCES engram.memories ON DELETE CASCADE
);
ALTER TABLE engram.spaces ADD COLUMN next_expiry double precision;
CREATE INDEX spaces_next_expiry ON engram.spaces (next_expiry) WHERE next_expiry IS NOT NULL;
ALTER TABLE engram.spaces NO FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.memories NO FORCE ROW LEVEL SECURITY;
UPDATE engram.spaces AS s SET next_expiry = c.at
    FROM (SELECT space_id, min(expires_at) AS at FROM engram.memories WHERE expires_at IS NOT NULL
          GROUP BY space_id) AS c
    WHERE s.space_id = c.space_id;
ALTER TABLE engram.memories FORCE ROW LEVEL SECURITY;
ALTER TABLE engram.spaces FORCE ROW LEVEL SECURITY;
""" + _rls("fans")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "spaces, memories, associations, beliefs, metadata, events, keys; RLS; vectors",
              _V1 + "".join(_rls(t) for t in SPACE_TABLES[:8]) + _DIRECTORY_POLICY),  # fans: 7
    Migration(2, "exact metadata numbers (numeric) and code point order of metadata strings", _V2),
    Migration(3, "insertion order of memories (created_lsn); a space's row count (memory_rows)", _V3),
    Migration(4, "a space's embedder and re-embedding target (spaces.embedder, spaces.reembed)", _V4),
    Migration(5, "a space's incarnation (spaces.incarnation): a replaced space is told apart", _V5),
    Migration(6, "a space's stored bytes (spaces.memory_bytes), backfilled", _V6),
    Migration(7, "each memory's fan (the fans table); a space's next expiry (spaces.next_expiry)", _V7),
)

_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS engram;
CREATE TABLE IF NOT EXISTS engram.schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Engram than this one."""


def latest_version() -> int:
    return MIGRATIONS[-1].version


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Versions recorded in ``engram.schema_version`` (empty if the schema does not exist yet)."""
    exists = conn.execute("SELECT to_regclass('engram.schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [int(str(r[0])) for r in conn.execute("SELECT version FROM engram.schema_version ORDER BY 1")]


def migrate(conn: psycopg.Connection[tuple[object, ...]], *, app_role: str | None = None,
            target: int | None = None) -> list[int]:
    """Apply the missing migrations in order; return the versions applied now (empty: up to date).

    ``target``: stop after that version (tests build a database as an older Engram left it).

    ``conn`` is the migrating (owner) role's connection, in autocommit mode. ``app_role`` is the
    role the servers connect as: it gets data privileges, never ownership, so RLS binds it.
    Requires the ``vector`` extension to be creatable or already created (it is not a trusted
    extension: on a managed service an administrator runs ``CREATE EXTENSION vector`` first).
    """
    applied_now: list[int] = []
    with conn.transaction():
        # Serialize migrators: two servers starting on an empty database must not both apply v1.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_BOOKKEEPING)
        have = set(applied_versions(conn))
        newest = max(have, default=0)
        if newest > latest_version():
            raise SchemaTooNew(f"the database has Engram schema version {newest}; this Engram knows up "
                               f"to {latest_version()}: upgrade Engram before starting it on this database")
        for step in MIGRATIONS:
            if step.version in have or (target is not None and step.version > target):
                continue
            with conn.transaction():  # a savepoint: the step and its version row stand or fall together
                conn.execute(step.sql.encode())
                conn.execute("INSERT INTO engram.schema_version (version, name) VALUES (%s, %s)",
                             (step.version, step.name))
            applied_now.append(step.version)
        if app_role is not None:
            grant(conn, app_role)
    return applied_now


def grant(conn: psycopg.Connection[tuple[object, ...]], app_role: str) -> None:
    """Give the server's role what it needs on the schema (idempotent)."""
    role = sql.Identifier(app_role)
    for stmt in (
        "GRANT USAGE ON SCHEMA engram TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA engram TO {role}",
        "REVOKE INSERT, UPDATE, DELETE ON engram.schema_version FROM {role}",
        "GRANT EXECUTE ON FUNCTION engram.ensure_vector_index(integer) TO {role}",
    ):
        conn.execute(sql.SQL(stmt).format(role=role))
