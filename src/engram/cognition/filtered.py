"""Recall under a metadata filter: the filter is applied *inside* the search.

Post-filtering an over-fetched top-k returns a short page (or nothing) when the filter keeps
few memories; here every source searches only among the memories the filter keeps:

* **vectors**, two ways, chosen per recall by one bounded read of the metadata index:
  - *selective* (at most ``EXACT_SET_MAX`` memories match): their rowids come from the index
    (``filters.rowid_set_sql``) and their cosines are computed exactly from the in-memory
    vectors; the top ``wide`` of the filtered set, whatever its share of the space;
  - *broad* (more match): the ANN search is asked for more and more neighbours (sized from
    the share of matches seen so far) and each is checked against the filter, until ``wide``
    matching ones are found or the whole space has been searched. The first request is sized
    from the share the filter's last recall in this space met (``share_hint``), so one round
    usually suffices; from a filter's second use at one store LSN, its matching rowids are
    read once as a mask and the checks are numpy lookups (SQL reads only the mask's members).
* **full text**: the filter is a condition of the FTS query itself (``core.text``);
* **context-only** recall: the filter is a condition of the SQL that lists the context;
* **spreading** may pass through memories the filter excludes (they link the ones it keeps),
  but never returns them: every result is checked against the filter (``keep``).
"""

from __future__ import annotations

import heapq
import json
import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import filters, readgate

if TYPE_CHECKING:
    from ..core.space import MemorySpace

#: A filter matching at most this many memories is searched exactly over its matches. (The
#: probe reads at most this many index entries: ~1.3 ms at 2048, measured by bench/filtered.py.)
EXACT_SET_MAX = 2048
#: The first ANN request of a broad filter asks this many times ``need`` neighbours.
FIRST_OVERSAMPLE = 4
#: A broad filter's ANN requests stop growing at 1/ANN_MAX_SHARE of the space; beyond, every
#: match is scored exactly (cheaper than a graph search that large, and exact).
ANN_MAX_SHARE = 8
#: Per space, the share of matches a broad filter's ANN rounds last met among the neighbours,
#: remembered for this many filters: the next recall with that filter sizes its first request
#: from it, so one round usually suffices. A hint only (never a result): writes need not clear it.
SHARE_HINTS_MAX = 256

#: Per space, for this many broad filters: the store LSN a filter was last used at and, from
#: its second use at one LSN on, the whole set of its matching rowids as a sorted array (its
#: "mask": read once, ~5 ms per 10k matches; 8 bytes a match). Membership is then a numpy
#: lookup, and only the mask's members are read from SQL (expiry, suppression). Any write moves
#: the LSN: the mask is dropped, rebuilt only if the filter is used twice again before the next.
MASKS_MAX = 32

_masks: weakref.WeakKeyDictionary[Any, dict[filters.Node, tuple[int, np.ndarray | None]]] = (
    weakref.WeakKeyDictionary())
_hints: weakref.WeakKeyDictionary[Any, dict[filters.Node, float]] = weakref.WeakKeyDictionary()
_hints_lock = threading.Lock()


def share_hint(space: MemorySpace, node: filters.Node) -> float | None:
    with _hints_lock:
        return _hints.get(space, {}).get(node)


def _remember_share(space: MemorySpace, node: filters.Node, share: float) -> None:
    with _hints_lock:
        per = _hints.setdefault(space, {})
        old = per.pop(node, None)  # re-inserted last: the dict's order is the eviction order
        per[node] = share if old is None else (old + share) / 2
        while len(per) > SHARE_HINTS_MAX:
            del per[next(iter(per))]


@dataclass
class FilterScope:
    """One recall's filter: parsed once, with its SQL forms."""

    node: filters.Node
    where: tuple[str, list[Any]]  # a condition on the row ``m`` (core.filters.where_sql)
    stats: dict[str, Any] = field(default_factory=dict)  # how the vector search ran (recall metadata)
    #: How many matching neighbours a *broad* filter's ANN search must find (recall sets it from
    #: max_results k: k + max(5, k/2)): each costs a wider graph search, so not the unfiltered
    #: ``wide``; candidates that far down the cosine order rarely reach the top k.
    need: int = 15
    #: The filter's matching rowids, sorted (see MASKS_MAX), when this recall has them: ``keep``
    #: reads from SQL only the rowids in it.
    mask: np.ndarray | None = None
    #: Rowids this recall has already judged to match (the vector search checked them, or took
    #: them from the filter's own rowid set): :meth:`keep` does not read them again.
    known: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> FilterScope | None:
        node = filters.parse(raw)
        return None if node is None else cls(node, filters.where_sql(node, "m"))

    def keep(self, space: MemorySpace, rowids: Any) -> set[int]:
        """The rowids that match the filter: their metadata read, judged by ``filters.evaluate``
        (the tested oracle of both SQL forms; cheaper here than json_each for a few hundred rows)."""
        known = self.known
        wanted = list(rowids)
        if self.mask is not None:
            inside = _in_mask(self.mask, wanted)
            wanted = [r for r, ok in zip(wanted, inside, strict=True) if ok or r in known]
        out = {r for r in wanted if r in known}
        rows = space.select_rows("rowid, metadata", (r for r in wanted if r not in known))
        out.update(r for r, (_, meta) in rows.items() if filters.evaluate(self.node, json.loads(meta)))
        return out

    def sql(self, alias: str) -> tuple[str, list[Any]]:
        return filters.where_sql(self.node, alias)


