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
    "INSERT INTO engram.spaces (space_id, created_at, dimension, embedder) VALUES (%(space)s, "
    "%(created_at)s, %(dimension)s, %(embedder)s) ON CONFLICT (space_id) DO NOTHING RETURNING space_id"
)
GET_SPACE: Final = (
    "SELECT space_id, created_at, dimension, last_lsn, memory_rows, embedder, reembed, incarnation::text "
    "FROM engram.spaces WHERE space_id = %(space)s"
)
DELETE_SPACE: Final = "DELETE FROM engram.spaces WHERE space_id = %(space)s RETURNING space_id"
ENSURE_VECTOR_INDEX: Final = (
    "SELECT engram.ensure_vector_index(dimension) FROM engram.spaces "
    "WHERE space_id = %(space)s AND dimension IS NOT NULL"
)
# The LSN of a write: the counter row is updated inside the writing transaction. Its row lock
# makes a second writer of the same space wait until the first commits (or rolls back, giving
# the number back), so LSNs are gapless and commit in order; other spaces are not held up. The
# dimension and embedder come back too: a write checks its vectors against them under the lock
# (a re-embedding's switch, which holds the same row, may have changed both since it embedded).
NEXT_LSN: Final = (
    "UPDATE engram.spaces SET last_lsn = last_lsn + 1 WHERE space_id = %(space)s "
    "RETURNING last_lsn, dimension, embedder"
)
# A space created without a dimension takes that of its first vector (whichever server writes it).
BIND_DIMENSION: Final = (
    "UPDATE engram.spaces SET dimension = %(dimension)s WHERE space_id = %(space)s AND dimension IS NULL"
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
    "emotional_valence, importance, consolidation_state, expires_at, created_lsn"
)
INSERT_MEMORY: Final = (
    "INSERT INTO engram.memories (space_id, embedding, " + MEMORY_COLUMNS + ") VALUES (%(space)s, "
    "%(embedding)s, %(id)s, %(content)s, %(kind)s, %(confidence)s, %(created_at)s, %(last_access)s, "
    "%(access_count)s, %(activation)s, %(decay_rate)s, %(tags)s, %(memory_type)s, %(metadata)s, "
    "%(suppressed)s, %(lsn)s, %(ep_when)s, %(what)s, %(where_location)s, %(who)s, %(why)s, %(how)s, "
    "%(emotional_valence)s, %(importance)s, %(consolidation_state)s, %(expires_at)s, %(created_lsn)s)"
)
INSERT_META: Final = (
    "INSERT INTO engram.memory_meta (space_id, memory_id, mkey, vtype, vnum, vtext) "
    "VALUES (%(space)s, %(memory_id)s, %(mkey)s, %(vtype)s, %(vnum)s, %(vtext)s)"
)
# A memory is live until its ``expires_at`` (core/expiry.py's LIVE_SQL): every read adds LIVE with
# ``%(now)s``, so an expired memory is never returned, swept or not. (coalesce, not "IS NULL OR":
# no OR may follow the space filter, see tests/postgres/test_schema.py.)
LIVE: Final = "coalesce(expires_at, 'Infinity'::float8) > %(now)s"
GET_MEMORY: Final = (
    "SELECT " + MEMORY_COLUMNS + " FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s "
    "AND " + LIVE
)
GET_EMBEDDING: Final = (
    "SELECT embedding FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s AND " + LIVE
)
# What a list selects (SQLite's MemorySpace.list): live; suppressed memories only when
# ``with_suppressed`` (``suppressed IN (false, x)``); of ``memory_type`` when given (NULL: any;
# coalesce, not OR, see LIVE); ``{filter}``, a metadata filter (filters.py: a parenthesised
# expression over ``memories`` whose subqueries fix this space too; ``TRUE`` without a filter).
LISTED: Final = (
    "WHERE space_id = %(space)s AND " + LIVE + " AND suppressed IN (false, %(with_suppressed)s) "
    "AND memory_type = coalesce(%(memory_type)s::text, memory_type) AND {filter}"
)
# A page in insertion order (``created_lsn``, SQLite's rowid), after the cursor's position.
LIST_MEMORIES: Final = (
    "SELECT " + MEMORY_COLUMNS + " FROM engram.memories " + LISTED + " AND created_lsn > %(after)s "
    "ORDER BY created_lsn LIMIT %(limit)s"
)
# The list's ``total``: everything the list selects, on every page (the cursor aside).
COUNT_LISTED: Final = "SELECT count(*) FROM engram.memories " + LISTED
COUNT_MEMORIES: Final = "SELECT count(*) FROM engram.memories WHERE space_id = %(space)s AND " + LIVE
DELETE_MEMORY: Final = (
    "DELETE FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s RETURNING id"
)
# Exact nearest neighbours when the HNSW index does not apply: the planner picks the primary key
# for a small space and sorts its rows itself (exact); for a large one it walks the index of the
# dimension, iteratively (hnsw.iterative_scan) until LIMIT rows of this space have been found.
# The inner LIMIT may return rows slightly out of order under relaxed_order: the outer ORDER BY
# puts them back. Suppressed and expired memories are never recalled.
RECALL: Final = (
    "WITH nearest AS MATERIALIZED (SELECT id, (embedding::halfvec({dim})) <=> %(vector)s::halfvec({dim}) "
    "AS distance FROM engram.memories WHERE space_id = %(space)s AND vector_dims(embedding) = {dim} "
    "AND NOT suppressed AND " + LIVE + " AND {filter} "
    "ORDER BY distance LIMIT %(k)s) SELECT id, 1 - distance FROM nearest ORDER BY distance, id"
)
RECALL_TUNING: Final = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', %(ef)s, true)"
)
# Any stemmed word of the text matches (as SQLite's full text does), not every word: a question
# of ten words names its memory by two or three of them. plainto_tsquery joins lexemes with '&'.
SEARCH_TEXT: Final = (
    "SELECT id, ts_rank(search, query) AS rank FROM engram.memories, "
    "CAST(replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ') AS tsquery) AS query "
    "WHERE space_id = %(space)s AND search @@ query "
    "AND NOT suppressed AND " + LIVE + " ORDER BY rank DESC, id LIMIT %(k)s"
)

