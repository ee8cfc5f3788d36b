"""Read worker processes: recall on the second core (``read_workers``; issue 15).

A recall is mostly Python, and one process runs Python on one core at a time (the GIL): 16
callers got little more out of the server than one. With ``read_workers = N`` the server
starts N worker processes (``python -m engram.readpool``); each keeps read-only copies of the
spaces it is asked about and runs the same recall code (cognition.recall) on them, while the
server keeps the transport, the writes and everything else.

What a copy is, and why its answers are the server's own:

* The copy opens the space's SQLite database through reader connections only (WAL readers
  beside the server's one writer; storage.sqlite_store.SnapshotStore) and loads the vectors
  from it, as the server did when it opened the space. The fans (index.density, kept in
  memory only) are sent along with the request to load.
* Every copy is labelled with the server's *read token* for the space at the time it was
  asked for: the space object (a reopened space is another), the store's ``epoch`` (bumped
  after every commit that changes stored memories, once its in-memory effects are applied)
  and the version of the fans. The server sends a recall to a worker only when the worker's
  copy carries the space's current token, so the copy holds every acknowledged write.
  Read-your-writes holds: a write's token is in place before it is acknowledged.
* How a copy keeps up with writes: a copy behind only by commits to the same space object is
  brought forward, not reloaded. The server keeps, per space, a ring of what each epoch changed
  in the vectors (index.changes: the rows added, exactly as stored, and the keys removed, in the
  order the ``VectorSet`` applied them; sealed by the store just before it publishes the epoch)
  and a log of the fans' keys changed per version (``LocalDensity.changes_since``). With a
  recall for a copy at an older token the server sends, first on the same pipe, a ``sync``: the
  operations of the epochs the copy missed and the current value of every fan changed since
  its version. The worker replays them on its copy with the same ``VectorSet`` code (same rows,
  same order, same caches) and relabels it; the recall after it then runs on the current state.
  Both logs start the first time the pool meets a space (nothing is recorded with
  ``read_workers = 0``) and are bounded (``changes.MAX_EPOCHS`` / ``MAX_ROWS``,
  ``density.CHANGES_KEPT``). When they do not reach back to a copy's state (a copy idle for
  long, a bulk write, a re-embedding, which replaces the vectors and the fans, or a reopened,
  restored or deleted space: another space object), the server answers and the copy is loaded
  whole: at once if the logs will bring the new copy forward (at most every
  ``RELOAD_SECONDS`` per space), else once the space has been still for ``SETTLE`` seconds.
  Anything that goes wrong applying a sync drops the copy (the server then reloads it).
* A worker gets a recall only while the server is already running another recall itself
  (``ReadPool.spill``): a lone caller is answered in the server without the hop between
  processes (~0.5-1 ms), and concurrent callers spill over to the workers' cores (a copy behind
  is brought forward when a recall goes to it).
* What a recall changes is done by the server: the rows to reinforce and the events to publish
  (``recalled``, ``activation``) come back with the answer. The query's vector is computed by
  the server (its embedders, its query cache) and sent with the cue; the server's clock gives
  the worker its "now".
* Only spaces searched exactly are served (no ANN index in the copies: a space past
  ``exact_search_max`` with its index ready stays in the server). Spaces with an embedding
  backlog are served (see ``servable``): the backlog's size and the words the text search keeps
  of the query (core.text.pruned_words: the server's per-process vocabulary decides) are sent
  with the recall, like the query's vector.
* A copy loaded whole makes its float16 rows from the stored bytes with the same function as
  every server path (index.vector.unit_rows16), so its rows are the server's bit for bit.

A worker that dies or answers with an error costs only that worker: the recalls it held are
run in the server, and a new worker is started on the next recall (at most once per
``RESTART_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .core.events import EventBus
from .core.models import Cue, RecallResult
from .errors import EngramError
from .index.changes import Op

if TYPE_CHECKING:
    from .core.space import MemorySpace
    from .observability import Metrics
    from .settings import Settings

log = logging.getLogger("engram.readpool")

SETTLE = 0.2  # seconds a space's token must stay the same before a worker loads it
# A copy that the change logs can bring forward once loaded is loaded without waiting for the
# space to be still, at most this often per space (a copy the logs cannot reach waits for SETTLE).
RELOAD_SECONDS = 1.0
RESTART_SECONDS = 5.0  # a dead worker is restarted at most this often
_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30

Token = tuple[str, int, int]


def read_token(space: MemorySpace) -> Token | None:
    """What a worker's copy of ``space`` must carry to answer for it (see the module docstring)."""
    store = space.store
    if store is None or space.replica:
        return None
    return (space.instance, store.epoch, space.density.version)


