"""Re-embedding a space with another model on PostgreSQL (SPEC §9, ``engram space reembed``).

SQLite's semantics (core/embedded.py), across servers:

* :func:`start` records the target in ``spaces.reembed`` (holding the space's counter row) and
  clears ``reembed_vectors``; asking again for the same target resumes, another target is refused
  while one runs. Every server sees the target from its next read of the space.
* The work is done by each server's :class:`ReembedWorker`, which finds the spaces with a target
  in the directory (``spaces.reembed IS NOT NULL``) and calls :func:`step`. A step is one
  transaction holding the space's re-embedding advisory lock, *tried*, not waited for: a space
  another server is working on is skipped, so no row is embedded twice by two servers. A server
  that dies mid-step rolls its step back (the lock goes with its session); any server resumes
  from the staged vectors, which stay committed between steps.
* A step stages the target model's vectors of the next rows without one (in insertion order):
  it embeds their text, then share-locks the rows and stages a vector only for a row whose LSN
  is the one its text was read at. An update (PUT/PATCH) that changed the row meanwhile has a
  newer LSN (not staged); one that comes after waits for the share lock, then drops the staged
  vector in its own transaction (store._update), so a staged vector is always of the row's text.
* When no row is left, the step switches: holding the counter row (writers of the space wait,
  as for any write), it checks again that nothing is left (a write may have landed since), moves
  the staged vectors into ``memories.embedding``, drops the vectors of rows that have none
  staged (suppressed ones, as SQLite does), and sets the space's embedder and dimension. Until
  then recall and writes use the old model; from the commit on, the new one. A write that
  embedded its text with the old model and reaches its counter row after the switch finds the
  embedder changed (store.EmbedderChanged) and embeds again (space.PostgresSpace).

Lock order: a step holds the advisory lock, then share-locks memory rows (staging), or takes the
counter row and then writes memory rows (switching), never both in one transaction; writers take
the counter row then memory rows, and never wait for the advisory lock. No deadlock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import psycopg
import psycopg_pool
from pgvector import HalfVector

from ...embedding.base import EmbedderSpec
from ...errors import EngramError, InvalidInput
from ..embedded import embed_text
from . import queries as q

if TYPE_CHECKING:
    from ...embedding import Embedders
    from .store import PostgresStore

log = logging.getLogger("engram.embedding.pg")


def lock_key(space_id: str) -> int:
    """The advisory lock key of ``space_id``'s re-embedding (63 bits of a hash; not the
    consolidation's key, so a run of one does not hold up the other)."""
    digest = hashlib.sha256(f"engram.reembed\0{space_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _spec(record: str) -> EmbedderSpec:
    rec = json.loads(record)
    return EmbedderSpec(str(rec["provider"]), str(rec["model"]))


@dataclass(frozen=True)
class Progress:
    """A space's re-embedding: its target (None: idle), rows with a staged vector, rows to cover."""

    target: EmbedderSpec | None
    done: int
    total: int


def start(store: PostgresStore, space_id: str, spec: EmbedderSpec) -> bool:
    """Record ``spec`` as the space's re-embedding target; False if it already was (resumed).
    LookupError: no such space. InvalidInput: another target runs, or client vectors without
    text (no model can re-embed those)."""
    with store.db.space(space_id) as tx:
        row = tx.one(q.LOCK_SPACE_ROW)
        if row is None:
            raise LookupError(space_id)
        if row[2] is not None:
            running = _spec(str(row[2]))
            if running == spec:
                return False  # resume: the same target, progress kept
            raise InvalidInput(
                f"memory space {space_id!r} is already being re-embedded with {running}",
                suggestion="Wait for it to finish (GET .../reembed shows progress), or ask for the same "
                           "embedder to resume it.")
        found = tx.one(q.TEXTLESS_VECTORS)
        textless = int(found[0]) if found is not None else 0
        if textless:
            raise InvalidInput(
                f"{textless} memories in {space_id!r} carry a client vector and no text; they cannot be "
                "re-embedded by a model",
                suggestion="Forget them (mode=delete) or keep this space's embedder.")
        tx.execute(q.CLEAR_REEMBED_VECTORS)
        tx.execute(q.START_REEMBED, {"target": json.dumps(spec.to_dict())})
    log.info("re-embedding started with %s", spec, extra={"memory_space": space_id})
    return True


def progress(store: PostgresStore, space_id: str) -> Progress:
    """LookupError: no such space."""
    with store.db.space(space_id) as tx:
        info = tx.one(q.GET_SPACE)
        if info is None:
            raise LookupError(space_id)
        counts = tx.one(q.REEMBED_COUNTS)
    total, done = (int(counts[0]), int(counts[1])) if counts is not None else (0, 0)
    if info[6] is None:
        return Progress(None, total, total)  # idle: every vector is the embedder's (no backlog here)
    return Progress(_spec(str(info[6])), done, total)


def reembedding(store: PostgresStore) -> list[str]:
    """The spaces with a re-embedding in progress (the directory: the spaces table only)."""
    with store.db.directory() as conn:
        return [str(r[0]) for r in conn.execute(q.REEMBEDDING_SPACES)]


def step(store: PostgresStore, space_id: str, embedders: Embedders, limit: int) -> bool:
    """Stage the target's vectors of up to ``limit`` rows, or switch when none is left; True if
    there is more to do now. False too when another server holds the space's re-embedding."""
    with store.db.space(space_id) as tx:
        got = tx.one(q.REEMBED_TRY_LOCK, {"key": lock_key(space_id)})
        if got is None or not got[0]:
            return False  # another server is on it
        info = tx.one(q.GET_SPACE)
        if info is None or info[6] is None:
            return False  # deleted, or finished by another server
        record = str(info[6])
        target = _spec(record)
        embedder = embedders.get(target)
        if embedder is None:
            return False
        rows = tx.execute(q.REEMBED_TODO, {"limit": limit}).fetchall()
        if rows:
            texts = [embed_text(str(r[2]), *(None if v is None else str(v) for v in r[3:])) for r in rows]
            vecs = np.ascontiguousarray(embedder.embed(texts), dtype=np.float32)
            locked: dict[object, object] = dict(
                tx.execute(q.REEMBED_LOCK_ROWS, {"ids": [str(r[0]) for r in rows]}).fetchall())
            for i, r in enumerate(rows):
                if locked.get(r[0]) == r[1]:  # the text embedded is still the row's
                    tx.execute(q.STAGE_REEMBED_VECTOR, {"id": r[0], "embedding": HalfVector(vecs[i])})
            return True
        # Nothing left: switch, holding the counter row (writers of the space wait for it).
        held = tx.one(q.LOCK_SPACE_ROW)
        if held is None or held[2] != record:
            return False
        if tx.one(q.REEMBED_TODO, {"limit": 1}) is not None:
            return True  # a write landed since the read above: stage it first
        tx.execute(q.DROP_UNSTAGED_VECTORS)
        tx.execute(q.APPLY_STAGED_VECTORS)
        tx.execute(q.CLEAR_FANS)  # new vectors, new neighbourhoods: measured again (measure_fans)
        tx.execute(q.CLEAR_REEMBED_VECTORS)
        tx.execute(q.SWITCH_EMBEDDER, {"embedder": json.dumps({**target.to_dict(), "explicit": True}),
                                       "dimension": int(embedder.dimension)})
        tx.execute(q.RECOUNT_BYTES)  # every vector changed size
        if store.vector_index:
            tx.execute(q.ENSURE_VECTOR_INDEX)
    log.info("re-embedded with %s; the space now uses it", target, extra={"memory_space": space_id})
    return False


class ReembedWorker:
    """Each server's re-embedding thread: every ``poll`` seconds (or at once when woken), the
    spaces with a target, a step at a time, until each is switched or held by another server."""

    def __init__(self, store: PostgresStore, embedders: Embedders, batch: int, poll: float = 1.0,
                 closing: threading.Event | None = None) -> None:
        self.store = store
        self.embedders = embedders
        self.batch = max(1, batch)
        self.poll = poll
        self._closing = closing or threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engram-pg-reembed", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._closing.is_set()

    def _run(self) -> None:
        while not self._stopping():
            self._wake.wait(self.poll)
            self._wake.clear()
            try:
                spaces = reembedding(self.store)
            except (psycopg.Error, psycopg_pool.PoolTimeout):
                if self._stopping():
                    return
                log.warning("re-embedding: cannot list the spaces to work on", exc_info=True)
                continue
            for sid in spaces:
                try:
                    while not self._stopping() and step(self.store, sid, self.embedders, self.batch):
                        pass
                except (psycopg.Error, psycopg_pool.PoolTimeout, EngramError):
                    if self._stopping():
                        return
                    log.exception("re-embedding step failed", extra={"memory_space": sid})

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