# -- updates (core/update.py): one UPDATE of the row, so its associations stay -------------------
CURRENT_FOR_UPDATE: Final = (
    "SELECT kind, content, embedding IS NOT NULL, suppressed, expires_at FROM engram.memories "
    "WHERE space_id = %(space)s AND id = %(id)s FOR UPDATE"
)
# ``{assignments}``: ``column = %(column)s, ...`` of store.UPDATABLE columns only (psycopg.sql).
UPDATE_MEMORY: Final = (
    "UPDATE engram.memories SET {assignments}, lsn = %(lsn)s WHERE space_id = %(space)s AND id = %(id)s "
    "RETURNING " + MEMORY_COLUMNS
)
DELETE_META: Final = (
    "DELETE FROM engram.memory_meta WHERE space_id = %(space)s AND memory_id = %(memory_id)s"
)

# -- forgetting (suppress or delete) --------------------------------------------------------------
LIVE_STATE: Final = (
    "SELECT suppressed FROM engram.memories WHERE space_id = %(space)s AND id = %(id)s AND " + LIVE
)
SUPPRESS_MEMORY: Final = (
    "UPDATE engram.memories SET suppressed = true, lsn = %(lsn)s WHERE space_id = %(space)s "
    "AND id = %(id)s"
)
COUNT_EDGES_OF: Final = (
    "SELECT (SELECT count(*) FROM engram.associations WHERE space_id = %(space)s AND source_id = %(id)s) "
    "+ (SELECT count(*) FROM engram.associations WHERE space_id = %(space)s AND target_id = %(id)s)"
)
# Delete by filter: every live match (suppressed ones included) or the live unsuppressed ones.
DELETE_MATCHING: Final = (
    "DELETE FROM engram.memories WHERE space_id = %(space)s AND " + LIVE + " AND {filter} RETURNING id"
)
SUPPRESS_MATCHING: Final = (
    "UPDATE engram.memories SET suppressed = true, lsn = %(lsn)s WHERE space_id = %(space)s "
    "AND NOT suppressed AND " + LIVE + " AND {filter} RETURNING id"
)