def servable(space: MemorySpace, cue: Cue) -> bool:
    """True when a worker can answer ``cue`` for ``space`` exactly as the server would.

    A space with an embedding backlog (texts stored, their vectors not computed yet) is served:
    what a recall reads of it is all in the copy or sent along. The rows awaiting a vector are
    in the database the copy reads (found by their words, like the server's FTS5 query); a
    vector the server's embedder adds is a commit like any other (a new read token, its rows in
    the change ring, its fans in the fans' log); the query's vector, the backlog's size (the
    answer's metadata) and the text search's pruned words (core.text.pruned_words) are the
    server's, sent with the recall. A ``wait_for_embeddings`` recall waits in the server (for
    its own embedder, as its own recall would) before the rest goes to a worker, with what the
    wait gave (its time, the rows still pending at its end) for the answer's metadata.

    Refused, because it cannot be made exact: a space searched through its ANN index (the
    copies have none and search exactly).
    """
    if not space.healthy or space.degraded or space.closed:
        return False
    ann = space.ann
    return ann is None or not ann.ready  # the copies search exactly; the server would use its index


# -- framing (both sides) -----------------------------------------------------------------
def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _read_frame_sync(stream: BinaryIO) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (n,) = _HEADER.unpack(head)
    if n > MAX_FRAME:
        raise EOFError
    body = stream.read(n)
    if len(body) < n:
        raise EOFError
    return pickle.loads(body)


# -- the server's side ------------------------------------------------------------------
class _WorkerGone(Exception):
    pass


