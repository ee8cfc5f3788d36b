"""Full-text candidates of one space: FTS5 BM25 over content and episode fields.

No user syntax ever reaches FTS5: a query becomes its words, each quoted, OR-ed.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import EngramError
from ..storage.sqlite_store import episode_text_sql
from . import bm25cache, readgate

if TYPE_CHECKING:
    from .space import MemorySpace

_TOKEN = re.compile(r"\w+", re.UNICODE)


# Words that carry no topic: matching them says nothing about relevance ("when is the
# meeting" must not match every memory containing "is" and "the").
STOPWORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from",
    "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him",
    "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me",
    "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only",
    "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
    "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with",
    "would", "you", "your", "yours", "yourself", "yourselves", "ever", "also", "anything",
    "something", "get", "got", "tell", "know",
})


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def key_words(text: str) -> list[str]:
    """The query's words without stopwords (all of them, if nothing else is left)."""
    words = tokens(text)
    kept = [w for w in words if w not in STOPWORDS]
    return kept or words


@functools.lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """A crude suffix strip, for counting which query words a text covers (memoised: a
    recall stems every word of its ~50 candidate texts, mostly the same few thousand words)."""
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


class _Stems(dict[str, str]):
    """Raw token -> ``stem(token.lower())``, filled on a miss (``__missing__``), so a text's
    stems are looked up by ``map(_STEMS.__getitem__, ...)`` in C; cleared when it grows large."""

    def __missing__(self, word: str) -> str:
        s = stem(word.lower())
        if len(self) >= STEMS_CACHED:
            self.clear()
        self[word] = s
        return s


#: Distinct raw tokens whose stems are remembered (one process-wide table, bounded).
STEMS_CACHED = 65_536
_STEMS = _Stems()


#: Texts up to this long have their stems remembered (4,096 of them: at most ~8 MB of texts).
STEMS_TEXT_MAX_CHARS = 2048


def text_stems(text: str) -> frozenset[str]:
    """The stems of ``text``'s words: ``{stem(w) for w in tokens(text)}``, without a Python call
    per word (a recall's ~50 candidates are ~1,000 words; hot memories come back query after
    query, so the stems of short texts are remembered too)."""
    if len(text) <= STEMS_TEXT_MAX_CHARS:
        return _remembered_stems(text)
    return _stems_of(text)


def _stems_of(text: str) -> frozenset[str]:
    return frozenset(map(_STEMS.__getitem__, _TOKEN.findall(text)))


_remembered_stems = functools.lru_cache(maxsize=4096)(_stems_of)


def quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


#: A query word found in more than this share of a space's memories is left out of the FTS5
#: query while rarer words remain: its BM25 weight (idf) is small and its posting list the
#: longest, so it costs the most and decides the least (issue 15: "stop-words, query-term
#: caps"). It still counts in the coverage score of the rows found.
COMMON_SHARE = 0.1
#: At most this many words go to FTS5 (the rarest first); the rest count in coverage only.
MAX_QUERY_TERMS = 12
#: Spaces smaller than this are searched with every key word (nothing there is slow).
PRUNE_MIN_MEMORIES = 2000
#: Document frequencies are remembered for this long, and while the space grew by less than
#: DF_REFRESH_GROWTH of its size (a word's share moves slowly).
DF_TTL_SECONDS = 60.0
DF_REFRESH_GROWTH = 0.1
#: Rows beyond ``limit`` the first FTS window reads when suppression is the only filter.
WINDOW_SLACK = 10
#: Rows per read at most when a remembered ranking is walked (core.bm25cache).
WINDOW_MAX = 500


class _Vocabulary:
    """Per space: its size and the document frequency of words seen in queries (approximate:
    refreshed by time and growth, which is all pruning needs)."""

    def __init__(self) -> None:
        self.size = 0
        self.lsn = 0
        self.at = 0.0
        self.df: dict[str, int] = {}


_vocab: weakref.WeakKeyDictionary[Any, _Vocabulary] = weakref.WeakKeyDictionary()
_vocab_lock = threading.Lock()