# -- associations (cognition/associations.py); memories' deletion cascades to them -----------------
EDGE_STRENGTH: Final = (
    "SELECT strength FROM engram.associations WHERE space_id = %(space)s AND source_id = %(source)s "
    "AND target_id = %(target)s FOR UPDATE"
)
UPSERT_EDGE: Final = (
    "INSERT INTO engram.associations (space_id, source_id, target_id, strength, kind, created_at, "
    "updated_at, lsn) VALUES (%(space)s, %(source)s, %(target)s, %(strength)s, 'explicit', %(now)s, "
    "%(now)s, %(lsn)s) ON CONFLICT (space_id, source_id, target_id) DO UPDATE SET "
    "strength = excluded.strength, kind = 'explicit', updated_at = excluded.updated_at, lsn = excluded.lsn"
)
# Links a store makes itself (SPEC §5; core/space.py's prepare_remember): ``auto`` to near
# neighbours, ``temporal`` between episodes close in time. An edge that exists keeps its kind and
# takes the stronger strength, as SQLite's ``max(strength, excluded.strength)``.
UPSERT_LINK: Final = (
    "INSERT INTO engram.associations AS a (space_id, source_id, target_id, strength, kind, created_at, "
    "updated_at, lsn) VALUES (%(space)s, %(source)s, %(target)s, %(strength)s, %(kind)s, %(now)s, %(now)s, "
    "%(lsn)s) ON CONFLICT (space_id, source_id, target_id) DO UPDATE SET "
    "strength = greatest(a.strength, excluded.strength), updated_at = excluded.updated_at"
)
# The nearest live, unsuppressed memories of a new one's vector (before it is inserted), except
# the ids of its own batch (SQLite links a batch's items to what was stored before the batch).
LINK_NEIGHBOURS: Final = (
    "SELECT id, 1 - ((embedding::halfvec({dim})) <=> %(vector)s::halfvec({dim})) FROM engram.memories "
    "WHERE space_id = %(space)s AND vector_dims(embedding) = {dim} AND NOT suppressed AND " + LIVE + " "
    "AND id <> ALL(%(exclude)s) ORDER BY (embedding::halfvec({dim})) <=> %(vector)s::halfvec({dim}), id "
    "LIMIT %(k)s"
)
# The fan (index/density.py; the ``fans`` table, schema migration 7): a memory's list, written
# with its vector (``top``: ascending cosines); new lists of the neighbours it entered (``tops``:
# array literals; ``fans``: their means); the space's average over its measured memories (the
# row with a NULL id; a suppressed memory's row is deleted, as SQLite's LocalDensity drops it; an
# expired one counts until it is swept), then the fans of ``ids``; the vectors not measured yet
# (migrated rows, a re-embedding's, a restored space's), for the maintenance.
PUT_FAN: Final = (
    "INSERT INTO engram.fans (space_id, memory_id, top, fan) VALUES (%(space)s, %(memory_id)s, %(top)s, "
    "%(fan)s) ON CONFLICT (space_id, memory_id) DO UPDATE SET top = excluded.top, fan = excluded.fan"
)
# The lists of a new vector's nearest memories (a statement of its own: joined to the search, a
# generic plan may hash the space's whole fans table).
FAN_TOPS: Final = (
    "SELECT memory_id, top FROM engram.fans WHERE space_id = %(space)s AND memory_id = ANY(%(ids)s)"
)
DROP_FAN: Final = "DELETE FROM engram.fans WHERE space_id = %(space)s AND memory_id = %(memory_id)s"
DROP_FANS: Final = "DELETE FROM engram.fans WHERE space_id = %(space)s AND memory_id = ANY(%(ids)s)"
CLEAR_FANS: Final = "DELETE FROM engram.fans WHERE space_id = %(space)s"
SET_FANS: Final = (
    "UPDATE engram.fans SET top = u.top::real[], fan = u.mean "
    "FROM unnest(%(ids)s::text[], %(tops)s::text[], %(fans)s::float8[]) AS u(mid, top, mean) "
    "WHERE space_id = %(space)s AND memory_id = u.mid"
)
FANS: Final = (
    "SELECT NULL::text, avg(fan), count(fan) FROM engram.fans WHERE space_id = %(space)s UNION ALL "
    "SELECT memory_id, fan, 1 FROM engram.fans WHERE space_id = %(space)s AND memory_id = ANY(%(ids)s)"
)
UNMEASURED: Final = (
    "SELECT id, embedding FROM engram.memories AS m WHERE space_id = %(space)s AND embedding IS NOT NULL "
    "AND NOT suppressed AND " + LIVE + " AND NOT EXISTS (SELECT 1 FROM engram.fans AS f "
    "WHERE f.space_id = %(space)s AND f.memory_id = m.id) LIMIT %(limit)s"
)
# The (at most 4) episodes nearest a new episode's ``when`` within the adjacency window.
TEMPORAL_NEIGHBOURS: Final = (
    "SELECT id FROM engram.memories WHERE space_id = %(space)s AND ep_when BETWEEN %(lo)s AND %(hi)s "
    "AND id <> %(id)s AND NOT suppressed AND " + LIVE + " ORDER BY abs(ep_when - %(when)s), created_lsn "
    "LIMIT 4"
)
# Edges touching any of ``ids`` (either end), strongest first: two index seeks, not an OR.
EDGES_OF: Final = (
    "SELECT source_id, target_id, strength, kind, lsn FROM engram.associations "
    "WHERE space_id = %(space)s AND source_id = ANY(%(ids)s) UNION "
    "SELECT source_id, target_id, strength, kind, lsn FROM engram.associations "
    "WHERE space_id = %(space)s AND target_id = ANY(%(ids)s) "
    "ORDER BY strength DESC, source_id, target_id LIMIT %(limit)s"
)

