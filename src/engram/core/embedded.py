"""A space's text embedding: which embedder it uses, and the backlog of rows awaiting a vector.

``TextEmbedding`` is a part of :class:`~engram.core.space.MemorySpace` (a mixin: the
methods live here, the state on the space). The invariants it keeps:

* *Pending* is a property of a row, not a separate record: a live memory whose
  ``embedding`` is NULL and whose text is not empty, in a space with an embedder. Opening
  a space lists those rows again (``_load_pending``), so a kill -9 loses no vector.
* A vector is written through the group-commit writer and added to the in-memory set only
  after that commit: searchable only once durable, like every other write.
* Vectors do not take an LSN: LSNs number client-visible mutations.
* Re-embedding (``start_reembed``) writes the new model's vectors beside the live ones
  (table ``reembed_vectors``), resumable after a crash, and switches the space in one
  transaction once every embeddable row has one; until then recall uses the old model.
"""

from __future__ import annotations

import builtins
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..embedding.base import LOCAL_DIMENSION, EmbedderSpec, hash_dimension_of
from ..errors import DimensionMismatch
from ..index.vector import unit_rows16
from ..storage.sqlite_store import dumps

if TYPE_CHECKING:
    from ..embedding import Embedders
    from ..index.density import LocalDensity
    from ..index.vector import VectorSet
    from ..settings import Settings
    from ..storage.sqlite_store import SpaceStore
    from ..types import Clock
    from .backfill import EmbeddingBackfill

log = logging.getLogger("engram.embedding")

# A row has text to embed (the SQL twin of ``embed_text(...) != ""``).
EMBEDDABLE_SQL = (
    "(content != '' OR coalesce(what, '') != '' OR coalesce(where_location, '') != '' "
    "OR coalesce(why, '') != '' OR coalesce(how, '') != '')"
)
REEMBED_TABLE = (
    "CREATE TABLE IF NOT EXISTS reembed_vectors (rowid INTEGER PRIMARY KEY, embedding BLOB NOT NULL)"
)

NO_EMBEDDER = EmbedderSpec("none", "none")
# What a memory is embedded from: its content and an episode's descriptive fields.
EMBED_TEXT_COLUMNS = "content, what, where_location, why, how, who"


def embed_text(content: str, what: str | None = None, where: str | None = None, why: str | None = None,
               how: str | None = None, who: str | None = None) -> str:
    """The text a memory's vector is computed from: its content, an episode's fields, and
    who took part ("Ann, Raj: ..."), since who said or did something is part of what it
    means (a question about Ann's brother is about what Ann said). ``who`` is the
    stored JSON list. Empty when there is no text at all (who alone is not a memory)."""
    parts = [content]
    for extra in (what, where, why, how):
        if extra and extra not in parts:
            parts.append(extra)
    text = " ".join(p for p in parts if p).strip()
    people = json.loads(who) if who else []
    if text and people:
        return f"{', '.join(str(p) for p in people)}: {text}"
    return text


def known_dimension(spec: EmbedderSpec, openai_dimension: int) -> int | None:
    """The vector length of ``spec`` without loading a model (None: learnt from the first answer)."""
    if spec.provider == "local":
        return LOCAL_DIMENSION
    if spec.provider == "hash":
        return hash_dimension_of(spec.model)
    if spec.provider == "openai":
        return openai_dimension or None
    return None


def implicit_spec(embedders: Embedders, dim: int | None, openai_dimension: int) -> EmbedderSpec:
    """The embedder of a space that chose none: the server's default, unless the space's
    vectors are already of another length (they came from a client: it keeps taking those)."""
    spec = embedders.default_spec()
    want = known_dimension(spec, openai_dimension)
    return NO_EMBEDDER if dim is not None and want is not None and want != dim else spec


