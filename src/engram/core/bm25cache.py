"""BM25 of a text query from per-word scores remembered while a space's full-text index is unchanged.

FTS5 ranks an OR query with ``bm25()``: for each matching row, the sum over the query's phrases
of idf(phrase) times a saturated, length-normalised count of the phrase in the row, all read
from the index (the phrase's row count, the row's token count, the average). What one phrase
adds to a row does not depend on the other phrases, so the OR query's bm25 is the sum of each
word's own single-phrase bm25, and adding them in the query's word order, as FTS5 does, gives
the same floats bit for bit (checked on 296,817 rows of bench/text_query.py's space, and
by tests/unit/test_bm25_cache.py). FTS5 pays ~1 us per matching row (its document-size
lookup, the phrase instances): ~1 ms for a 15-20 word question at 10k memories, while adding
remembered per-word arrays in numpy takes ~0.1 ms.

Remembered scores are valid only while the index is unchanged. The key is the index's
structure record (FTS5 rewrites it, with a new cookie, in every transaction that changes the
index) and its averages record (row and token counts); words are fetched in one read
transaction that first checks the key, so every array kept under a key was read at that key.
Reinforcement and embedding writes leave the index alone and keep the cache; a memory stored,
changed or deleted drops it. A query whose words are mostly new at the current index state is
answered by SQL and remembers nothing but which words were asked for (so under a stream of
writes, or of ever new words, the cache costs one key read per query); a word asked for again
is fetched on its own (~1.5x its share of FTS5's OR query, once) and then served from memory.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from typing import Any

import numpy as np

from . import readgate

#: Phrases asked for at one index state that are remembered as asked (to fetch them the next time).
SEEN_MAX = 65_536
#: At most this many (rowid, score) pairs are remembered per space (16 bytes each: 4 MiB); a
#: space's cache that would grow past it starts over. 0 turns the cache off.
POSTINGS_CACHED = 262_144

_KEY_SQL = "SELECT id, block FROM memories_fts_data WHERE id IN (1, 10) ORDER BY id"
_WORD_SQL = "SELECT rowid, bm25(memories_fts) FROM memories_fts WHERE memories_fts MATCH ?"

Scores = tuple[np.ndarray, np.ndarray]  # rowids (int64, ascending), bm25 (float64, negative)


class _SpaceScores:
    """One space's remembered per-phrase scores, all read at index state ``key``."""

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.phrases: dict[str, Scores] = {}
        self.postings = 0
        self.seen: set[str] = set()  # phrases asked for at this state (remembered from the second time)
        self.lock = threading.Lock()


_cache: weakref.WeakKeyDictionary[Any, _SpaceScores] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def index_key(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """What the full-text index's state is known by: its averages and structure records."""
    return tuple(conn.execute(_KEY_SQL).fetchall())


def ranking(space: Any, conn: sqlite3.Connection, phrases: list[str]) -> Scores | None:
    """Every row matching any of ``phrases`` (distinct FTS5 phrases, e.g. quoted words) with its
    ``bm25()`` for their OR query, best first, ties by rowid (the order of FTS5's ``ORDER BY
    bm25(...) LIMIT n``); None when most of the phrases are new at the index's current state
    (the caller asks FTS5 then) or the cache is off."""
    if POSTINGS_CACHED <= 0 or not phrases:
        return None
    with readgate.native():
        key = index_key(conn)
    with _cache_lock:
        known = _cache.get(space)
        if known is None or known.key != key:
            known = _cache[space] = _SpaceScores(key)
    got: dict[str, Scores] = {}
    for p in phrases:
        scores = known.phrases.get(p)
        if scores is not None:
            got[p] = scores
    missing = [p for p in phrases if p not in got]
    with known.lock:
        new = [p for p in missing if p not in known.seen]
        if len(known.seen) + len(new) > SEEN_MAX:
            known.seen = set()
        known.seen.update(new)
    if 2 * len(new) > len(phrases):
        # Mostly words not asked for at this index state: FTS5's own query costs less than
        # fetching each word alone (~1.5x, rows matching two words are scored twice), and a
        # word asked for once may never come back. They are fetched when they come back.
        return None
    if missing:
        fetched = _fetch(conn, key, missing)
        if fetched is None:
            return None  # the index changed meanwhile: the next query starts the cache over
        got.update(fetched)
        _remember(known, fetched)
    ids = np.concatenate([got[p][0] for p in phrases])
    each = np.concatenate([got[p][1] for p in phrases])
    if not len(ids):
        return ids, each
    # Per row, the phrases' scores added in query order starting from 0.0, as FTS5 adds them
    # (np.add.at applies repeated indices in order); then the stable sort keeps rowid order
    # among equal scores, as FTS5's rowid-ordered scan into SQLite's sorter does.
    rowids, where = np.unique(ids, return_inverse=True)
    total = np.zeros(len(rowids), dtype=np.float64)
    np.add.at(total, where, each)
    order = np.argsort(total, kind="stable")
    return rowids[order], total[order]


def _fetch(conn: sqlite3.Connection, key: tuple[Any, ...], phrases: list[str]) -> dict[str, Scores] | None:
    """Each phrase's rows and single-phrase bm25, read in one transaction at index state ``key``
    (None if the index is no longer at ``key``)."""
    out: dict[str, Scores] = {}
    own = not conn.in_transaction  # inside a caller's read transaction, that one is the snapshot
    with readgate.native():
        if own:
            conn.execute("BEGIN")
        try:
            if index_key(conn) != key:
                return None
            for p in phrases:
                rows = conn.execute(_WORD_SQL, (p,)).fetchall()
                out[p] = (np.array([r[0] for r in rows], dtype=np.int64),
                          np.array([r[1] for r in rows], dtype=np.float64))
        finally:
            if own:
                conn.execute("COMMIT")
    return out


def _remember(known: _SpaceScores, fetched: dict[str, Scores]) -> None:
    n = sum(len(ids) for ids, _ in fetched.values())
    if n > POSTINGS_CACHED:
        return  # one query's words alone exceed the budget: used once, not kept
    with known.lock:
        if known.postings + n > POSTINGS_CACHED:
            known.phrases = {}
            known.postings = 0
        for p, scores in fetched.items():
            if p not in known.phrases:
                known.phrases[p] = scores
                known.postings += len(scores[0])


def forget(space: Any) -> None:
    """Drop what is remembered for ``space`` (tests; a closed space's entry goes with it)."""
    with _cache_lock:
        _cache.pop(space, None)