# -- quotas (SPEC §10): what a space holds, counted inside the write that would exceed it ---------
# The space's row count, moved by ``n`` (negative: rows deleted) by the write that inserted or
# deleted them; every INSERT into or DELETE from engram.memories must be matched by one (the
# quota's fast path reads it; tests/postgres/test_writes.py checks it against the rows).
# ``bytes``: the change in the stored size of the space's rows (ROW_BYTES), kept the same way in
# ``memory_bytes`` by every write that inserts, deletes or resizes rows, so ``max_space_bytes``
# reads it instead of summing the rows (test_writes.py checks it against the rows too).
ADD_MEMORY_ROWS: Final = (
    "UPDATE engram.spaces SET memory_rows = memory_rows + %(n)s, memory_bytes = memory_bytes + %(bytes)s "
    "WHERE space_id = %(space)s RETURNING memory_rows, memory_bytes"
)
# A memory's bytes: its content, vector, tags and metadata as stored (compressed when large). Read
# from the stored row (never from RETURNING, whose values may not be the stored, toasted form).
ROW_BYTES: Final = (
    "(pg_column_size(content) + coalesce(pg_column_size(embedding), 0) + pg_column_size(tags) "
    "+ pg_column_size(metadata))"
)
BYTES_OF_IDS: Final = (
    "SELECT coalesce(sum(" + ROW_BYTES + "), 0) FROM engram.memories WHERE space_id = %(space)s "
    "AND id = ANY(%(ids)s)"
)
# The rows a delete by filter is about to delete (the same selection, under the counter row: no
# other write of the space can change them between the two statements).
MATCHING_BYTES: Final = (
    "SELECT coalesce(sum(" + ROW_BYTES + "), 0) FROM engram.memories WHERE space_id = %(space)s AND "
    + LIVE + " AND {filter}"
)
# After writes that resize every row (a re-embedding's switch, a restore): the sum, recounted.
RECOUNT_BYTES: Final = (
    "UPDATE engram.spaces SET memory_bytes = (SELECT coalesce(sum(" + ROW_BYTES + "), 0) "
    "FROM engram.memories WHERE space_id = %(space)s) WHERE space_id = %(space)s"
)
# Two statements, so a ``max_memories`` alone costs a count (an index-only scan when the table's
# visibility map allows) and never the heap visit that the sizes need.
SPACE_COUNT: Final = "SELECT count(*) FROM engram.memories WHERE space_id = %(space)s AND " + LIVE
# A memory's bytes: its content, vector, tags and metadata as stored (compressed when large), plus
# ``overhead`` for the row and its indexes (auth/quotas.py's estimate of a SQLite row).
SPACE_BYTES: Final = (
    "SELECT coalesce(sum(" + ROW_BYTES + " + %(overhead)s), 0) FROM engram.memories "
    "WHERE space_id = %(space)s AND " + LIVE
)

