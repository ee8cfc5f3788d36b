"""Full-text candidates of one space: FTS5 BM25 over content and episode fields.

No user syntax ever reaches FTS5: a query becomes its words, each quoted, OR-ed.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from typing import TYPE_CHECKING, Any

from ..storage.sqlite_store import episode_text_sql
from . import readgate

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


def quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def fts_query(text: str) -> str | None:
    """A safe FTS5 query: every key word quoted, OR-ed (no user syntax reaches FTS5)."""
    words = list(dict.fromkeys(key_words(text)))[:64]
    if not words:
        return None
    return " OR ".join(quoted(w) for w in words)


def text_candidates(
    space: MemorySpace, query: str, limit: int, episodes_only: bool = False,
    where: tuple[str, list[Any]] | None = None,
) -> dict[int, float]:
    """``rowid -> [0, 1]`` text relevance of the best FTS matches (suppressed excluded).

    ``where``: an extra condition on the row ``m`` (a metadata filter, ``core.filters.where_sql``)
    and its parameters, applied inside the query so the best ``limit`` *matching* rows come back.
    """
    # Every key word stays in the query: searching with only the rarest few (6 or 8 of a
    # 10-20 word question) cut the FTS time by up to 3x but lost answers (recall@10 0.414
    # -> 0.379 / 0.399 on bench/text_query.py): a question's framing words are often
    # rarer than its topic words.
    q = fts_query(query)
    if q is None:
        return {}
    conn = space.check_healthy().reader()
    kind = " AND m.kind = 'episode'" if episodes_only else ""
    extra: list[Any] = []
    if where is not None:
        kind += f" AND {where[0]}"
        extra = where[1]
    # Rank inside FTS first and join only the best few: joining every match to its row
    # before sorting cost ~3x more for a common word (20k matches: 31 ms -> 11 ms). The
    # inner window over-fetches for suppressed / non-episode rows; if the filters thin it
    # below `limit` while more matches exist, the full join answers instead (exact).
    window = limit * 4
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
    try:
        with readgate.native():  # SQLite runs FTS5 without the GIL: the read gate is let go
            rows = conn.execute(windowed, (q, window, *extra, limit)).fetchall()
            if len(rows) < limit:
                matched = conn.execute(
                    "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
                    (q, window + 1),
                ).fetchone()[0]
                if matched > window:
                    rows = conn.execute(full, (q, *extra, limit)).fetchall()
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
        have = {stem(w) for w in (*tokens(content), *tokens(tags), *tokens(episode))}
        coverage = len(wanted & have) / max(1, len(wanted))
        # BM25 relative to the best hit, blended with absolute word coverage so
        # a lone weak hit in a tiny space is not reported as a perfect match.
        out[int(rowid)] = 0.6 * coverage + 0.4 * max(0.0, -rank) / best
    return out
