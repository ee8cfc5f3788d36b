"""Approximate nearest-neighbour index (HNSW, usearch) for large spaces.

The index is *derived* data: the SQLite store is the truth and ``VectorSet``
holds the exact (float16) rows. The index only proposes candidates; every
candidate is re-scored exactly against ``VectorSet`` and dropped if its key is
no longer live, so a removed or suppressed memory can never be returned, even
while the index still holds it.

Write path: ``remember`` never waits for the index. ``VectorSet`` appends a row
with an increasing sequence number and calls :meth:`AnnIndex.notify_added`; a
background thread adds rows to the HNSW graph in batches. The index covers all
rows with ``seq < indexed_seq``; :meth:`search` = HNSW over that prefix + exact
search over the (short) tail from ``indexed_seq`` on, merged.

Locking: usearch tolerates concurrent ``add`` and ``search``, but not
``reserve`` (re-allocation) or ``remove`` beside a search, so those two run
under the exclusive side of a small readers-writer lock; searches and adds take
the shared side. Only the background thread mutates the index.

The background thread runs only while there is work: it is started by the
first notification after it left, and leaves after
``space_thread_idle_seconds`` without any, so an idle space holds no thread.
Leaving and starting are decided under ``_idle_lock`` (see :meth:`_signal`),
so at most one builder runs and no notification is left without one.

Checkpoints: ``<space_dir>/vectors.usearch`` plus ``vectors.usearch.json``
(dim, count, size, crc32, and ``lsn``). The invariant of a checkpoint: every
live row whose LSN is <= ``lsn`` is in the saved graph with its current vector.
On open, a row is taken as indexed iff its key is in the graph *and* its LSN is
<= ``lsn``; anything else (newer rows, and rows re-written after the checkpoint,
e.g. a reused rowid) goes to the tail and is indexed again, and graph keys that
are no longer live are removed. A checkpoint that is missing, torn, from another
dimension or fails its checksum is ignored and the index is rebuilt in the
background, with exact search serving meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from usearch.compiled import MetricKind
from usearch.index import Index

from ..settings import Settings
from .vector import VectorSet

log = logging.getLogger("engram.index")

INDEX_FILE = "vectors.usearch"
SIDECAR_FILE = "vectors.usearch.json"
CHECKPOINT_VERSION = 1
_BATCH = 512
_BACKLOG_BATCH = 1024  # a big backlog (first build, rebuild) is added in larger batches ...
_BACKLOG_THREADS = 2  # ... with up to this many usearch threads (steady state uses one)
_OVERSAMPLE = 2  # ask the graph for this many times k candidates before exact re-scoring


class _RWLock:
    """Many readers or one writer; writers are preferred so reserve/remove cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                return crc
            crc = zlib.crc32(chunk, crc)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AnnIndex:
    def __init__(self, vectors: VectorSet, space_dir: Path, settings: Settings) -> None:
        self.vectors = vectors
        self.dir = space_dir
        self.settings = settings
        self.index: Index | None = None
        self.indexed_seq = 0  # rows with seq < indexed_seq are in the graph (or dead)
        self.ready = False  # search goes through the graph
        self.checkpoint_lsn = 0
        self.loaded_from_checkpoint = False
        self.last_error: str | None = None
        self._since_checkpoint = 0
        self._adds = 0  # bumped by every append (writer side); read by the builder
        self._adds_at_last_step = 0
        self._dirty = False
        self._removals: deque[int] = deque()
        self._rw = _RWLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False  # a builder thread is alive (or about to be); guarded by _idle_lock
        self._started = False  # start() was called: notifications may start a builder
        self._failed = False  # indexing failed: no builder is started again (exact search serves)
        self._idle.set()

    # -- configuration ------------------------------------------------------------
    @property
    def threshold(self) -> int:
        return self.settings.exact_search_max

    def _new_index(self, dim: int) -> Index:
        return Index(
            ndim=dim, metric=MetricKind.IP, dtype="f16",
            connectivity=self.settings.hnsw_connectivity,
            expansion_add=self.settings.hnsw_expansion_add,
            expansion_search=self.settings.hnsw_expansion_search,
        )

    # -- checkpoint load (before the vectors are loaded) --------------------------
    def load_checkpoint(self, dim: int | None, last_lsn: int) -> tuple[np.ndarray, int] | None:
        """Load a valid checkpoint; returns ``(graph keys, checkpoint lsn)`` or None.

        Called by the space while opening, before rows are loaded, so the space
        can put the covered rows first (see the module docstring).
        """
        idx_path, side_path = self.dir / INDEX_FILE, self.dir / SIDECAR_FILE
        if not side_path.exists() or not idx_path.exists() or dim is None:
            return None
        try:
            meta = json.loads(side_path.read_text())
            if meta.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"checkpoint version {meta.get('version')!r}")
            if int(meta["dim"]) != dim:
                raise ValueError(f"checkpoint has dimension {meta['dim']}, space has {dim}")
            if int(meta["lsn"]) > last_lsn:
                raise ValueError(f"checkpoint lsn {meta['lsn']} is ahead of the store ({last_lsn})")
            if idx_path.stat().st_size != int(meta["size"]):
                raise ValueError("index file size does not match its sidecar")
            if _crc32(idx_path) != int(meta["crc32"]):
                raise ValueError("index file checksum does not match its sidecar")
            index = self._new_index(dim)
            index.load(str(idx_path))
            if len(index) != int(meta["count"]) or index.ndim != dim:
                raise ValueError("loaded index does not match its sidecar")
            keys = np.asarray(index.keys, dtype=np.int64) if len(index) else np.zeros(0, np.int64)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            self.last_error = f"checkpoint ignored: {exc}"
            log.warning("index checkpoint of %s ignored, rebuilding: %s", self.dir.name, exc,
                        extra={"memory_space": self.dir.name})
            return None
        self.index = index
        self.checkpoint_lsn = int(meta["lsn"])
        self.loaded_from_checkpoint = True
        return keys, self.checkpoint_lsn

    def attach_loaded(self, covered_rows: int) -> None:
        """The space loaded ``covered_rows`` graph-covered rows first (seq 0..covered_rows-1)."""
        self.indexed_seq = covered_rows
        if self.index is None:
            return
        # Graph keys that are not live any more (forgotten since the checkpoint) go now;
        # keys rewritten since (live, but in the tail) are replaced when the tail is indexed.
        graph_keys = np.asarray(self.index.keys, dtype=np.int64) if len(self.index) else np.zeros(0, np.int64)
        stale = graph_keys[~np.isin(graph_keys, self.vectors.keys())]
        if len(stale):
            self.index.remove(stale.astype(np.uint64))
        self._mark_ready_if_caught_up()

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Allow the builder to run, and run it once now (catch up with what was loaded)."""
        with self._idle_lock:
            if self._started:
                return
            self._started = True
        self._signal()

    def stop(self) -> None:
        with self._idle_lock:
            self._stop.set()
            self._wake.set()
            thread = self._thread if self._running else None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._idle.set()

    @property
    def thread_running(self) -> bool:
        return self._running

    def notify_added(self) -> None:
        self._adds += 1
        self._signal()

    def remove(self, key: int) -> None:
        self._removals.append(key)
        self._signal()

    def _signal(self) -> None:
        # Clearing "idle" and raising "wake" happen together, under the lock the
        # thread holds when it decides it is idle, so it can never report idle
        # while work it has not seen is waiting.
        # Starting the builder is decided under the same lock as its leaving (_run), so
        # either the running builder sees this wake-up or a new one is started here.
        with self._idle_lock:
            self._idle.clear()
            self._wake.set()
            if self._started and not self._running and not self._stop.is_set() and not self._failed:
                thread = threading.Thread(target=self._run, name=f"engram-index-{self.dir.name}", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:  # no thread to be had: exact search serves; retried on next add
                    log.warning("could not start the index builder of %s: %s", self.dir.name, exc,
                                extra={"memory_space": self.dir.name})
                    self._idle.set()
                    return
                self._thread = thread
                self._running = True
            elif self._failed or self._stop.is_set() or not self._started:
                self._idle.set()  # nobody will do this work: waiting for it must not hang

    def wait_caught_up(self, timeout: float | None = None) -> bool:
        """Block until the background thread has no work left (for tests, benchmarks, shutdown)."""
        return self._idle.wait(timeout)

    # -- background maintenance -----------------------------------------------------
    def _run(self) -> None:
        idle_for = max(0.01, self.settings.space_thread_idle_seconds)
        while True:
            if not self._wake.wait(idle_for) or self._stop.is_set():
                with self._idle_lock:
                    if not self._wake.is_set() or self._stop.is_set():
                        self._running = False
                        self._idle.set()
                        return
            self._wake.clear()
            try:
                while not self._stop.is_set() and self._step():
                    pass
                with self._idle_lock:
                    if not self._wake.is_set():
                        self._idle.set()
            except Exception as exc:
                self.last_error = f"indexing failed: {exc}"
                log.exception("index maintenance failed in %s", self.dir.name,
                              extra={"memory_space": self.dir.name})
                self.ready = False
                with self._idle_lock:
                    self._failed = True
                    self._running = False
                    self._idle.set()
                return

    def _step(self) -> bool:
        """One unit of work; True if there may be more."""
        self._apply_removals()
        if self.index is None:
            if len(self.vectors) <= self.threshold or self.vectors.dim is None:
                return False
            self.index = self._new_index(self.vectors.dim)
            self.indexed_seq = 0
            log.info(
                "building vector index", extra={"memory_space": self.dir.name, "vectors": len(self.vectors)}
            )
        backlog = self.vectors.count_from(self.indexed_seq) > _BACKLOG_BATCH
        # Two builder threads only while no writes arrive (a rebuild after open, a
        # catch-up after a burst): beside live writes one thread leaves them a core.
        quiet = self._adds == self._adds_at_last_step
        self._adds_at_last_step = self._adds
        threads = min(_BACKLOG_THREADS, os.cpu_count() or 1) if backlog and quiet else 1
        keys, vecs, seqs = self.vectors.pending(self.indexed_seq, _BACKLOG_BATCH if backlog else _BATCH)
        if len(keys) == 0:
            self.indexed_seq = max(self.indexed_seq, self.vectors.next_seq)
            self._mark_ready_if_caught_up()
            if self._since_checkpoint >= self.settings.index_checkpoint_every:
                self.checkpoint()
            return False
        index = self.index
        ukeys = keys.astype(np.uint64)
        present = index.contains(ukeys)
        if np.any(present):  # rewritten keys (reused rowids): drop the old vector first
            self._rw.acquire_write()
            try:
                index.remove(ukeys[present])
            finally:
                self._rw.release_write()
        i = 0
        while i < len(keys):
            room = index.capacity - len(index) - 1
            if room <= 0:
                # usearch grows its arrays inside add when full, which must not run
                # beside a search: add one vector exclusively (it doubles capacity).
                self._rw.acquire_write()
                try:
                    index.add(ukeys[i : i + 1], vecs[i : i + 1], threads=1)
                finally:
                    self._rw.release_write()
                i += 1
                continue
            j = min(len(keys), i + room)
            self._rw.acquire_read()  # adds may run beside searches
            try:
                index.add(ukeys[i:j], vecs[i:j], threads=threads)
            finally:
                self._rw.release_read()
            i = j
        self.indexed_seq = int(seqs[-1]) + 1
        self._since_checkpoint += len(keys)
        self._dirty = True
        self._mark_ready_if_caught_up()
        return True

    def _mark_ready_if_caught_up(self) -> None:
        # Serve through the graph once the exact tail is no bigger than a small space.
        if (
            not self.ready
            and self.index is not None
            and self.vectors.count_from(self.indexed_seq) <= max(1024, self.threshold // 4)
        ):
            self.ready = True
            log.info("vector index ready", extra={"memory_space": self.dir.name, "vectors": len(self.index)})

    def _apply_removals(self) -> None:
        if not self._removals:
            return
        batch = []
        while self._removals:
            key = self._removals.popleft()
            if key not in self.vectors:  # re-added since: the add path replaces it
                batch.append(key)
        if self.index is None or not batch:
            return
        self._rw.acquire_write()
        try:
            self.index.remove(np.asarray(batch, dtype=np.uint64))
        finally:
            self._rw.release_write()
        self._dirty = True

    # -- search ---------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        index = self.index
        if index is None or not self.ready:
            return self.vectors.search_exact(query, k)
        upto = self.indexed_seq  # read before the tail search: overlap is merged below
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        want = max(k * _OVERSAMPLE, 16)
        self._rw.acquire_read()
        try:
            found = index.search(q, want, threads=1)
        finally:
            self._rw.release_read()
        keys = np.asarray(found.keys, dtype=np.int64)[: len(found)]
        scores = self.vectors.score_keys(q, keys)  # exact, live keys only
        for key, score in self.vectors.search_exact(q, k, from_seq=upto):
            scores[key] = score
        top = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
        return top

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint(self) -> bool:
        """Save the graph and its sidecar atomically; False (and logged) if it failed."""
        index = self.index
        if index is None or self.vectors.dim is None:
            return False
        self._apply_removals()
        tail_min = self.vectors.min_lsn_from(self.indexed_seq)
        lsn = self.vectors.applied_lsn if tail_min is None else min(self.vectors.applied_lsn, tail_min - 1)
        idx_path, side_path = self.dir / INDEX_FILE, self.dir / SIDECAR_FILE
        tmp_idx, tmp_side = idx_path.with_suffix(".usearch.tmp"), side_path.with_suffix(".json.tmp")
        t0 = time.perf_counter()
        try:
            self._rw.acquire_read()
            try:
                index.save(str(tmp_idx))
                count = len(index)
            finally:
                self._rw.release_read()
            with open(tmp_idx, "rb+") as f:
                os.fsync(f.fileno())
            meta = {
                "version": CHECKPOINT_VERSION,
                "dim": int(self.vectors.dim),
                "count": count,
                "lsn": int(lsn),
                "size": tmp_idx.stat().st_size,
                "crc32": _crc32(tmp_idx),
                "saved_at": time.time(),
            }
            os.chmod(tmp_idx, 0o600)  # usearch creates it with the umask's mode
            os.replace(tmp_idx, idx_path)
            # The sidecar goes last: a crash before it leaves an old sidecar whose
            # checksum does not match the new file, so the pair is rejected, never misread.
            with open(os.open(tmp_side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_side, side_path)
            _fsync_dir(self.dir)
        except OSError as exc:
            self.last_error = f"checkpoint failed: {exc}"
            log.error(
                "index checkpoint of %s failed: %s", self.dir.name, exc, extra={"memory_space": self.dir.name}
            )
            return False
        self.checkpoint_lsn = int(lsn)
        self._since_checkpoint = 0
        self._dirty = False
        log.info("index checkpoint saved", extra={"memory_space": self.dir.name, "vectors": count,
                                                  "seconds": round(time.perf_counter() - t0, 3)})
        return True

    def checkpoint_if_useful(self) -> None:
        """On close: save if the graph changed since the last checkpoint."""
        if self.index is not None and (self._dirty or not (self.dir / SIDECAR_FILE).exists()):
            self.checkpoint()

    def state(self) -> dict[str, Any]:
        pending = self.vectors.count_from(self.indexed_seq) if self.index is not None else 0
        return {
            "kind": "hnsw" if self.index is not None else "exact",
            "ready": self.ready,
            "indexed": len(self.index) if self.index is not None else 0,
            "pending": pending,
            "vectors": len(self.vectors),
            "exact_search_max": self.threshold,
            "checkpoint_lsn": self.checkpoint_lsn,
            "from_checkpoint": self.loaded_from_checkpoint,
            "error": self.last_error,
        }