class _Worker:
    """One worker process and what the server knows of it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.loaded: dict[str, Token] = {}  # space id -> the token of its copy there
        self.loading: dict[str, Token] = {}
        self.alive = True
        self.reader_task: asyncio.Task[None] | None = None

    def send(self, msg: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(_frame(msg))

    async def read_loop(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                head = await out.readexactly(_HEADER.size)
                (n,) = _HEADER.unpack(head)
                msg = pickle.loads(await out.readexactly(n))
                self._on(msg)
        except (asyncio.IncompleteReadError, ConnectionError, EOFError, pickle.UnpicklingError) as exc:
            log.warning("read worker %s stopped: %s", self.proc.pid, exc or type(exc).__name__)
        finally:
            self.gone()

    def _on(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "loaded":
            _, space_id, token, ok = msg
            if self.loading.get(space_id) == token:
                del self.loading[space_id]
            if ok:
                self.loaded[space_id] = token
            else:
                self.loaded.pop(space_id, None)
            return
        fut = self.pending.pop(msg[1], None)
        if fut is not None and not fut.done():
            fut.set_result(msg[2:])

    def gone(self) -> None:
        self.alive = False
        self.loaded.clear()
        self.loading.clear()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(_WorkerGone())
        self.pending.clear()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


class ReadPool:
    """The server's read workers (``read_workers`` of them) and the routing of recalls to them."""

    def __init__(self, settings: Settings, count: int, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.count = count
        self.workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._started_at = -RESTART_SECONDS
        self._starting: asyncio.Task[None] | None = None
        self._still: dict[str, tuple[Token, float]] = {}  # space id -> (token, first seen)
        self._reloaded: dict[str, float] = {}  # space id -> when a copy was last loaded unsettled
        self.served = 0  # recalls answered by a worker
        self.local = 0  # recalls the server ran itself although the pool is on
        self.caught_up = 0  # copies brought forward by the change logs (no reload)
        self.reloads = 0  # whole copies asked for (one per worker)
        # Recalls the server is running itself right now (:meth:`running_here`). With
        # ``spill`` on, a worker gets a recall only while the server is already running one:
        # a lone caller never pays the hop between processes, concurrent callers use both cores.
        self.running = 0
        self.spill = True
        self.closed = False

    # -- lifecycle --
    async def _start(self) -> None:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        while len(self.workers) < self.count:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "engram.readpool", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env, limit=MAX_FRAME,
            )
            w = _Worker(proc)
            w.send(("settings", self.settings))
            w.reader_task = asyncio.get_running_loop().create_task(w.read_loop())
            self.workers.append(w)
            log.info("read worker started", extra={"pid": proc.pid})

    async def _ensure(self) -> None:
        self.workers = [w for w in self.workers if w.alive]
        if len(self.workers) >= self.count or self.closed:
            return
        if self._starting is not None and not self._starting.done():
            return
        now = time.monotonic()
        if now - self._started_at < RESTART_SECONDS:
            return
        self._started_at = now
        self._starting = asyncio.get_running_loop().create_task(self._start())
        with contextlib.suppress(Exception):
            await asyncio.shield(self._starting)

    def close(self) -> None:
        """Stop every worker (from any thread): killed at once; a worker holds nothing to save."""
        self.closed = True
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(w.proc.pid, signal.SIGKILL)

    async def aclose(self) -> None:
        """:meth:`close`, then wait (on the loop that started them) until the workers are gone."""
        self.close()
        workers, self.workers = self.workers, []
        for w in workers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.proc.wait(), 5.0)
            if w.reader_task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(w.reader_task, 5.0)
            w.gone()

    def drop(self, space_id: str) -> None:
        """Let go of every copy of ``space_id`` (deleted, restored, unloaded)."""
        self._still.pop(space_id, None)
        self._reloaded.pop(space_id, None)
        for w in self.workers:
            if w.alive:
                w.loaded.pop(space_id, None)
                with contextlib.suppress(Exception):
                    w.send(("drop", space_id))

    # -- recall --
    async def recall(self, space: MemorySpace, cue: Cue) -> RecallResult | None:
        """``cue`` answered by a worker, or None: then the caller runs it in the server."""
        await self._ensure()
        token = read_token(space)
        if token is None or not self.workers or not servable(space, cue):
            return self._server()
        if self.spill and self.running == 0:  # the server is idle: answering here is quicker than the hop
            if not any(w.alive and w.loaded.get(space.id) == token for w in self.workers):
                self._maybe_load(space, token)  # it leaves alone a copy that can be brought forward
            return self._server()
        waited: tuple[float, int] | None = None
        if cue.wait_for_embeddings and space.embedding_active:
            # As the server's own recall (cognition.recall.prepare): wait for the writes before it
            # to have their vectors; the rest then runs on the state after the wait.
            t0 = time.perf_counter()
            left = await asyncio.to_thread(space.wait_embedded, space.settings.embedding_wait_seconds)
            waited = (round((time.perf_counter() - t0) * 1000, 3), left)
        qvec = None
        words: tuple[tuple[str, ...], list[str]] | None = None
        has_words = bool((cue.query or "").strip())
        embeds_query = cue.embedding is None and has_words and space.embedding_active
        if (has_words
                and any(w.alive and w.loaded.get(space.id, ("",))[0] == space.instance
                        for w in self.workers)):
            # First, so that no await comes between bringing a copy forward and sending the recall.
            qvec, words = await asyncio.to_thread(_text_parts, space, cue, embeds_query)
            if embeds_query and qvec is None:
                return self._server()  # the embedder failed: the server's own path says how
        token = read_token(space)  # read now: every write acknowledged before this recall is in it
        backlog = space.embedding_backlog  # the answer's metadata (a copy keeps no backlog)
        if token is None or not servable(space, cue):
            return self._server()
        ready = [w for w in self.workers if w.alive and w.loaded.get(space.id) == token]
        worker = min(ready, key=lambda w: len(w.pending)) if ready else None
        if worker is None or worker.pending:
            # A copy behind by commits to this space object only is brought forward (the changes
            # sent ahead of the recall on the same pipe), if that gives a less busy worker.
            caught = self._catch_up(space, token, len(worker.pending) if worker is not None else None)
            if caught is not None:
                worker = caught
        if worker is None or (embeds_query and qvec is None) or (has_words and words is None):
            self._maybe_load(space, token)
            return self._server()
        req = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[req] = fut
        try:
            index = space.ann.state() if space.ann is not None else None
            worker.send(("recall", req, space.id, token, cue, space.clock(), space.embedding_active, qvec,
                         space.embedder_spec, index, space.last_lsn, backlog, words, waited))
            status, payload = await fut
        except (_WorkerGone, ConnectionError, RuntimeError):
            return self._server()
        finally:
            worker.pending.pop(req, None)
        if status != "ok":
            return self._server()  # a stale copy or an error there: the server answers (and raises) itself
        result, reinforced, events = payload
        space.reinforce(reinforced)
        for type_, data in events:
            space.events.publish(type_, space.last_lsn, data)
        self.served += 1
        if self.metrics is not None:
            self.metrics.read_workers.labels("served").inc()
        return result  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def running_here(self) -> Iterator[None]:
        """Around a recall the server runs itself (see ``spill``)."""
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1

    def _server(self) -> RecallResult | None:
        """Count a recall the server runs itself; None (the caller's cue to run it)."""
        self.local += 1
        if self.metrics is not None:
            self.metrics.read_workers.labels("server").inc()
        return None

    def _catch_up(self, space: MemorySpace, token: Token, busier_than: int | None) -> _Worker | None:
        """Bring the least busy worker whose copy of ``space`` is behind ``token`` by commits to
        the same space object (fewer pending recalls than ``busier_than``, if given) to ``token``
        with the changes since its copy's token: the vectors' (index.changes) and the fans'
        (LocalDensity.changes_since). Returns the worker, or None when none can be (no such
        copy, or the logs do not reach back to it: it is reloaded whole then)."""
        changes = space.track_changes()
        if changes is None:
            return None
        behind: list[tuple[_Worker, Token]] = []
        for w in self.workers:
            have = w.loaded.get(space.id)
            if (w.alive and have is not None and space.id not in w.loading and _forward(have, token)
                    and have != token and (busier_than is None or len(w.pending) < busier_than)):
                behind.append((w, have))
        if not behind:
            return None
        worker, have = min(behind, key=lambda p: len(p[0].pending))
        ops = changes.since(have[1], token[1])
        if ops is None:
            return None
        fans = space.density.changes_since(have[2])
        if fans is None or fans[2] != token[2]:
            return None  # the fans moved on meanwhile (the next recall sees a new token) or are not logged
        try:
            worker.send(("sync", space.id, have, token, ops, fans[0], fans[1], space.dim))
        except Exception:
            return None
        worker.loaded[space.id] = token  # the worker applies it before the recall sent after it
        self.caught_up += 1
        if self.metrics is not None:
            self.metrics.read_worker_copies.labels("caught_up").inc()
        return worker

    def _maybe_load(self, space: MemorySpace, token: Token) -> None:
        now = time.monotonic()
        changes = space.track_changes()
        # Loaded at ``token``, would the copy be brought forward from then on? Then it is loaded now
        # (at most every RELOAD_SECONDS), else once the space has been still for SETTLE.
        reachable = (changes is not None and changes.reaches(token[1])
                     and now - self._reloaded.get(space.id, -RELOAD_SECONDS) >= RELOAD_SECONDS)
        seen = self._still.get(space.id)
        if seen is None or seen[0] != token:
            self._still[space.id] = (token, now)
            if not reachable:
                return
        elif now - seen[1] < SETTLE and not reachable:
            return
        behind = [w for w in self.workers if w.alive and w.loaded.get(space.id) != token
                  and space.id not in w.loading and not self._reachable(w, space, token)]
        if not behind:
            return  # loading it already: no snapshot of the fans on every recall meanwhile
        values, total, version = space.density.snapshot()
        if version != token[2]:
            return  # the fans moved on meanwhile: the next recall sees a new token
        if reachable:
            self._reloaded[space.id] = now
        for w in behind:
            w.loading[space.id] = token
            self.reloads += 1
            if self.metrics is not None:
                self.metrics.read_worker_copies.labels("reloaded").inc()
            with contextlib.suppress(Exception):
                w.send(("load", space.id, str(space.dir), token, values, total, space.density.k))

    @staticmethod
    def _reachable(w: _Worker, space: MemorySpace, token: Token) -> bool:
        """Whether ``w``'s copy of ``space`` can be brought forward to ``token`` (no reload needed)."""
        have = w.loaded.get(space.id)
        changes = space.vectors.changes
        return (have is not None and changes is not None and _forward(have, token)
                and changes.reaches(have[1]) and space.density.reaches(have[2]))