# -- expiry (core/expiry.py, MemorySpace.sweep_expired) --------------------------------------------
HAS_EXPIRED: Final = (
    "SELECT 1 FROM engram.memories WHERE space_id = %(space)s AND expires_at <= %(now)s LIMIT 1"
)
# One sweep batch: the ``limit`` soonest expired rows (locked, so two sweepers take disjoint rows
# or wait), deleted; associations and metadata go by cascade. MATERIALIZED matters: as a plain
# ``IN (SELECT ... LIMIT ... FOR UPDATE)`` the planner may rescan the subquery per outer row, and
# each rescan skips the rows this statement already deleted, so the batch grew to every expired row.
# Each deleted row comes back with its stored bytes, read in the batch before the delete.
DELETE_EXPIRED: Final = (
    "WITH batch AS MATERIALIZED (SELECT id AS gone, " + ROW_BYTES + " AS b FROM engram.memories "
    "WHERE space_id = %(space)s AND expires_at <= %(now)s ORDER BY expires_at, id LIMIT %(limit)s "
    "FOR UPDATE) DELETE FROM engram.memories USING batch WHERE space_id = %(space)s AND id = batch.gone "
    "RETURNING id, expires_at, batch.b"
)
# ``spaces.next_expiry`` (schema migration 7): a write storing an ``expires_at`` lowers it, holding
# the counter row already; a sweep sets it to the space's soonest expiry, after locking the row
# (LOCK_SPACE_ROW), so no write that lowered it meanwhile is lost.
LOWER_NEXT_EXPIRY: Final = (
    "UPDATE engram.spaces SET next_expiry = least(next_expiry, %(at)s) WHERE space_id = %(space)s"
)
NEXT_EXPIRY: Final = "SELECT next_expiry FROM engram.spaces WHERE space_id = %(space)s"
SETTLE_NEXT_EXPIRY: Final = (
    "UPDATE engram.spaces SET next_expiry = (SELECT min(expires_at) FROM engram.memories "
    "WHERE space_id = %(space)s AND expires_at IS NOT NULL) WHERE space_id = %(space)s"
)
# One sweeper per space at a time across servers (a transaction-scoped advisory lock, sweep_key).
SWEEP_TRY_LOCK: Final = "SELECT pg_try_advisory_xact_lock(%(key)s)"
# A write reusing an expired memory's id takes it first, as the sweep would.
REAP_EXPIRED_ID: Final = (
    "WITH batch AS MATERIALIZED (SELECT id AS gone, " + ROW_BYTES + " AS b FROM engram.memories "
    "WHERE space_id = %(space)s AND id = %(id)s AND expires_at <= %(now)s FOR UPDATE) "
    "DELETE FROM engram.memories USING batch WHERE space_id = %(space)s AND id = batch.gone "
    "RETURNING id, expires_at, batch.b"
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
    "AND memory_id = ANY(%(memory_ids)s) AND data ? 'content'"
)
# Retention (eventlog.trim): the newest position beyond the ``keep`` newest, then all up to it.
TRIM_POINT: Final = (
    "SELECT lsn, seq FROM engram.events WHERE space_id = %(space)s ORDER BY lsn DESC, seq DESC "
    "LIMIT 1 OFFSET %(keep)s"
)
TRIM_EVENTS: Final = (
    "DELETE FROM engram.events WHERE space_id = %(space)s AND (lsn, seq) <= (%(lsn)s, %(seq)s)"
)
# The wake-up of other servers: delivered to every LISTENer when (and only if) the writing
# transaction commits, in commit order. The payload is ``<lsn>:<space id>``; a listener then reads
# the events from the table (a notification carries no data: the log is the source of truth).
NOTIFY_CHANNEL: Final = "engram_events"
NOTIFY_WRITE: Final = "SELECT pg_notify('engram_events', %(lsn)s::text || ':' || %(space)s)"
LISTEN: Final = "LISTEN engram_events"

# -- cognitive recall (cognition/pg_recall.py) ----------------------------------------------------
# The rows of candidates, by id (one read for all of them; no embedding).
ROWS_BY_ID: Final = (
    "SELECT " + MEMORY_COLUMNS + " FROM engram.memories WHERE space_id = %(space)s AND id = ANY(%(ids)s) "
    "AND " + LIVE
)
# Candidates from the cue's context alone (no query, no vector): cognition/candidates.py's
# context_sql, newest first. Time bounds are -Infinity / Infinity when not given; ``place`` is a
# LIKE pattern (``%`` when no location); ``people`` / ``tags`` empty match everything (CASE, not
# OR: no OR may follow the space filter). ``who`` holds a JSON list of names, as on SQLite.
CONTEXT_CANDIDATES: Final = (
    "SELECT " + MEMORY_COLUMNS + " FROM engram.memories WHERE space_id = %(space)s AND NOT suppressed "
    "AND " + LIVE + " AND coalesce(ep_when, created_at) BETWEEN %(t_from)s AND %(t_to)s "
    "AND lower(coalesce(where_location, '')) LIKE %(place)s ESCAPE '\\' "
    "AND memory_type = coalesce(%(memory_type)s, memory_type) "
    "AND CASE WHEN cardinality(%(people)s::text[]) = 0 THEN true ELSE EXISTS (SELECT 1 FROM "
    "jsonb_array_elements_text(coalesce(nullif(who, ''), '[]')::jsonb) AS p(name) "
    "WHERE lower(p.name) = ANY(%(people)s::text[])) END "
    "AND CASE WHEN cardinality(%(tags)s::text[]) = 0 THEN true ELSE tags ?| %(tags)s::text[] END "
    "AND {filter} ORDER BY coalesce(ep_when, created_at) DESC, id LIMIT %(limit)s"
)
# Spreading activation's edges out of ``ids`` (cognition/associations.py neighbour_fetch): at most
# ``fanout`` per source, strongest first (ties by target id); suppressed targets are skipped, so
# activation neither arrives at nor flows through them. One statement per hop.
NEIGHBOURS: Final = (
    "SELECT source_id, target_id, strength FROM (SELECT source_id, target_id, strength, "
    "row_number() OVER (PARTITION BY source_id ORDER BY strength DESC, target_id) AS n "
    "FROM engram.associations WHERE space_id = %(space)s AND source_id = ANY(%(ids)s) "
    "AND target_id NOT IN (SELECT id FROM engram.memories WHERE space_id = %(space)s AND suppressed)) "
    "AS edges WHERE n <= %(fanout)s ORDER BY source_id, strength DESC, target_id"
)
# Reinforcement of recalled memories (core/postgres/reinforce.py; core/reinforce.py on SQLite).
# Increments computed by PostgreSQL, never read-modify-write in Python, so two servers
# reinforcing one row both count. The rows are locked in id order first: two servers' batches
# over the same rows then queue instead of deadlocking. No LSN, no event: not a durable mutation
# of the memory's content (as on SQLite, where it is a write that does not advance the LSN).
REINFORCE_LOCK: Final = (
    "SELECT id FROM engram.memories WHERE space_id = %(space)s AND id = ANY(%(ids)s) ORDER BY id FOR UPDATE"
)
REINFORCE: Final = (
    "UPDATE engram.memories SET access_count = access_count + due.n, "
    "last_access = greatest(last_access, due.at), activation = least(1.0, activation + due.gain) "
    "FROM unnest(%(ids)s::text[], %(counts)s::int[], %(times)s::float8[], %(gains)s::float8[]) "
    "AS due(id, n, at, gain) WHERE space_id = %(space)s AND memories.id = due.id"
)