def _vocabulary(space: MemorySpace, conn: sqlite3.Connection) -> _Vocabulary:
    with _vocab_lock:
        v = _vocab.get(space)
        if v is None:
            v = _vocab[space] = _Vocabulary()
    lsn, now = space.last_lsn, time.monotonic()
    if now - v.at > DF_TTL_SECONDS or lsn - v.lsn > DF_REFRESH_GROWTH * max(v.size, 100):
        (size,) = conn.execute("SELECT count(*) FROM memories").fetchone()
        v.size, v.lsn, v.at, v.df = int(size), lsn, now, {}
    return v


def search_words(space: MemorySpace, conn: sqlite3.Connection, words: list[str]) -> list[str]:
    """The words an FTS5 query searches with: common ones (``COMMON_SHARE``) left out while rarer
    ones remain, at most ``MAX_QUERY_TERMS`` of the rarest; in a small space, every word."""
    if len(words) <= 1:
        return words
    given = getattr(space, "given_words", None)
    if given is not None:  # a read worker's copy: the server's own pruning of this query, sent along
        sent = given.get(tuple(words))
        if sent is not None:
            return list(sent)
    v = _vocabulary(space, conn)
    if v.size < PRUNE_MIN_MEMORIES:
        return words
    df = v.df
    for w in words:
        if w not in df:
            (n,) = conn.execute("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?",
                                (quoted(w),)).fetchone()
            df[w] = int(n)
    limit = COMMON_SHARE * v.size
    kept = [w for w in words if 0 < df[w] <= limit]
    if not kept:
        return words
    if len(kept) > MAX_QUERY_TERMS:
        kept = sorted(kept, key=lambda w: (df[w], w))[:MAX_QUERY_TERMS]
    return kept


def query_words(query: str) -> list[str]:
    """The distinct key words of ``query`` that a text search starts from (before pruning)."""
    return list(dict.fromkeys(key_words(query)))[:64]


def pruned_words(space: MemorySpace, query: str) -> tuple[tuple[str, ...], list[str]] | None:
    """``(query_words(query), search_words(...) of them)`` as a text search of ``query`` in
    ``space`` would use them now, or None when they cannot be read. The read pool sends this to
    a copy (``MemorySpace.given_words``): the vocabulary pruning goes by is per process and
    approximate (refreshed by time and growth), so a copy's own could prune a query differently
    from the server's at 2,000+ memories (tests/integration/test_readpool.py)."""
    words = query_words(query)
    if len(words) <= 1:
        return tuple(words), words
    try:
        conn = space.check_healthy().reader()
        with readgate.native():
            return tuple(words), search_words(space, conn, words)
    except (sqlite3.Error, EngramError):
        return None


def text_candidates(
    space: MemorySpace, query: str, limit: int, episodes_only: bool = False,
    where: tuple[str, list[Any]] | None = None,
) -> dict[int, float]:
    """``rowid -> [0, 1]`` text relevance of the best FTS matches (suppressed excluded).

    ``where``: an extra condition on the row ``m`` (a metadata filter, ``core.filters.where_sql``)
    and its parameters, applied inside the query so the best ``limit`` *matching* rows come back.
    """
    # Words are left out by how common they are (search_words), never by rank alone:
    # searching with only the rarest few (6 or 8 of a 10-20 word question) cut the FTS time
    # by up to 3x but lost answers (recall@10 0.414 -> 0.379 / 0.399 on bench/text_query.py):
    # a question's framing words are often rarer than its topic words. Leaving out the words
    # in more than 10 % of the space kept 0.4144 (5 %: 0.4078).
    words = query_words(query)
    if not words:
        return {}
    conn = space.check_healthy().reader()
    try:
        with readgate.native():
            words = search_words(space, conn, words)
    except sqlite3.OperationalError:
        pass
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
    q = " OR ".join(quoted(w) for w in words)
    kind = " AND m.kind = 'episode'" if episodes_only else ""
    extra: list[Any] = []
    if where is not None:
        kind += f" AND {where[0]}"
        extra = where[1]
    try:
        # The ranking comes from remembered per-word scores when the index is unchanged since
        # these words were last asked for (core.bm25cache: the same floats, the same order).
        ranked = bm25cache.ranking(space, conn, [quoted(w) for w in words])
        if ranked is not None:
            rows = _rows_in_order(conn, ranked, limit, kind, extra)
        else:
            rows = _fts_rows(conn, q, kind, extra, limit)
    except sqlite3.OperationalError:
        return {}
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
    if not rows:
        return {}
    wanted = {stem(w) for w in key_words(query)}
    best = max(-r[1] for r in rows) or 1.0
    out: dict[int, float] = {}
    for rowid, rank, content, tags, episode in rows:
        # One string for the three fields: a word never spans the space between them.
        coverage = len(wanted.intersection(text_stems(f"{content} {tags} {episode}"))) / max(1, len(wanted))
        # BM25 relative to the best hit, blended with absolute word coverage so
        # a lone weak hit in a tiny space is not reported as a perfect match.
        out[int(rowid)] = 0.6 * coverage + 0.4 * max(0.0, -rank) / best
    return out