def _forward(have: Token, token: Token) -> bool:
    """Whether a copy at ``have`` is of the same space object as ``token`` and not ahead of it
    (so the change logs could bring it to ``token``)."""
    return have[0] == token[0] and have[1] <= token[1] and have[2] <= token[2]


def _query_vector(space: MemorySpace, cue: Cue) -> np.ndarray | None:
    from .cognition.candidates import query_vector

    try:
        qv = query_vector(space, cue)
    except EngramError:
        return None
    return qv.vector if qv.origin == "embedder" else None


def _text_parts(space: MemorySpace, cue: Cue, embeds: bool
                ) -> tuple[np.ndarray | None, tuple[tuple[str, ...], list[str]] | None]:
    """What the server computes for a worker's recall of a cue with words: the query's vector
    (``embeds``: the server's embedder makes it) and the text search's pruned words (None: they
    could not be read; the server answers then)."""
    from .core.text import pruned_words

    qvec = _query_vector(space, cue) if embeds else None
    return qvec, pruned_words(space, cue.query or "")


# -- the worker's side ------------------------------------------------------------------
class _Recorder(EventBus):
    """A copy's event bus: what a recall publishes is kept for the server to publish."""

    def __init__(self, space_id: str) -> None:
        super().__init__(space_id)
        self.kept: list[tuple[str, dict[str, Any]]] = []

    def publish(self, type_: str, lsn: int, data: dict[str, Any]) -> None:
        self.kept.append((type_, data))