# -- across spaces (the directory) ----------------------------------------------------------------
LIST_SPACES: Final = "SELECT space_id FROM engram.spaces ORDER BY space_id"
# The spaces with a re-embedding in progress (each server's re-embedding worker, reembed.py).
REEMBEDDING_SPACES: Final = (
    "SELECT space_id FROM engram.spaces WHERE reembed IS NOT NULL ORDER BY space_id"
)
# The spaces with memories due to expire (the maintenance of every server sweeps them, held open
# by a server or not), soonest first.
DUE_SPACES: Final = (
    "SELECT space_id FROM engram.spaces WHERE next_expiry <= %(now)s ORDER BY next_expiry LIMIT %(limit)s"
)
DIRECTORY: Final = frozenset({"SET_DIRECTORY", "LIST_SPACES", "REEMBEDDING_SPACES", "DUE_SPACES"})

# -- re-embedding (core/postgres/reembed.py; core/embedded.py on SQLite) ----------------------------
# A row has text to embed (core/embedded.py's EMBEDDABLE_SQL: one of the fields is not empty, i.e.
# their concatenation is not; no OR may follow the space filter, see tests/postgres/test_schema.py).
EMBEDDABLE: Final = (
    "(content || coalesce(what, '') || coalesce(where_location, '') || coalesce(why, '') "
    "|| coalesce(how, '')) <> ''"
)
START_REEMBED: Final = (
    "UPDATE engram.spaces SET reembed = %(target)s WHERE space_id = %(space)s AND reembed IS NULL "
    "RETURNING space_id"
)
CLEAR_REEMBED_VECTORS: Final = "DELETE FROM engram.reembed_vectors WHERE space_id = %(space)s"
# An update changed the row's text (or its vector): the staged vector is of the old text.
DROP_REEMBED_VECTOR: Final = (
    "DELETE FROM engram.reembed_vectors WHERE space_id = %(space)s AND memory_id = %(id)s"
)
TEXTLESS_VECTORS: Final = (
    "SELECT count(*) FROM engram.memories WHERE space_id = %(space)s AND embedding IS NOT NULL "
    "AND NOT " + EMBEDDABLE
)
# What a re-embedding covers: the unsuppressed rows with text; ``done``: those with a staged vector.
REEMBED_COUNTS: Final = (
    "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM engram.reembed_vectors AS r "
    "WHERE r.space_id = %(space)s AND r.memory_id = m.id)) FROM engram.memories AS m "
    "WHERE space_id = %(space)s AND NOT suppressed AND " + EMBEDDABLE
)
REEMBED_TODO: Final = (
    "SELECT id, lsn, content, what, where_location, why, how, who FROM engram.memories AS m "
    "WHERE space_id = %(space)s AND NOT suppressed AND " + EMBEDDABLE + " AND NOT EXISTS "
    "(SELECT 1 FROM engram.reembed_vectors AS r WHERE r.space_id = %(space)s AND r.memory_id = m.id) "
    "ORDER BY created_lsn LIMIT %(limit)s"
)
# Before staging vectors: the rows, share-locked until the step commits (an update of one waits,
# then drops the staged vector), with the LSN their text was read at (changed: not staged).
REEMBED_LOCK_ROWS: Final = (
    "SELECT id, lsn FROM engram.memories WHERE space_id = %(space)s AND id = ANY(%(ids)s) "
    "AND NOT suppressed ORDER BY id FOR SHARE"
)
STAGE_REEMBED_VECTOR: Final = (
    "INSERT INTO engram.reembed_vectors (space_id, memory_id, embedding) VALUES (%(space)s, %(id)s, "
    "%(embedding)s) ON CONFLICT (space_id, memory_id) DO UPDATE SET embedding = excluded.embedding"
)
# The switch, holding the counter row (every writer of the space waits for it): the target's
# vectors replace the old ones; a vector with no staged twin (a suppressed memory's) is dropped,
# as SQLite's switch does.
LOCK_SPACE_ROW: Final = (
    "SELECT dimension, embedder, reembed FROM engram.spaces WHERE space_id = %(space)s FOR UPDATE"
)
DROP_UNSTAGED_VECTORS: Final = (
    "UPDATE engram.memories AS m SET embedding = NULL WHERE space_id = %(space)s AND embedding IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM engram.reembed_vectors AS r WHERE r.space_id = %(space)s "
    "AND r.memory_id = m.id)"
)
APPLY_STAGED_VECTORS: Final = (
    "UPDATE engram.memories AS m SET embedding = (SELECT r.embedding FROM engram.reembed_vectors AS r "
    "WHERE r.space_id = %(space)s AND r.memory_id = m.id) WHERE space_id = %(space)s AND EXISTS "
    "(SELECT 1 FROM engram.reembed_vectors AS r WHERE r.space_id = %(space)s AND r.memory_id = m.id)"
)
SWITCH_EMBEDDER: Final = (
    "UPDATE engram.spaces SET embedder = %(embedder)s, dimension = %(dimension)s, reembed = NULL "
    "WHERE space_id = %(space)s"
)
# One worker per space at a time across servers: a transaction-scoped advisory try-lock (a busy
# space is skipped: another server is on it).
REEMBED_TRY_LOCK: Final = "SELECT pg_try_advisory_xact_lock(%(key)s)"