def _fts_rows(conn: sqlite3.Connection, q: str, kind: str, extra: list[Any], limit: int) -> list[Any]:
    """The best ``limit`` rows (rowid, bm25, content, tags, episode text) of FTS5 query ``q``
    that pass ``m.suppressed = 0`` and ``kind`` (extra SQL conditions, parameters ``extra``)."""
    # Rank inside FTS first and join only the best few: joining every match to its row
    # before sorting cost ~3x more for a common word (20k matches: 31 ms -> 11 ms). The
    # inner window over-fetches for suppressed / non-episode / filtered-out rows: a few more
    # than `limit` when suppression is the only filter (joining 4x `limit` rows and sorting
    # them again cost ~0.3 ms of a ~2 ms text recall), 4x `limit` under a filter. If the
    # filters thin a window below `limit` while more matches exist, the next window (at last
    # the full join) answers instead: the same rows, as each is exact when it suffices.
    windows = [limit + WINDOW_SLACK, limit * 4] if not kind else [limit * 4]
    columns = f"SELECT m.rowid, f.r, m.content, m.tags, {episode_text_sql('m')} "
    windowed = (
        columns + "FROM (SELECT rowid, bm25(memories_fts) AS r FROM memories_fts WHERE memories_fts MATCH ? "
        "ORDER BY r LIMIT ?) AS f JOIN memories m ON m.rowid = f.rowid "
        f"WHERE m.suppressed = 0{kind} ORDER BY f.r LIMIT ?"
    )
    full = (
        columns + "FROM (SELECT rowid, bm25(memories_fts) AS r FROM memories_fts "
        "WHERE memories_fts MATCH ?) AS f JOIN memories m ON m.rowid = f.rowid "
        f"WHERE m.suppressed = 0{kind} ORDER BY f.r LIMIT ?"
    )
    with readgate.native():  # SQLite runs FTS5 without the GIL: the read gate is let go
        matched = -1
        for window in windows:
            rows = conn.execute(windowed, (q, window, *extra, limit)).fetchall()
            if len(rows) >= limit:
                return rows
            if matched < 0:
                matched = conn.execute(
                    "SELECT count(*) FROM "
                    "(SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
                    (q, windows[-1] + 1),
                ).fetchone()[0]
            if matched <= window:
                return rows  # the window held every match: nothing more to find
        return conn.execute(full, (q, *extra, limit)).fetchall()


def _rows_in_order(conn: sqlite3.Connection, ranked: bm25cache.Scores, limit: int, kind: str,
                   extra: list[Any]) -> list[Any]:
    """The first ``limit`` rows of a ranking (core.bm25cache) that pass ``m.suppressed = 0`` and
    ``kind`` (parameters ``extra``), shaped as :func:`_fts_rows`'s: read a window at a time, the
    first as there, then growing (a selective filter walks more of the ranking)."""
    ids, scores = ranked
    columns = f"SELECT m.rowid, m.content, m.tags, {episode_text_sql('m')} FROM memories m WHERE m.rowid IN "
    out: list[Any] = []
    start, size = 0, (limit + WINDOW_SLACK if not kind else limit * 4)
    while len(out) < limit and start < len(ids):
        part = ids[start : start + size].tolist()
        with readgate.native():
            found = {row[0]: row for row in conn.execute(
                f"{columns}({','.join('?' * len(part))}) AND m.suppressed = 0{kind}", (*part, *extra))}
        for i, rowid in enumerate(part, start):
            row = found.get(rowid)
            if row is not None:
                out.append((rowid, float(scores[i]), row[1], row[2], row[3]))
                if len(out) == limit:
                    break
        start += size
        size = min(WINDOW_MAX, max(limit * 4, 2 * size))
    return out