class _GivenQuery:
    """A copy's embedders: the query vector the server computed for this recall."""

    def __init__(self, vector: np.ndarray | None) -> None:
        self.vector = vector

    def embed_query(self, spec: Any, text: str, wait: bool = False) -> np.ndarray:
        if self.vector is None:  # the server sends one whenever the cue's words are embedded
            raise RuntimeError("no query vector was sent")
        return self.vector


class _IndexState:
    """A copy's stand-in for the server's ANN index: only its state, for the answer's metadata
    (the copy's vectors have no index and are searched exactly, as the server's are then)."""

    ready = False

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def state(self) -> dict[str, Any]:
        return self._state

    def stop(self) -> None:  # MemorySpace.close: nothing runs here (a reload used to fail on it)
        pass

    def checkpoint_if_useful(self) -> None:
        pass


class _Copies:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.copies: OrderedDict[str, tuple[Token, MemorySpace]] = OrderedDict()

    def drop(self, space_id: str) -> None:
        got = self.copies.pop(space_id, None)
        if got is not None:
            got[1].close("dropped")

    def load(self, space_id: str, space_dir: str, token: Token, values: dict[int, float],
             total: float, k: int) -> bool:
        from .core.space import MemorySpace
        from .index.density import LocalDensity

        self.drop(space_id)
        space = MemorySpace(space_id, Path(space_dir), self.settings, replica=True)
        if not space.healthy:
            space.close("unhealthy")
            return False
        space.density = LocalDensity.restored(values, total, k)
        self.copies[space_id] = (token, space)
        cap = max(1, self.settings.max_loaded_spaces or 64)
        while len(self.copies) > cap:
            _, (_, old) = self.copies.popitem(last=False)
            old.close("evicted")
        return True

    def sync(self, space_id: str, have: Token, token: Token, ops: list[Op],
             fans: dict[int, float | None], total: float, dim: int | None) -> bool:
        """Bring the copy at ``have`` to ``token`` with the server's changes since (ReadPool._catch_up):
        the vector operations replayed in order, the changed fans set. False (and no copy kept: it
        may be half changed) when there is no copy at ``have`` or the changes do not apply."""
        got = self.copies.get(space_id)
        if got is None or got[0] != have:
            self.drop(space_id)
            return False
        space = got[1]
        try:
            if dim != space.dim:
                if space.dim is not None or dim is None:
                    raise ValueError(f"dimension {space.dim} became {dim}")  # the server's reopened it
                space.dim = dim
                if space.vectors.dim is None:
                    space.vectors.dim = dim
            space.vectors.replay(ops)
            space.density.apply(fans, total)
        except Exception:
            self.drop(space_id)
            raise
        self.copies[space_id] = (token, space)
        return True

    def recall(self, space_id: str, token: Token, cue: Cue, now: float, embeds: bool,
               qvec: np.ndarray | None, spec: Any, index: dict[str, Any] | None,
               last_lsn: int, backlog: int = 0,
               words: tuple[tuple[str, ...], list[str]] | None = None,
               waited: tuple[float, int] | None = None) -> tuple[str, Any]:
        from .cognition.recall import recall

        got = self.copies.get(space_id)
        if got is None or got[0] != token:
            return "stale", None
        self.copies.move_to_end(space_id)
        space = got[1]
        assert space.store is not None
        space.store.last_lsn = last_lsn  # the server's: what LSN-keyed caches (filter masks) go by
        space.clock = lambda: now
        space.embedder_spec = spec
        space.embedders = _GivenQuery(qvec) if embeds else None  # type: ignore[assignment]
        space.ann = _IndexState(index) if index is not None else None  # type: ignore[assignment]
        space.given_backlog = backlog
        space.given_words = {words[0]: words[1]} if words is not None else {}
        # The server waited for its embedder already: the copy's wait gives what the server's did.
        left = waited[1] if waited is not None else 0
        space.wait_embedded = lambda timeout: left  # type: ignore[method-assign]
        bus = space.events = _Recorder(space_id)
        space.reinforced = []
        result = recall(space, cue)
        if waited is not None and "embedding_wait_ms" in result.metadata:
            result.metadata["embedding_wait_ms"] = waited[0]  # the server's wait, not the copy's
        return "ok", (result, space.reinforced, bus.kept)


