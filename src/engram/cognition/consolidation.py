"""Consolidation: episodes of one space -> semantic beliefs, as one streamable run.

A run is a pure function of the space's *current* live episodes (those with an
embedding and not suppressed) and its parameters:

1. **Snapshot** on a reader connection (one read transaction, so it is
   consistent), in canonical order by memory id.
2. **Cluster** outside every lock and thread of the store (``clustering``): this
   is the expensive part and it must never hold the space's writer, or
   remember/recall in this space would wait for it.
3. **Build** one belief per cluster: centroid (mean of unit vectors, summed in id
   order so floating point is order-independent), strength, schema confidence,
   citations with previews. Belief ids hash the space and the cited episode ids.
4. **Write** through the store: the belief set is replaced in one short op, and
   the cited episodes move to ``consolidated`` in small ops, so writes queued
   by other callers interleave instead of waiting behind one huge transaction.

Staleness: the write op re-checks, inside the writer, which cited episodes are
still live; a belief that lost episodes while clustering ran is rebuilt from the
survivors (or dropped below the minimum size). Episodes stored during the run
are not in it; the space's fingerprint then differs and the next scheduled run
picks them up. Nothing is ever served from a cached snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.models import Belief, Citation, ConsolidateInput, ConsolidationReport, DreamStep, from_epoch
from ..settings import Settings
from ..storage.eventlog import record_event
from .clustering import cluster

if TYPE_CHECKING:
    from ..core.space import MemorySpace

PREVIEW_CHARS = 120
STATE_CHUNK = 500  # episodes per state-update op
META_LAST_AT = "consolidation.last_at"
META_LAST_RUN = "consolidation.last_run"
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_STOP_WORDS = """
    the and for with was were that this from have has had are but not you your our their they them then
    than into onto over under about after before again all any can could would should will just more most
    some such only own same very what when where which while who whom why how its it's his her hers him she
"""
_STOP = frozenset(_STOP_WORDS.split())


@dataclass
class Snapshot:
    rowids: list[int]
    ids: list[str]
    contents: list[str]
    lsns: list[int]
    vectors: np.ndarray  # unit rows, canonical (id) order


def fingerprint(space: MemorySpace) -> tuple[int, int, float]:
    """Changes whenever a live episode is added, suppressed, restored or deleted."""
    conn = space.check_healthy().reader()
    row = conn.execute(
        "SELECT count(*), coalesce(max(lsn), 0), total(lsn) FROM memories "
        "WHERE kind = 'episode' AND suppressed = 0 AND embedding IS NOT NULL"
    ).fetchone()
    return int(row[0]), int(row[1]), float(row[2])


SKIP_REASONS = {
    "awaiting_embedding": "text stored, vector not computed yet; a later run includes them",
    "no_embedding": "no vector, and the space has no embedder to compute one from text",
}


def skipped_episodes(space: MemorySpace) -> dict[str, int]:
    """Live episodes a run cannot cluster (no vector), by reason."""
    conn = space.check_healthy().reader()
    (n,) = conn.execute(
        "SELECT count(*) FROM memories WHERE kind = 'episode' AND suppressed = 0 AND embedding IS NULL"
    ).fetchone()
    if not n:
        return {}
    return {"awaiting_embedding" if space.embedding_active else "no_embedding": int(n)}


def snapshot(space: MemorySpace) -> Snapshot:
    conn = space.check_healthy().reader()
    rowids: list[int] = []
    ids: list[str] = []
    contents: list[str] = []
    lsns: list[int] = []
    blobs: list[bytes] = []
    try:
        for rowid, mid, content, emb, lsn in conn.execute(
            "SELECT rowid, id, content, embedding, lsn FROM memories "
            "WHERE kind = 'episode' AND suppressed = 0 AND embedding IS NOT NULL ORDER BY id"
        ):
            rowids.append(int(rowid))
            ids.append(str(mid))
            contents.append(str(content))
            lsns.append(int(lsn))
            blobs.append(emb)
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
    dim = space.dim or (len(blobs[0]) // 4 if blobs else 1)
    x = (
        np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
        if blobs
        else np.zeros((0, dim), np.float32)
    )
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)  # float32 squares can overflow
    norms[norms == 0] = 1.0
    return Snapshot(rowids, ids, contents, lsns, (x / norms).astype(np.float32))


def belief_id(space_id: str, episode_ids: list[str]) -> str:
    h = hashlib.sha256(("\0".join([space_id, *sorted(episode_ids)])).encode()).hexdigest()
    return "belief-" + h[:20]


def run_id(space_id: str, snap: Snapshot, threshold: float, min_size: int) -> str:
    """A hash of the run's whole input (ids, contents, vectors, parameters), not of when it ran."""
    h = hashlib.sha256(f"{space_id}\0{threshold!r}\0{min_size}".encode())
    for mid, content in zip(snap.ids, snap.contents, strict=True):
        h.update(f"\0{mid}\0{content}".encode())
    h.update(snap.vectors.tobytes())
    return "run-" + h.hexdigest()[:20]