class TextEmbedding:
    """Mixin of ``MemorySpace``: embedder binding, the pending backlog, background vectors."""

    # State owned by MemorySpace (declared here for the type checker).
    id: str
    settings: Settings
    clock: Clock
    store: SpaceStore | None
    dim: int | None
    vectors: VectorSet
    embedders: Embedders | None
    backfill: EmbeddingBackfill | None
    embedder_spec: EmbedderSpec
    embedder_explicit: bool
    _pending: dict[int, int]
    _pending_cv: threading.Condition
    _pending_seq: int
    _unmeasured: dict[int, None]
    _closed: bool
    reembed_target: EmbedderSpec | None
    density: LocalDensity

    def _rebuild_vectors(self) -> None:
        raise NotImplementedError  # MemorySpace's

    def check_healthy(self) -> SpaceStore:
        raise NotImplementedError  # MemorySpace's

    @property
    def closed(self) -> bool:
        raise NotImplementedError  # MemorySpace's

    # -- embedder binding and the pending backlog ----------------------------------
    def _bind_embedder(self) -> None:
        """Which embedder this space uses: recorded at creation, else the server default.

        A space with no record (created before embedders existed, or in-process without
        a server) takes the server's default, unless its vectors already have another
        length: then they came from a client, and the space keeps taking client vectors.
        """
        assert self.store is not None
        raw = self.store.meta("embedder")
        if raw:
            rec = json.loads(raw)
            self.embedder_spec = EmbedderSpec(str(rec["provider"]), str(rec["model"]))
            self.embedder_explicit = bool(rec.get("explicit", False))
        elif self.embedders is not None:
            self.embedder_spec = implicit_spec(self.embedders, self.dim, self.settings.openai_dimension)
        target = self.store.meta("reembed")
        if target and self.embedders is not None:
            rec = json.loads(target)
            self.reembed_target = EmbedderSpec(str(rec["provider"]), str(rec["model"]))

    @property
    def embedding_active(self) -> bool:
        """True when this space turns text into vectors itself."""
        return self.embedders is not None and self.embedder_spec.provider != "none"

    def configure_embedder(self, spec: EmbedderSpec, explicit: bool) -> None:
        """Record the space's embedder at creation (and bind the dimension when it is known)."""
        store = self.check_healthy()
        dim = known_dimension(spec, self.settings.openai_dimension)
        binds = spec.provider != "none" and dim is not None
        if explicit and binds and self.dim is not None and dim != self.dim:
            raise DimensionMismatch(
                f"embedder {spec} makes {dim}-dimensional vectors but the space was asked for dimension "
                f"{self.dim}",
                suggestion="Omit dimension (the embedder sets it), or choose an embedder of that size.",
                details={"expected": dim, "received": self.dim},
            )
        record = dumps({**spec.to_dict(), "explicit": explicit})

        def op(conn: sqlite3.Connection, _lsn: int) -> None:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('embedder', ?)", (record,))
            if explicit and dim is not None and spec.provider != "none":
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)", (str(dim),))

        store.write(op, mutates=False)
        self.embedder_spec, self.embedder_explicit = spec, explicit
        if explicit and dim is not None and spec.provider != "none":
            self.dim = self.vectors.dim = dim

    def _load_pending(self) -> None:
        """List the rows still awaiting a vector (after a restart, or a crash mid-backlog)."""
        # The fan only weighs the server's own query vectors (cognition.recall.fan): a space
        # that embeds nothing needs neither a backlog nor fans.
        if self.store is None or not self.embedding_active:
            return
        self._to_measure(self.vectors.keys().tolist())  # their fan is not persisted
        rows = self.store.reader().execute(
            f"SELECT rowid, {EMBED_TEXT_COLUMNS} FROM memories "
            "WHERE embedding IS NULL AND suppressed = 0 ORDER BY rowid"
        ).fetchall()
        with self._pending_cv:
            self._pend_locked(int(rowid) for rowid, *text in rows if embed_text(*text))
        work = self._pending or self.reembed_target is not None or self._unmeasured
        if work and self.backfill is not None:
            log.info("embedding backlog after open: %d", len(self._pending), extra={"memory_space": self.id})
            self.backfill.notify(self)

    given_backlog: int | None

    @property
    def embedding_backlog(self) -> int:
        """Rows awaiting a vector; on a read worker's copy, the server's count it was sent."""
        given = self.given_backlog
        return len(self._pending) if given is None else given

    def _pend_locked(self, rowids: Iterable[int]) -> None:
        """Mark rows as awaiting a vector (hold ``_pending_cv``), in the order they became pending.

        The value is a sequence number, not the rowid: an update makes an old row pending
        again, and it goes to the end (popped and re-inserted) so ``_pending`` stays ordered by
        the time each row became pending, which is what ``wait_embedded`` relies on.
        """
        for r in rowids:
            self._pending.pop(r, None)
            self._pending_seq += 1
            self._pending[r] = self._pending_seq

    def _pend(self, rowids: Iterable[int]) -> None:
        with self._pending_cv:
            self._pend_locked(rowids)

    def wait_embedded(self, timeout: float) -> int:
        """Wait until every memory pending now has its vector; returns how many still lack one."""
        deadline = time.monotonic() + timeout
        with self._pending_cv:
            if not self._pending:
                return 0
            upto = self._pending[next(reversed(self._pending))]
            while True:
                first = next(iter(self._pending.values()), None)
                if first is None or first > upto:
                    return 0
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return sum(1 for seq in self._pending.values() if seq <= upto)
                self._pending_cv.wait(left)

    def _drop_pending_as_seen(self, rowids: Iterable[int], seq_of: dict[int, int],
                              done: set[int] | frozenset[int] = frozenset()) -> None:
        """Drop rows from the backlog unless they became pending again after ``seq_of`` was read."""
        with self._pending_cv:
            for r in rowids:
                if r in done or self._pending.get(r) == seq_of.get(r):
                    self._pending.pop(r, None)
            self._pending_cv.notify_all()

    def _drop_pending(self, rowids: Iterable[int]) -> None:
        with self._pending_cv:
            for r in rowids:
                self._pending.pop(r, None)
            self._pending_cv.notify_all()

    def embed_pending(self, limit: int) -> bool:
        """Embed up to ``limit`` pending rows (on the backfill thread); True if more remain.

        The vectors are written through the group-commit writer and added to the
        in-memory set only after that commit, like any other write: a vector is
        searchable only once it is durable.
        """
        store = self.check_healthy()
        if not self.embedding_active:
            return False
        assert self.embedders is not None
        with self._pending_cv:
            seq_of = dict(itertools.islice(self._pending.items(), limit))
        batch = list(seq_of)
        if not batch:
            if self.reembed_target is not None:
                return self._reembed_step(limit)
            return self._density_step(limit)
        q = ",".join("?" * len(batch))
        rows = store.reader().execute(
            f"SELECT rowid, lsn, suppressed, embedding IS NOT NULL, {EMBED_TEXT_COLUMNS} "
            f"FROM memories WHERE rowid IN ({q})", batch,
        ).fetchall()
        keys: list[int] = []
        texts: list[str] = []
        lsns: list[int] = []
        for rowid, lsn, suppressed, has_vec, *text in rows:
            t = embed_text(*text)
            if not suppressed and not has_vec and t:
                keys.append(int(rowid))
                texts.append(t)
                lsns.append(int(lsn))
        gone = set(batch).difference(keys)  # deleted, suppressed or embedded meanwhile
        if gone:
            self._drop_pending_as_seen(gone, seq_of)
        if not keys:
            return bool(self._pending) or self.reembed_target is not None
        embedder = self.embedders.get(self.embedder_spec)
        assert embedder is not None
        vecs = np.ascontiguousarray(embedder.embed(texts), dtype=np.float32)
        if self.dim is not None and vecs.shape[1] != self.dim:
            from ..errors import EmbedderUnavailable

            raise EmbedderUnavailable(
                f"embedder {self.embedder_spec} returned {vecs.shape[1]}-dimensional vectors; "
                f"memory space {self.id!r} holds {self.dim}-dimensional ones"
            )
        links, near = self._neighbours(keys, vecs)
        now = self.clock()

        def op(conn: sqlite3.Connection, _lsn: int) -> list[int]:
            done: list[int] = []
            for i, key in enumerate(keys):
                # ``lsn = ?``: the row is still the one whose text was embedded. An update
                # (PUT/PATCH) that changed the text meanwhile advanced the LSN and made the row
                # pending again; this stale vector must not land on the new text.
                cur = conn.execute(
                    "UPDATE memories SET embedding = ? "
                    "WHERE rowid = ? AND embedding IS NULL AND suppressed = 0 AND lsn = ?",
                    (vecs[i].tobytes(), key, lsns[i]),
                )
                if cur.rowcount:
                    done.append(i)
            if self.dim is None and done:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)",
                             (str(vecs.shape[1]),))
                self.dim = self.vectors.dim = int(vecs.shape[1])
            stored = {keys[i] for i in done}
            for a, b, strength in links:
                if a in stored:
                    for src, dst in ((a, b), (b, a)):
                        conn.execute(
                            "INSERT INTO associations"
                            "(source, target, strength, kind, created_at, updated_at, lsn) "
                            "SELECT ?, ?, ?, 'semantic', ?, ?, lsn FROM memories WHERE rowid = ? "
                            "ON CONFLICT(source, target) DO UPDATE SET "
                            "strength = max(strength, excluded.strength), updated_at = excluded.updated_at",
                            (src, dst, strength, now, now, b),
                        )
            return done

        def after(done: list[int], _lsn: int) -> None:
            if done:
                unit = unit_rows16(vecs[done])  # as a copy loading the stored bytes rounds them
                self.vectors.add_many([keys[i] for i in done], unit,
                                      np.asarray([lsns[i] for i in done], dtype=np.int64))
                for i in done:
                    self.density.observe(keys[i], near[i])
            # A row updated while its vector was computed was pended again (a later sequence
            # number than this batch saw, set by the update's effect, which the completer ran
            # before this one): it stays for the next batch.
            self._drop_pending_as_seen(keys, seq_of, {keys[i] for i in done})

        store.write(op, mutates=False, after=after)
        return bool(self._pending) or self.reembed_target is not None

    def _neighbours(
        self, keys: builtins.list[int], vecs: np.ndarray
    ) -> tuple[builtins.list[tuple[int, int, float]], builtins.list[builtins.list[tuple[int, float]]]]:
        """Each new memory's nearest neighbours: ``(links, neighbours)``.

        ``neighbours[i]`` are the nearest stored memories of ``keys[i]`` and the batch's
        earlier rows (for the fan, ``index.density``); ``links`` are the associations from
        meaning: those at or above ``semantic_link_threshold``, at most ``auto_link_max``.
        """
        thr = self.settings.semantic_link_threshold
        most = self.settings.auto_link_max if thr <= 1.0 else 0
        want = max(most, self.density.k) + 1
        links: list[tuple[int, int, float]] = []
        near: list[list[tuple[int, float]]] = []
        within = vecs @ vecs.T if len(keys) > 1 else None
        stored = len(self.vectors)
        # Exact-sized spaces: one pass over the rows for the whole batch; beyond, the index.
        batch = (self.vectors.search_many(vecs, want) if 0 < stored <= self.settings.exact_search_max
                 else None)
        for i, key in enumerate(keys):
            found: list[tuple[float, int]] = []
            if stored:
                hits = batch[i] if batch is not None else self.vectors.search(vecs[i], want)
                found += [(s, k) for k, s in hits if k != key]
            if within is not None:
                found += [(float(within[i, j]), keys[j]) for j in range(i)]
            found.sort(reverse=True)
            near.append([(k, s) for s, k in found[: self.density.k]])
            links += [(key, k, round(min(1.0, s), 6)) for s, k in found[:most] if s >= thr]
        return links, near

    def _to_measure(self, keys: Iterable[int]) -> None:
        """Vectors whose fan the background worker has to measure (see ``_density_step``)."""
        with self._pending_cv:
            self._unmeasured.update(dict.fromkeys(keys))

    def _density_step(self, limit: int) -> bool:
        """Measure the fan of up to ``limit`` vectors that arrived without it (loaded at open,
        client vectors, a re-embedding); True if more remain. Vectors the worker embeds get
        theirs with the embedding, from the same search."""
        limit *= 8  # a search each, no model: cheap next to an embedding batch
        with self._pending_cv:
            batch = list(self._unmeasured)[:limit]
            for key in batch:
                del self._unmeasured[key]
            more = bool(self._unmeasured)
        for key in batch:
            vec = self.vectors.vector(key)  # None: forgotten meanwhile
            if vec is not None:
                self.density.observe(key, self.vectors.search(vec, self.density.k + 1))
        return more

    # -- re-embedding with another model (engram space reembed) -------------------------
    def start_reembed(self, spec: EmbedderSpec) -> dict[str, Any]:
        """Begin (or resume) re-embedding every memory's text with ``spec``; returns the status."""
        from ..errors import InvalidInput

        store = self.check_healthy()
        if self.embedders is None or spec.provider == "none":
            raise InvalidInput("re-embedding needs an embedder (provider local, openai or hash)",
                               example='{"provider": "local", "model": "all-MiniLM-L6-v2"}')
        if self.reembed_target is not None:
            if self.reembed_target == spec:
                return self.reembed_status()  # resume: the same target, progress kept
            raise InvalidInput(
                f"memory space {self.id!r} is already being re-embedded with {self.reembed_target}",
                suggestion="Wait for it to finish (GET .../reembed shows progress), or ask for the same "
                           "embedder to resume it.",
            )
        self.embedders.get(spec)  # fails now (EmbedderUnavailable) if it cannot be built
        (textless,) = store.reader().execute(
            f"SELECT count(*) FROM memories WHERE embedding IS NOT NULL AND NOT {EMBEDDABLE_SQL}"
        ).fetchone()
        if textless:
            raise InvalidInput(
                f"{textless} memories in {self.id!r} carry a client vector and no text; they cannot be "
                "re-embedded by a model",
                suggestion="Forget them (mode=delete) or keep this space's embedder.",
            )
        record = dumps(spec.to_dict())

        def op(conn: sqlite3.Connection, _lsn: int) -> None:
            conn.execute(REEMBED_TABLE)
            conn.execute("DELETE FROM reembed_vectors")
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('reembed', ?)", (record,))

        store.write(op, mutates=False)
        self.reembed_target = spec
        log.info("re-embedding started with %s", spec, extra={"memory_space": self.id})
        if self.backfill is not None:
            self.backfill.notify(self)
        return self.reembed_status()

    def reembed_status(self) -> dict[str, Any]:
        conn = self.check_healthy().reader()
        (total,) = conn.execute(
            f"SELECT count(*) FROM memories WHERE suppressed = 0 AND {EMBEDDABLE_SQL}").fetchone()
        done = 0
        target = self.reembed_target
        if target is not None:
            (done,) = conn.execute(
                "SELECT count(*) FROM reembed_vectors r JOIN memories m ON m.rowid = r.rowid "
                "WHERE m.suppressed = 0").fetchone()
        return {"state": "running" if target is not None else "idle", "total": int(total),
                "done": int(done) if target is not None else int(total) - self.embedding_backlog,
                "target": None if target is None else target.to_dict()}

    def _reembed_step(self, limit: int) -> bool:
        """Embed the next rows with the target model, or switch when none is left; True if more."""
        store = self.check_healthy()
        target = self.reembed_target
        assert target is not None and self.embedders is not None
        rows = store.reader().execute(
            f"SELECT rowid, {EMBED_TEXT_COLUMNS} FROM memories AS m WHERE suppressed = 0 AND "
            f"{EMBEDDABLE_SQL} AND NOT EXISTS (SELECT 1 FROM reembed_vectors r WHERE r.rowid = m.rowid) "
            "ORDER BY rowid LIMIT ?", (limit,),
        ).fetchall()
        embedder = self.embedders.get(target)
        assert embedder is not None
        if rows:
            vecs = np.ascontiguousarray(embedder.embed([embed_text(*r[1:]) for r in rows]), dtype=np.float32)

            def put(conn: sqlite3.Connection, _lsn: int) -> None:
                conn.executemany("INSERT OR REPLACE INTO reembed_vectors(rowid, embedding) VALUES (?, ?)",
                                 [(int(r[0]), vecs[i].tobytes()) for i, r in enumerate(rows)])

            store.write(put, mutates=False)
            return True
        new_dim = embedder.dimension
        record = dumps({**target.to_dict(), "explicit": True})

        def switch(conn: sqlite3.Connection, _lsn: int) -> bool:
            # Serialised with every write: if a memory arrived since the last batch, not yet.
            (missing,) = conn.execute(
                f"SELECT count(*) FROM memories AS m WHERE suppressed = 0 AND {EMBEDDABLE_SQL} AND NOT "
                "EXISTS (SELECT 1 FROM reembed_vectors r WHERE r.rowid = m.rowid)").fetchone()
            if missing:
                return False
            conn.execute("UPDATE memories SET embedding = (SELECT r.embedding FROM reembed_vectors r "
                         "WHERE r.rowid = memories.rowid) WHERE embedding IS NOT NULL OR rowid IN "
                         "(SELECT rowid FROM reembed_vectors)")
            conn.execute("DELETE FROM reembed_vectors")
            conn.execute("DELETE FROM meta WHERE key = 'reembed'")
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('embedder', ?)", (record,))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('dimension', ?)", (str(new_dim),))
            # Later ops of this commit batch must already see the new dimension.
            self.dim = self.vectors.dim = new_dim
            return True

        def after(switched: bool, _lsn: int) -> None:
            if not switched:
                return
            self.embedder_spec, self.embedder_explicit = target, True
            self._rebuild_vectors()
            self._drop_pending(list(self._pending))
            self.reembed_target = None  # last: "idle" means the new vectors are searchable
            log.info("re-embedded with %s; the space now uses it", target, extra={"memory_space": self.id})

        switched = bool(store.write(switch, mutates=False, after=after)[0])
        return not switched