def worker_main() -> None:
    """A read worker: frames in on stdin, frames out on stdout (see ReadPool)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the frames
    inp = sys.stdin.buffer
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    kind, settings = _read_frame_sync(inp)
    assert kind == "settings"
    if settings.blas_threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=settings.blas_threads, user_api="blas")  # as the server (server.limit_blas)
    copies = _Copies(settings)
    while True:
        try:
            msg = _read_frame_sync(inp)
        except EOFError:
            return
        kind = msg[0]
        if kind == "load":
            _, space_id, space_dir, token, values, total, k = msg
            try:
                ok = copies.load(space_id, space_dir, token, values, total, k)
            except Exception as exc:  # the server keeps serving this space itself
                log.warning("read worker could not load %s: %s", space_id, exc)
                ok = False
            reply: Any = ("loaded", space_id, token, ok)
        elif kind == "sync":
            _, space_id, have, token, ops, fans, total, dim = msg
            try:
                ok = copies.sync(space_id, have, token, ops, fans, total, dim)
            except Exception as exc:  # the copy is dropped: the server reloads it
                log.warning("read worker could not bring %s forward: %s", space_id, exc)
                ok = False
            if ok:
                continue  # no answer: the recall sent after it is the answer
            reply = ("loaded", space_id, token, False)
        elif kind == "recall":
            (_, req, space_id, token, cue, now, embeds, qvec, spec, index, last_lsn, backlog, words,
             waited) = msg
            try:
                status, payload = copies.recall(space_id, token, cue, now, embeds, qvec, spec, index,
                                                last_lsn, backlog, words, waited)
            except Exception as exc:  # the server runs it and gives the caller its own error
                status, payload = "error", repr(exc)
            reply = ("result", req, status, payload)
        elif kind == "drop":
            copies.drop(msg[1])
            continue
        else:
            continue
        out.write(_frame(reply))
        out.flush()


if __name__ == "__main__":
    worker_main()