def summarise(contents: list[str], medoid: str) -> str:
    """A deterministic gist: the words most episodes share, and the most typical episode."""
    df: Counter[str] = Counter()
    for text in contents:
        df.update({w.lower() for w in _WORD.findall(text)} - _STOP)
    need = max(2, (len(contents) + 1) // 2)
    common = sorted((w for w, c in df.items() if c >= need), key=lambda w: (-df[w], w))[:6]
    example = medoid[:PREVIEW_CHARS]
    if common:
        return f'Across {len(contents)} episodes: {", ".join(common)} (e.g. "{example}")'
    return f'Across {len(contents)} similar episodes (e.g. "{example}")'


def build_belief(
    space_id: str, snap: Snapshot, members: list[int], rid: str, now: float
) -> tuple[Belief, list[int]]:
    """The belief of one cluster (``members`` index ``snap`` in canonical order)."""
    members = sorted(members)
    vecs = snap.vectors[members]
    centroid = vecs.sum(axis=0, dtype=np.float64)  # summed in id order: order-independent
    norm = float(np.linalg.norm(centroid))
    centroid = centroid / norm if norm > 0 else centroid
    sims = vecs.astype(np.float64) @ centroid
    cohesion = float(np.clip(sims.mean(), 0.0, 1.0))
    spread = float(sims.std())
    n = len(members)
    order = sorted(range(n), key=lambda i: (-round(float(sims[i]), 9), snap.ids[members[i]]))
    citations = [
        Citation(
            episode_id=snap.ids[members[i]],
            preview=snap.contents[members[i]][:PREVIEW_CHARS],
            similarity=round(float(sims[i]), 6),
        )
        for i in order
    ]
    ids = [snap.ids[m] for m in members]
    belief = Belief(
        id=belief_id(space_id, ids),
        content=summarise([snap.contents[m] for m in members], snap.contents[members[order[0]]]),
        centroid=[round(float(v), 7) for v in centroid],
        strength=round(float(np.clip(cohesion * n / (n + 2.0), 0.0, 1.0)), 6),
        schema_confidence=round(float(np.clip(cohesion * (1.0 - spread), 0.0, 1.0)), 6),
        citations=citations,
        created_at=from_epoch(now),
        updated_at=from_epoch(now),
        run_id=rid,
    )
    return belief, [snap.rowids[m] for m in members]


def _encode(b: Belief) -> tuple[Any, ...]:
    """The stored columns of a belief that do not depend on the write (id .. citations)."""
    citations = json.dumps([c.model_dump() for c in b.citations], separators=(",", ":"))
    centroid = np.asarray(b.centroid or [], np.float32).tobytes()
    return (b.id, b.content, centroid, b.strength, b.schema_confidence, citations)


class Run:
    """One run, whatever the backend; iterate :meth:`steps` for the dream stream, then read
    :attr:`report`. A backend gives the reads and the write (:meth:`_read`, :meth:`_write`) and
    may hold something around the whole run (:meth:`_session`: PostgreSQL's advisory lock)."""

    def __init__(
        self,
        space_id: str,
        clock: Callable[[], float],
        embedding_active: bool,
        settings: Settings,
        item: ConsolidateInput,
        cancel: threading.Event | None = None,
    ) -> None:
        self.space_id = space_id
        self.clock = clock
        self.cancel = cancel or threading.Event()
        # Sentence embeddings of paraphrases sit lower than near-duplicate client vectors:
        # a space that embeds its own text clusters at its own default (SPEC §9).
        default = (settings.consolidation_text_similarity if embedding_active
                   else settings.consolidation_similarity)
        self.threshold = item.similarity if item.similarity is not None else default
        self.wait_seconds = settings.embedding_wait_seconds
        self.min_size = (
            item.min_cluster if item.min_cluster is not None else settings.consolidation_min_cluster
        )
        self.min_size = max(2, self.min_size)
        self.report: ConsolidationReport | None = None
        self.fingerprint: tuple[int, int, float] | None = None

    # -- what a backend provides --------------------------------------------------------------
    def _session(self) -> AbstractContextManager[str | None]:
        """Held for the whole run; yields None to run, or the reason the run does not happen."""
        return nullcontext(None)

    def _read(self) -> tuple[tuple[int, int, float], Snapshot, dict[str, int]]:
        """``(fingerprint, snapshot, skipped)``: the run's input, read consistently."""
        raise NotImplementedError

    def _unchanged(self, fingerprint: tuple[int, int, float]) -> bool:
        """Whether the run may stop here: nothing changed since the last run (scheduled runs)."""
        return False

    def _write(
        self, snap: Snapshot, built: list[tuple[Belief, list[int]]], rid: str, now: float
    ) -> tuple[list[Belief], int, int]:
        """Replace the belief set, mark the cited episodes; ``(beliefs, lsn, newly consolidated)``."""
        raise NotImplementedError

    # -- the run ----------------------------------------------------------------------------------
    def steps(self) -> Generator[DreamStep, None, None]:
        yield DreamStep(kind="progress", progress=0.0, message="reading episodes")
        with self._session() as refused:
            if refused is not None:
                yield DreamStep(kind="done", progress=1.0, message=refused)
                return
            yield from self._steps(time.perf_counter())

    def _steps(self, t0: float) -> Iterator[DreamStep]:
        self.fingerprint, snap, skipped = self._read()
        if self._unchanged(self.fingerprint):
            yield DreamStep(kind="done", progress=1.0, message="no episode changed since the last run")
            return
        n = len(snap.ids)
        yield DreamStep(kind="progress", progress=0.1, message=f"clustering {n} episodes")
        clusters = cluster(snap.vectors, self.threshold, self.min_size)
        yield DreamStep(kind="progress", progress=0.6, message=f"{len(clusters)} cluster(s) found")
        rid = run_id(self.space_id, snap, self.threshold, self.min_size)
        now = self.clock()
        built: list[tuple[Belief, list[int]]] = []
        for i, members in enumerate(clusters):
            ids = [snap.ids[m] for m in members]
            yield DreamStep(
                kind="replay",
                progress=0.6 + 0.2 * (i + 1) / max(1, len(clusters)),
                message=f'replaying {len(ids)} episodes: "{snap.contents[members[0]][:60]}"',
                memory_ids=ids[:50],
            )
            built.append(build_belief(self.space_id, snap, members, rid, now))
        if self.cancel.is_set():  # the space is closing: write nothing rather than race its store
            yield DreamStep(kind="done", progress=1.0, message="cancelled: the memory space is closing")
            return
        yield DreamStep(kind="progress", progress=0.8, message="writing beliefs")
        beliefs, lsn, consolidated = self._write(snap, built, rid, now)
        self.report = ConsolidationReport(
            run_id=rid,
            beliefs=beliefs,
            episodes_considered=n,
            episodes_consolidated=consolidated,
            episodes_skipped=skipped,
            clusters=len(beliefs),
            duration_ms=round((time.perf_counter() - t0) * 1000, 3),
            lsn=lsn,
            memory_space_id=self.space_id,
        )
        for i, b in enumerate(beliefs):
            yield DreamStep(
                kind="insight",
                progress=0.9 + 0.1 * (i + 1) / max(1, len(beliefs)),
                message=b.content[:200],
                memory_ids=[c.episode_id for c in b.citations][:50],
                belief=b,
            )
        yield DreamStep(
            kind="done",
            progress=1.0,
            message=f"{len(beliefs)} belief(s) from {n} episode(s); {consolidated} newly consolidated"
            + "".join(f"; {k} skipped: {v} ({SKIP_REASONS[k]})" for k, v in skipped.items()),
            report=self.report,
        )


class ConsolidationRun(Run):
    """A run over a SQLite space (``MemorySpace``): its reader, and writes through its writer."""

    def __init__(
        self,
        space: MemorySpace,
        settings: Settings,
        item: ConsolidateInput,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(space.id, space.clock, space.embedding_active, settings, item, cancel)
        self.space = space

    def _read(self) -> tuple[tuple[int, int, float], Snapshot, dict[str, int]]:
        space = self.space
        if space.embedding_active and space.embedding_backlog:
            # Episodes written just before are clustered by meaning too, if their vectors
            # come within the wait; the rest are counted as skipped, and the next run has them.
            space.wait_embedded(self.wait_seconds)
        return fingerprint(space), snapshot(space), skipped_episodes(space)

    def _write(
        self, snap: Snapshot, built: list[tuple[Belief, list[int]]], rid: str, now: float
    ) -> tuple[list[Belief], int, int]:
        space = self.space
        store = space.check_healthy()
        index_of = {r: i for i, r in enumerate(snap.rowids)}
        min_size = self.min_size

        # Encode outside the writer: the op below must only do what has to be
        # serialised, or remember() in this space would wait behind JSON dumps.
        encoded = {b.id: _encode(b) for b, _ in built}

        def op(conn: sqlite3.Connection, lsn: int) -> dict[str, Any]:
            cited = [r for _, rows in built for r in rows]
            live: set[int] = set()
            for i in range(0, len(cited), 500):
                chunk = cited[i : i + 500]
                q = ",".join("?" * len(chunk))
                # rowid only: reading a column behind the embedding would walk overflow pages
                live.update(
                    int(r) for (r,) in conn.execute(f"SELECT rowid FROM memories WHERE rowid IN ({q})", chunk)
                )
            live.difference_update(
                int(r) for (r,) in conn.execute("SELECT rowid FROM memories WHERE suppressed = 1")
            )
            created = {str(i): float(c) for i, c in conn.execute("SELECT id, created_at FROM beliefs")}
            final: list[tuple[Belief, list[int]]] = []
            params: list[tuple[Any, ...]] = []
            for belief, rows in built:
                enc = encoded[belief.id]
                if any(r not in live for r in rows):  # lost episodes while we clustered: rebuild
                    survivors = [index_of[r] for r in rows if r in live]
                    if len(survivors) < min_size:
                        continue
                    belief, rows = build_belief(space.id, snap, survivors, rid, now)
                    enc = _encode(belief)
                belief.created_at = from_epoch(created.get(belief.id, now))
                belief.lsn = lsn
                final.append((belief, rows))
                params.append((*enc, created.get(belief.id, now), now, rid, lsn))
            conn.execute("DELETE FROM beliefs")
            conn.executemany(
                "INSERT INTO beliefs(id, content, centroid, strength, schema_confidence, citations, "
                "created_at, updated_at, run_id, lsn) VALUES (?,?,?,?,?,?,?,?,?,?)",
                params,
            )
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_LAST_AT, repr(now)))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_LAST_RUN, rid))
            return {"final": final}

        res, lsn = store.write(op)
        final: list[tuple[Belief, list[int]]] = res["final"]
        beliefs = sorted(
            (b.model_copy(update={"centroid": None}) for b, _ in final), key=lambda b: (-b.strength, b.id)
        )
        rows = sorted({r for _, rs in final for r in rs})
        consolidated = 0
        for i in range(0, len(rows), STATE_CHUNK):
            chunk = rows[i : i + STATE_CHUNK]

            def state_op(conn: sqlite3.Connection, _lsn: int, chunk: list[int] = chunk) -> int:
                q = ",".join("?" * len(chunk))
                cur = conn.execute(
                    f"UPDATE memories SET consolidation_state = 'consolidated' WHERE rowid IN ({q}) "
                    "AND consolidation_state IS NOT 'consolidated'",
                    chunk,
                )
                return int(cur.rowcount)

            # One small op at a time: a remember queued meanwhile commits between them.
            n_done, _ = store.write(state_op)
            consolidated += n_done
        # Reports and streams carry beliefs without their centroid (768 floats
        # each); get_belief returns it. The event is logged by an op of its own, after the state
        # updates it counts, under that op's own LSN (the log's positions must grow in commit order).
        data = {
            "run_id": rid,
            "beliefs": len(beliefs),
            "episodes_considered": len(snap.ids),
            "episodes_consolidated": consolidated,
            "belief_ids": [b.id for b in beliefs[:20]],
        }
        data["beliefs_lsn"] = lsn
        store.write(lambda conn, ev_lsn: record_event(conn, "consolidation", ev_lsn, data),
                    after=lambda event, _lsn: space.events.publish_many([event]))
        return beliefs, lsn, consolidated