# -- consolidation and beliefs (core/postgres/beliefs.py, cognition/pg_consolidation.py) ----------
# The input of a run: the live episodes with a vector (ordered by memory id in Python: code point
# order, as SQLite's BINARY collation orders them, whatever the database's collation).
EPISODES_TO_CONSOLIDATE: Final = (
    "SELECT id, content, embedding, lsn FROM engram.memories WHERE space_id = %(space)s "
    "AND kind = 'episode' AND NOT suppressed AND embedding IS NOT NULL AND " + LIVE
)
EPISODES_WITHOUT_VECTOR: Final = (
    "SELECT count(*) FROM engram.memories WHERE space_id = %(space)s AND kind = 'episode' "
    "AND NOT suppressed AND embedding IS NULL AND " + LIVE
)
# The fingerprint of the same rows (consolidation.fingerprint): count, newest and sum of LSNs.
EPISODE_FINGERPRINT: Final = (
    "SELECT count(*), coalesce(max(lsn), 0), coalesce(sum(lsn), 0)::float8 FROM engram.memories "
    "WHERE space_id = %(space)s AND kind = 'episode' AND NOT suppressed AND embedding IS NOT NULL AND "
    + LIVE
)
LIVE_EPISODES_AMONG: Final = (
    "SELECT id FROM engram.memories WHERE space_id = %(space)s AND id = ANY(%(ids)s) "
    "AND NOT suppressed AND embedding IS NOT NULL AND " + LIVE
)
MARK_CONSOLIDATED: Final = (
    "UPDATE engram.memories SET consolidation_state = 'consolidated' WHERE space_id = %(space)s "
    "AND id = ANY(%(ids)s) AND consolidation_state IS DISTINCT FROM 'consolidated'"
)
BELIEF_CREATED: Final = "SELECT id, created_at FROM engram.beliefs WHERE space_id = %(space)s"
DELETE_BELIEFS: Final = "DELETE FROM engram.beliefs WHERE space_id = %(space)s"
INSERT_BELIEF: Final = (
    "INSERT INTO engram.beliefs (space_id, id, content, centroid, strength, schema_confidence, citations, "
    "created_at, updated_at, run_id, lsn) VALUES (%(space)s, %(id)s, %(content)s, %(centroid)s, "
    "%(strength)s, %(schema_confidence)s, %(citations)s, %(created_at)s, %(updated_at)s, %(run_id)s, "
    "%(lsn)s)"
)
BELIEF_COLUMNS: Final = (
    "id, content, centroid, strength, schema_confidence, citations, created_at, updated_at, run_id, lsn"
)
LIST_BELIEFS: Final = (
    "SELECT " + BELIEF_COLUMNS + " FROM engram.beliefs WHERE space_id = %(space)s "
    "AND id COLLATE \"C\" > %(after)s ORDER BY id COLLATE \"C\" LIMIT %(limit)s"
)
GET_BELIEF: Final = (
    "SELECT " + BELIEF_COLUMNS + " FROM engram.beliefs WHERE space_id = %(space)s AND id = %(id)s"
)
# At most one run per space across servers: a transaction-scoped advisory lock on a key derived
# from the space id (beliefs.lock_key), held from the run's snapshot to its commit.
CONSOLIDATION_LOCK: Final = "SELECT pg_advisory_xact_lock(%(key)s)"
CONSOLIDATION_TRY_LOCK: Final = "SELECT pg_try_advisory_xact_lock(%(key)s)"

