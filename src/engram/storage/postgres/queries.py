"""Every SQL statement the PostgreSQL store runs against space data, in one place.

The rule (checked by tests/postgres/test_schema.py, which reads this module): each statement
that reads or writes a table of the ``engram`` schema names one space, through the parameter
``%(space)s``, and compares ``space_id`` with it, so PostgreSQL (and Citus, routing by
``space_id``) touches one space per statement. The only statements exempt are in ``DIRECTORY``
(listing spaces, across spaces by nature, in a read-only transaction that the RLS directory
policy recognizes).

``{dim}`` marks where a vector dimension goes: a type modifier cannot be a parameter, so
``store.py`` fills it with an integer literal through ``psycopg.sql`` (never a string).
"""

from __future__ import annotations

from typing import Final

# -- the transaction's space (row-level security reads it) ----------------------------------------
SET_SPACE: Final = "SELECT set_config('engram.space_id', %(space)s, true)"
SET_DIRECTORY: Final = "SELECT set_config('engram.directory', 'on', true)"

# -- spaces ---------------------------------------------------------------------------------------
CREATE_SPACE: Final = (
    "INSERT INTO engram.spaces (space_id, created_at, dimension) VALUES (%(space)s, %(created_at)s, "
    "%(dimension)s) ON CONFLICT (space_id) DO NOTHING RETURNING space_id"
)
GET_SPACE: Final = (
    "SELECT space_id, created_at, dimension, last_lsn FROM engram.spaces WHERE space_id = %(space)s"
)
DELETE_SPACE: Final = "DELETE FROM engram.spaces WHERE space_id = %(space)s RETURNING space_id"
ENSURE_VECTOR_INDEX: Final = (
    "SELECT engram.ensure_vector_index(dimension) FROM engram.spaces "
    "WHERE space_id = %(space)s AND dimension IS NOT NULL"
)
# The LSN of a write: the counter row is updated inside the writing transaction. Its row lock
# makes a second writer of the same space wait until the first commits (or rolls back, giving
# the number back), so LSNs are gapless and commit in order; other spaces are not held up.
NEXT_LSN: Final = (
    "UPDATE engram.spaces SET last_lsn = last_lsn + 1 WHERE space_id = %(space)s RETURNING last_lsn"
)
SET_META: Final = (
    "INSERT INTO engram.space_meta (space_id, key, value) VALUES (%(space)s, %(key)s, %(value)s) "
    "ON CONFLICT (space_id, key) DO UPDATE SET value = excluded.value"
)
GET_META: Final = "SELECT value FROM engram.space_meta WHERE space_id = %(space)s AND key = %(key)s"

# -- memories -------------------------------------------------------------------------------------
MEMORY_COLUMNS: Final = (
    "id, content, kind, confidence, created_at, last_access, access_count, activation, decay_rate, "
    "tags, memory_type, metadata, suppressed, lsn, ep_when, what, where_location, who, why, how, "
    "emotional_valence, importance, consolidation_state, expires_at"
)
INSERT_MEMORY: Final = (
    "INSERT INTO engram.memories (space_id, embedding, " + MEMORY_COLUMNS + ") VALUES (%(space)s, "
    "%(embedding)s, %(id)s, %(content)s, %(kind)s, %(confidence)s, %(created_at)s, %(last_access)s, "
    "%(access_count)s, %(activation)s, %(decay_rate)s, %(tags)s, %(memory_type)s, %(metadata)s, "
    "%(suppressed)s, %(lsn)s, %(ep_when)s, %(what)s, %(where_location)s, %(who)s, %(why)s, %(how)s, "
    "%(emotional_valence)s, %(importance)s, %(consolidation_state)s, %(expires_at)s)"
)
INSERT_META: Final = (
    "INSERT INTO engram.memory_meta (space_id, memory_id, mkey, vtype, vnum, vtext) "
    "VALUES (%(space)s, %(memory_id)s, %(mkey)s, %(vtype)s, %(vnum)s, %(vtext)s)"
)
GET_MEMORY: Final = (
    "SELECT " + MEMORY_COLUMNS + " FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s"
)
GET_EMBEDDING: Final = (
    "SELECT embedding FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s"
)
# Keyset pagination in creation order: (created_at, id) after the cursor.
LIST_MEMORIES: Final = (
    "SELECT " + MEMORY_COLUMNS + " FROM engram.memories WHERE space_id = %(space)s "
    "AND (created_at, id) > (%(after_created)s, %(after_id)s) ORDER BY created_at, id LIMIT %(limit)s"
)
COUNT_MEMORIES: Final = "SELECT count(*) FROM engram.memories WHERE space_id = %(space)s"
DELETE_MEMORY: Final = (
    "DELETE FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s RETURNING id"
)
# Exact nearest neighbours when the HNSW index does not apply: the planner picks the primary key
# for a small space and sorts its rows itself (exact); for a large one it walks the index of the
# dimension, iteratively (hnsw.iterative_scan) until LIMIT rows of this space have been found.
# The inner LIMIT may return rows slightly out of order under relaxed_order: the outer ORDER BY
# puts them back.
RECALL: Final = (
    "WITH nearest AS MATERIALIZED (SELECT id, (embedding::halfvec({dim})) <=> %(vector)s::halfvec({dim}) "
    "AS distance FROM engram.memories WHERE space_id = %(space)s AND vector_dims(embedding) = {dim} "
    "ORDER BY distance LIMIT %(k)s) SELECT id, 1 - distance FROM nearest ORDER BY distance, id"
)
RECALL_TUNING: Final = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', %(ef)s, true)"
)
SEARCH_TEXT: Final = (
    "SELECT id, ts_rank(search, query) AS rank FROM engram.memories, "
    "websearch_to_tsquery('english', %(text)s) AS query WHERE space_id = %(space)s AND search @@ query "
    "ORDER BY rank DESC, id LIMIT %(k)s"
)

# -- events (storage/eventlog.py's log, per space) ------------------------------------------------
NEXT_EVENT_SEQ: Final = (
    "SELECT coalesce(max(seq) + 1, 0) FROM engram.events WHERE space_id = %(space)s AND lsn = %(lsn)s"
)
INSERT_EVENT: Final = (
    "INSERT INTO engram.events (space_id, lsn, seq, type, memory_id, data, ts) "
    "VALUES (%(space)s, %(lsn)s, %(seq)s, %(type)s, %(memory_id)s, %(data)s, %(ts)s)"
)
EVENTS_AFTER: Final = (
    "SELECT lsn, seq, type, data, ts FROM engram.events WHERE space_id = %(space)s "
    "AND (lsn, seq) > (%(lsn)s, %(seq)s) ORDER BY lsn, seq LIMIT %(limit)s"
)
# A deleted memory's text must not live on in the log (eventlog.scrub).
SCRUB_EVENTS: Final = (
    "UPDATE engram.events SET data = data - 'content' WHERE space_id = %(space)s "
    "AND memory_id = %(memory_id)s AND data ? 'content'"
)

# -- across spaces (the directory) ----------------------------------------------------------------
LIST_SPACES: Final = "SELECT space_id FROM engram.spaces ORDER BY space_id"
DIRECTORY: Final = frozenset({"SET_DIRECTORY", "LIST_SPACES"})