def _in_mask(mask: np.ndarray, rowids: list[int]) -> list[bool]:
    """Whether each rowid is in the sorted ``mask``."""
    if not len(mask) or not rowids:
        return [False] * len(rowids)
    keys = np.asarray(rowids, dtype=np.int64)
    at = np.minimum(np.searchsorted(mask, keys), len(mask) - 1)
    out: list[bool] = (mask[at] == keys).tolist()
    return out


def _matching_mask(space: MemorySpace, scope: FilterScope, lsn: int) -> np.ndarray | None:
    """The filter's rowid mask if it is cached at ``lsn`` or this is its second use there."""
    with _hints_lock:
        per = _masks.setdefault(space, {})
        entry = per.pop(scope.node, None)
        per[scope.node] = entry if entry is not None and entry[0] == lsn else (lsn, None)
        while len(per) > MASKS_MAX:
            del per[next(iter(per))]
    if entry is None or entry[0] != lsn:
        return None  # first use at this LSN: a write between two recalls would waste the read
    if entry[1] is not None:
        return entry[1]
    set_sql, args = filters.rowid_set_sql(scope.node)
    (text,) = space.check_healthy().reader().execute(f"SELECT group_concat(r) FROM ({set_sql})",
                                                     args).fetchone()
    mask = np.unique(np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64))
    with _hints_lock:
        per = _masks.setdefault(space, {})
        if per.get(scope.node, (None,))[0] == lsn:
            per[scope.node] = (lsn, mask)
    return mask


def filtered_vectors(space: MemorySpace, scope: FilterScope, query: np.ndarray,
                     wide: int) -> list[tuple[int, float]]:
    """Top ``wide`` (rowid, float16 cosine) among the live vectors that match, best first."""
    vectors = space.vectors
    store = space.check_healthy()
    lsn = store.last_lsn  # read first: a mask read after it holds at least what this LSN says
    conn = store.reader()
    set_sql, args = filters.rowid_set_sql(scope.node)
    # One bounded read: the index yields matches in key order and stops after EXACT_SET_MAX + 1.
    # group_concat: one text value parsed by numpy costs a third of fetching thousands of rows.
    (text,) = conn.execute(f"SELECT group_concat(r) FROM (SELECT r FROM ({set_sql}) LIMIT ?)",
                           (*args, EXACT_SET_MAX + 1)).fetchone()
    rows = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64)
    if len(rows) <= EXACT_SET_MAX:
        scope.stats.update(strategy="exact", matched=len(rows))
        best = _exact(vectors, query, rows.tolist(), wide)
        scope.known.update(k for k, _ in best)
        return best
    total = len(vectors)
    wide = min(wide, scope.need)
    ask = max(wide * FIRST_OVERSAMPLE, 16)
    hint = share_hint(space, scope.node)
    if hint is not None:  # sized so that one round usually finds ``wide`` matches
        ask = max(ask, min(total // ANN_MAX_SHARE, math.ceil(1.3 * wide / hint)))
    ask = min(total, ask)
    mask = scope.mask = _matching_mask(space, scope, lsn)
    scope.stats["mask"] = mask is not None
    checked: dict[int, bool] = {}
    rounds = 0
    while True:
        rounds += 1
        with readgate.native():  # the scan runs without the GIL: the read gate is let go
            found = vectors.search(query, ask)
        fresh = [k for k, _ in found if k not in checked]
        if fresh:
            ok = scope.keep(space, fresh)  # reads only the mask's members when there is a mask
            checked.update((k, k in ok) for k in fresh)
        hits = [(k, s) for k, s in found if checked.get(k)]
        share = (len(hits) + 1) / (len(found) + 2)
        if len(hits) >= wide or len(found) < ask:
            _remember_share(space, scope.node, share)
            scope.stats.update(strategy="ann", matched=f">{EXACT_SET_MAX}", asked=ask, rounds=rounds)
            scope.known.update(k for k, _ in hits[:wide])
            return hits[:wide]
        # The next request, sized from the share of matches seen so far (smoothed: a first round
        # of 40 says little about a 5% filter), but at most 3x the last: the search's cost
        # grows with its size, and an overshoot costs more than one more round.
        ask = min(ask * 3, max(ask * 2, math.ceil(1.3 * wide / share)))
        if ask > total // ANN_MAX_SHARE:
            _remember_share(space, scope.node, share)
            break
    # The matches are many but far from the query: score all of them exactly (still inside the set).
    if mask is not None:
        every = mask.tolist()
    else:
        (text,) = conn.execute(f"SELECT group_concat(r) FROM ({set_sql})", args).fetchone()
        every = np.fromstring(text, dtype=np.int64, sep=",").tolist() if text else []
    scope.stats.update(strategy="exact-all", matched=len(every), rounds=rounds)
    best = _exact(vectors, query, every, wide)
    scope.known.update(k for k, _ in best)
    return best


def _exact(vectors: Any, query: np.ndarray, rowids: list[int], wide: int) -> list[tuple[int, float]]:
    scores: dict[int, float] = vectors.score_keys(query, rowids)  # live vectors only
    return heapq.nlargest(wide, scores.items(), key=lambda kv: (kv[1], -kv[0]))