# -- recognize, reminisce, complete, introspect (core/postgres/cogreads.py) ------------------------
MEMORIES_BY_IDS: Final = (
    "SELECT " + MEMORY_COLUMNS + ", embedding FROM engram.memories WHERE space_id = %(space)s "
    "AND id = ANY(%(ids)s) AND " + LIVE
)
# Any of the words (websearch syntax: "a or b or c"), best first; ``episodes``: episodes only.
TEXT_ANY: Final = (
    "SELECT id, ts_rank(search, query) AS rank FROM engram.memories, "
    "websearch_to_tsquery('english', %(text)s) AS query WHERE space_id = %(space)s AND search @@ query "
    "AND NOT suppressed AND " + LIVE + " AND kind IN ('episode', %(kind)s) "
    "ORDER BY rank DESC, id COLLATE \"C\" LIMIT %(k)s"
)
# Episodes in a time window (bounds optional: a NULL bound is no bound), in time order.
EPISODES_IN_WINDOW: Final = (
    "SELECT " + MEMORY_COLUMNS + ", embedding FROM engram.memories WHERE space_id = %(space)s "
    "AND kind = 'episode' AND NOT suppressed AND " + LIVE + " "
    "AND coalesce(ep_when >= %(start)s, %(start)s::float8 IS NULL) "
    "AND coalesce(ep_when <= %(end)s, %(end)s::float8 IS NULL) "
    "ORDER BY ep_when NULLS FIRST, id COLLATE \"C\" LIMIT %(limit)s"
)
EPISODES_AT_PLACE: Final = (
    "SELECT id FROM engram.memories WHERE space_id = %(space)s AND kind = 'episode' AND NOT suppressed "
    "AND " + LIVE + " AND strpos(lower(where_location), %(needle)s) > 0 LIMIT 200"
)
EPISODES_WITH_PERSON: Final = (
    "SELECT id FROM engram.memories WHERE space_id = %(space)s AND kind = 'episode' AND NOT suppressed "
    "AND " + LIVE + " AND strpos(lower(who), %(needle)s) > 0 LIMIT 200"
)
EPISODES_NEAR_TIME: Final = (
    "SELECT id FROM engram.memories WHERE space_id = %(space)s AND kind = 'episode' AND NOT suppressed "
    "AND " + LIVE + " AND ep_when IS NOT NULL ORDER BY abs(ep_when - %(t)s), id COLLATE \"C\" LIMIT 50"
)
# Cosine on the leading ``{dim}`` components (a partial embedding), live memories of any kind.
PREFIX_COSINE: Final = (
    "SELECT id, 1 - (subvector(embedding, 1, {dim})::halfvec({dim}) <=> %(probe)s::halfvec({dim})) AS sim "
    "FROM engram.memories WHERE space_id = %(space)s AND embedding IS NOT NULL AND NOT suppressed "
    "AND vector_dims(embedding) >= {dim} AND " + LIVE + " ORDER BY sim DESC NULLS LAST, id COLLATE \"C\" "
    "LIMIT 200"
)
STATS_BY_TYPE: Final = (
    "SELECT memory_type, count(*) FROM engram.memories WHERE space_id = %(space)s AND NOT suppressed "
    "AND " + LIVE + " GROUP BY memory_type ORDER BY 1"
)
STATS_BY_STATE: Final = (
    "SELECT consolidation_state, count(*) FROM engram.memories WHERE space_id = %(space)s "
    "AND kind = 'episode' AND NOT suppressed AND " + LIVE + " GROUP BY consolidation_state ORDER BY 1"
)
STATS_TOTALS: Final = (
    "SELECT count(*), count(*) FILTER (WHERE suppressed), coalesce(sum(pg_column_size(m.*)), 0) "
    "FROM engram.memories m WHERE space_id = %(space)s AND " + LIVE
)
STATS_ACTIVATION: Final = (
    "SELECT activation, last_access, decay_rate FROM engram.memories WHERE space_id = %(space)s "
    "AND NOT suppressed AND " + LIVE
)
STATS_ASSOCIATIONS: Final = "SELECT count(*) FROM engram.associations WHERE space_id = %(space)s"
STATS_BELIEFS: Final = "SELECT count(*) FROM engram.beliefs WHERE space_id = %(space)s"
