"""Group commit for one server's writes to a PostgreSQL space (issue 17: "the durable write path
with per-space LSN and group commit").

Concurrent writes of one space on one server queue on the space's lane. The first writer to find
the lane idle becomes the *leader*: it takes what is queued (at most ``group_max`` writes) and
runs every queued operation in ONE transaction, one commit (one WAL flush), then hands the lane
to the first writer that queued meanwhile, which leads the next group. A writer that finds the
lane busy waits; there is no timer: a lone writer leads a group of one at once, and a group holds
only what queued while the previous commit ran.

A group runs its operations first without savepoints (a group of one never needs one: its error
rolls the transaction back, as before grouping). If one fails (quota, duplicate id, no such
memory, ...), that transaction rolls back, nothing committed and every LSN given back, and the
group runs again with each operation inside a savepoint: the failing one rolls back to its
savepoint, its LSN given back, and fails alone; the others keep their writes and the consecutive
LSNs they take in queue order. A savepoint costs two round trips per operation (SAVEPOINT and
RELEASE; bench/pg_group.py measures it), so they are paid only by a group that needs them.
Every caller learns its own result or error only after the transaction committed (or failed:
then every operation of the group gets that error, and nothing of it was acknowledged). One
NOTIFY per transaction, with its last LSN, wakes the other servers' feeds (store.notify).

``leaders`` bounds how many lanes (spaces) of this server commit at once: each committing group
holds one pooled connection, so a burst over many spaces cannot take every connection of the pool
from reads; a leader past the bound waits for a slot (its lane stays busy, so writes keep queuing
behind it and the group it then commits is the larger). Waiting writers hold no connection.

Another server's writes are not grouped with this one's: they queue on the space's counter row in
PostgreSQL as before, so LSNs stay gap-free and in commit order across servers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg

from .connection import PostgresDatabase, SpaceTx

T = TypeVar("T")

#: An operation of a group: runs inside the group's transaction; returns its result and the last
#: LSN it used (0: none; the group's NOTIFY carries the greatest).
Op = Callable[[SpaceTx], tuple[T, int]]


@dataclass(eq=False)
class _Job(Generic[T]):
    op: Op[T]
    size: int
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    lead: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Lane:
    pending: list[_Job[Any]] = field(default_factory=list)
    busy: bool = False


@dataclass
class GroupStats:
    """What the committer did since it was made (tests and metrics): transactions committed by
    groups, the operations they carried, and the largest group."""

    groups: int = 0
    ops: int = 0
    largest: int = 0
    #: Groups run a second time with savepoints because an operation failed in the first pass.
    retried: int = 0


class GroupCommitter:
    """The lanes of one server's spaces; ``group_max`` (>= 1) bounds the writes of one group
    (a batch of n memories counts n; a first operation larger than the bound runs alone);
    ``leaders`` (None: no bound) bounds the groups committing at once (one connection each)."""

    def __init__(self, db: PostgresDatabase, group_max: int = 64,
                 notify: Callable[[SpaceTx, int], None] | None = None, leaders: int | None = None) -> None:
        self.db = db
        self.group_max = max(1, int(group_max))
        self._notify = notify
        self._slots = threading.BoundedSemaphore(max(1, leaders)) if leaders is not None else None
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self.stats = GroupStats()
        #: Called after each committed group with its operation count (the server's metrics).
        self.on_commit: Callable[[int], None] | None = None

    def run(self, space_id: str, op: Op[T], size: int = 1) -> T:
        """Run ``op`` in the next group of ``space_id``'s lane; its result once committed."""
        job: _Job[T] = _Job(op, max(1, size))
        with self._lock:
            lane = self._lanes.setdefault(space_id, _Lane())
            lane.pending.append(job)
            lead = not lane.busy
            lane.busy = True
        if not lead:
            job.wake.wait()
        if not job.done:  # leading: this lane's first job, or handed the lane by the last leader
            self._lead(space_id, lane)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def _take(self, lane: _Lane) -> list[_Job[Any]]:
        with self._lock:
            n, total = 0, 0
            for job in lane.pending:
                if n and total + job.size > self.group_max:
                    break
                n, total = n + 1, total + job.size
            group = lane.pending[:n]
            del lane.pending[:n]
        return group

    def _lead(self, space_id: str, lane: _Lane) -> None:
        if self._slots is not None:
            self._slots.acquire()  # before taking: what queues meanwhile joins this group
        try:
            self._lead_group(space_id, lane)
        finally:
            if self._slots is not None:
                self._slots.release()

    def _lead_group(self, space_id: str, lane: _Lane) -> None:
        group = self._take(lane)
        try:
            self._commit(space_id, group)
        except BaseException as exc:  # the transaction failed: nothing of it was acknowledged
            for job in group:
                if not job.done:
                    job.error, job.result = exc, None
        finally:
            for job in group:
                job.done = True
            with self._lock:
                nxt = lane.pending[0] if lane.pending else None
                if nxt is None:
                    lane.busy = False
                    if self._lanes.get(space_id) is lane:
                        del self._lanes[space_id]
            for job in group:
                job.wake.set()
            if nxt is not None:
                nxt.wake.set()  # not done: it leads the next group

    def _commit(self, space_id: str, group: list[_Job[Any]]) -> None:
        """One transaction for ``group``. Several operations run first without savepoints (two
        round trips less per operation); if one of them fails, that transaction rolls back (no
        commit, every LSN given back) and the group runs again with a savepoint per operation,
        so the failing one fails alone."""
        if len(group) > 1:
            try:
                self._attempt(space_id, group, savepoints=False)
                return
            except _Failed:
                with self._lock:
                    self.stats.retried += 1
        self._attempt(space_id, group, savepoints=len(group) > 1)

    def _attempt(self, space_id: str, group: list[_Job[Any]], *, savepoints: bool) -> None:
        last = 0
        with self.db.space(space_id) as tx:
            for job in group:
                job.error = None
                if not savepoints:  # alone, or the optimistic pass: an error rolls everything back
                    try:
                        job.result, lsn = job.op(tx)
                    except psycopg.OperationalError:
                        raise  # the connection or the server, not the operation: the group fails
                    except Exception as exc:
                        if len(group) == 1:
                            raise
                        raise _Failed from exc
                else:
                    try:
                        with tx.conn.transaction():  # a savepoint: a failure undoes this job only
                            job.result, lsn = job.op(tx)
                    except Exception as exc:
                        job.error, job.result = exc, None
                        continue
                last = max(last, lsn)
            if last and self._notify is not None:
                self._notify(tx, last)
        with self._lock:
            self.stats.groups += 1
            self.stats.ops += len(group)
            self.stats.largest = max(self.stats.largest, len(group))
        if self.on_commit is not None:
            self.on_commit(len(group))


class _Failed(Exception):
    """An operation of an optimistic (savepoint-free) group pass failed: roll back, run again."""
