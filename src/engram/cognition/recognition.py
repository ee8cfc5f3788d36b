"""Recognition: is this content or embedding already known in this space?

Familiarity is the best match: cosine similarity for an embedding (given, or
computed from the content by the space's embedder), a word-overlap (Dice) score
for text, the larger of the two per memory. ``recognized`` means familiarity reached the caller's threshold.
Suppressed memories are not candidates (they are not in the vector set, and
the text search excludes them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from typing import TYPE_CHECKING, TypeVar

from ..core.models import Recognition, RecognitionMatch, RecognizeInput, confidence_from
from ..core.text import text_candidates, tokens
from ..errors import EmbedderUnavailable
from ..index.vector import normalise

if TYPE_CHECKING:
    from ..core.space import MemorySpace


K = TypeVar("K", bound=Hashable)  # a row's key: SQLite's rowid, PostgreSQL's memory id


def dice(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return 2.0 * len(a & b) / (len(a) + len(b))


def recognize(space: MemorySpace, item: RecognizeInput) -> Recognition:
    space.check_healthy()
    scores: dict[int, float] = {}
    wide = max(20, item.max_matches * 4)
    query = None
    if item.embedding is not None and space.dim is not None:
        space.vectors.check_dim(len(item.embedding))
        query = normalise(item.embedding)
    elif item.content and item.content.strip() and space.embedding_active and space.embedders is not None:
        # Text only, in a space that embeds text: familiar by meaning too, not just by words.
        with contextlib.suppress(EmbedderUnavailable):  # then by words alone
            query = space.embedders.embed_query(space.embedder_spec, item.content.strip())
    if query is not None and space.vectors.dim == query.shape[0]:
        for rowid, sim in space.vectors.search(query, wide):
            scores[rowid] = max(scores.get(rowid, 0.0), max(0.0, min(1.0, sim)))
    text_rows: list[int] = []
    if item.content and item.content.strip():
        text_rows = list(text_candidates(space, item.content, wide))
    rows = space.rows_by_rowid(set(scores) | set(text_rows))
    # row[1] id, row[3] content, row[14] suppressed
    live = {r: (str(row[1]), str(row[3])) for r, row in rows.items() if not row[14]}
    return judge(space.id, item, scores, text_rows, live)


def judge(space_id: str, item: RecognizeInput, scores: dict[K, float], text_rows: list[K],
          rows: dict[K, tuple[str, str]]) -> Recognition:
    """The answer, whatever the backend: ``scores`` are vector similarities by row key,
    ``text_rows`` the text matches to score by words, ``rows`` ``(memory id, content)`` of the
    live unsuppressed candidates (a key not in ``rows`` is no candidate)."""
    scores = dict(scores)
    if item.content and item.content.strip():
        wanted = set(tokens(item.content))
        exact = item.content.strip().lower()
        for key in text_rows:
            if key not in rows:
                continue
            content = rows[key][1]
            s = 1.0 if content.strip().lower() == exact else dice(wanted, set(tokens(content)))
            scores[key] = max(scores.get(key, 0.0), s)
    ranked = sorted(
        ((s, r) for r, s in scores.items() if r in rows),
        key=lambda t: (-t[0], rows[t[1]][0]),
    )[: item.max_matches]
    familiarity = ranked[0][0] if ranked else 0.0
    recognized = familiarity >= item.threshold
    if ranked:
        best = rows[ranked[0][1]]
        reason = (
            f"closest memory {best[0]!r} at {familiarity:.2f} "
            f"({'at or above' if recognized else 'below'} the threshold {item.threshold:.2f})"
        )
    else:
        reason = "nothing in this space resembles the cue"
    # Confidence is in the *answer*: far above or far below the threshold is sure.
    room = (1.0 - item.threshold) if recognized else item.threshold
    margin = abs(familiarity - item.threshold) / max(room, 1e-9)
    conf = 0.5 + 0.5 * min(1.0, margin)
    return Recognition(
        recognized=recognized,
        familiarity=round(familiarity, 6),
        confidence=confidence_from(conf, reason),
        matches=[
            RecognitionMatch(memory_id=rows[r][0], similarity=round(s, 6), content=rows[r][1][:200])
            for s, r in ranked
        ],
        memory_space_id=space_id,
    )
