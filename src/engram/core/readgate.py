"""The read gate: how many short reads run their Python at once (``read_concurrency``).

Short reads (recall, get, list...) are mostly Python under one GIL, so the service lets
``read_concurrency`` of them run at a time (``EngramService._read``): more threads only add
GIL hand-offs. But a read's *native* stretches (the vector scan in usearch or numpy, an
FTS5 query in SQLite) release the GIL, and holding the gate through them kept the second
core idle: a read steps out of the gate around them (:func:`native`), so another read's
Python runs meanwhile, and steps back in before its own Python continues.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class Gate:
    """``slots`` places, taken and given back in C (a ``queue.SimpleQueue`` of tokens): with
    ``threading.BoundedSemaphore`` the Python-level ``Condition.notify`` of every release was
    29 % of the GIL's time at 16 REST callers (py-spy, bench/notes/recall_profile.md)."""

    def __init__(self, slots: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(max(1, slots)):
            self._tokens.put(None)

    def acquire(self) -> None:
        self._tokens.get()

    def release(self) -> None:
        self._tokens.put(None)


@contextmanager
def held(gate: Gate | None) -> Iterator[None]:
    """Run the body inside ``gate`` (None: no gate), which :func:`native` may step out of."""
    if gate is None:
        yield
        return
    gate.acquire()
    outer = getattr(_local, "gate", None)
    _local.gate = gate
    try:
        yield
    finally:
        _local.gate = outer
        gate.release()


@contextmanager
def native() -> Iterator[None]:
    """Around work that releases the GIL: the gate this thread holds (if any) is let go meanwhile."""
    gate = getattr(_local, "gate", None)
    if gate is None:
        yield
        return
    _local.gate = None
    gate.release()
    try:
        yield
    finally:
        gate.acquire()
        _local.gate = gate
