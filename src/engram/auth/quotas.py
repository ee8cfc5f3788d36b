"""Per-space quotas: ``max_memories`` and ``max_space_bytes`` (SPEC §10).

A write that would take its space past either limit is refused with
:class:`QuotaExceeded` before anything is submitted, so nothing is stored.

Concurrent writes must not slip past together: each admitted write reserves
one memory and its estimated bytes until it is committed (or fails), and the
check counts committed + reserved. Between the commit and the release a write
is counted twice, which can only refuse early, never admit past the limit.

The committed count is read before the check (off the event loop), so a write
released between that read and the check would be in neither figure. Each
release therefore bumps the space's release mark; a check given the mark its
count was read at raises :class:`StaleCount` when the mark has moved, and the
caller counts again (:func:`admit`). After a few tries it checks with the
writes released since its count added, which can only refuse early.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from ..core.models import MemoryInput
from ..errors import QuotaExceeded

# Counts taken again when writes were released meanwhile, before checking conservatively.
RECOUNTS = 3

# Per-row overhead of a memory in SQLite and the index besides its text and vector.
_ROW_OVERHEAD = 512


def estimated_bytes(item: MemoryInput) -> int:
    size = len(item.content.encode("utf-8", "surrogatepass")) + _ROW_OVERHEAD
    if item.embedding is not None:
        size += 8 * len(item.embedding)  # stored as float32, indexed as float32 again
    size += sum(len(k) + len(v if isinstance(v, str) else repr(v)) for k, v in item.metadata.items())
    size += sum(len(t) for t in item.tags)
    return size


class StaleCount(Exception):
    """Writes of the space were released after its count was read: count again."""


class Quotas:
    def __init__(self, max_memories: int, max_space_bytes: int) -> None:
        self.max_memories = max_memories
        self.max_space_bytes = max_space_bytes
        self._lock = threading.Lock()
        self._reserved: dict[str, tuple[int, int]] = {}  # space -> (memories, bytes) in flight
        self._released: dict[str, tuple[int, int]] = {}  # space -> (releases, memories released) so far

    @property
    def enabled(self) -> bool:
        return self.max_memories > 0 or self.max_space_bytes > 0

    def mark(self, space_id: str) -> tuple[int, int]:
        """The space's release mark: read it before counting, pass it to :meth:`reserve_many`."""
        with self._lock:
            return self._released.get(space_id, (0, 0))

    @contextlib.asynccontextmanager
    async def admit(self, space_id: str, items: list[MemoryInput], count: Callable[[], Awaitable[int]],
                    size: Callable[[], int], *, new: int | None = None) -> AsyncIterator[None]:
        """Reserve as :meth:`reserve_many` does, counting with ``count`` (awaited, off the loop)
        and counting again when writes of the space were released meanwhile."""
        if not self.enabled:
            yield
            return
        with contextlib.ExitStack() as held:
            for attempt in range(RECOUNTS + 1):
                mark = self.mark(space_id)
                counted = await count() if self.max_memories > 0 and (new is None or new) else 0
                try:
                    held.enter_context(self.reserve_many(space_id, items, counted, size, new=new,
                                                         counted_at=mark, stale_ok=attempt == RECOUNTS))
                except StaleCount:
                    continue
                break
            yield

    @contextlib.contextmanager
    def reserve_many(self, space_id: str, items: list[MemoryInput], counted: int,
                     size: Callable[[], int], *, new: int | None = None,
                     counted_at: tuple[int, int] | None = None, stale_ok: bool = False) -> Iterator[None]:
        """Hold ``new`` memories (default: one per item) and the items' bytes, or raise QuotaExceeded.

        A batch is admitted whole or refused whole (nothing stored), as one remember is; an
        update that replaces a memory passes ``new=0`` (it adds bytes, not a memory).
        ``counted``: the space's committed memories (0 when ``max_memories`` is off or the write
        adds none); ``counted_at``: the :meth:`mark` read before it was counted. If writes were
        released since, :class:`StaleCount` is raised, or with ``stale_ok`` the memories they held
        are added to the count.
        """
        if not self.enabled:
            yield
            return
        n = len(items) if new is None else new
        need = sum(estimated_bytes(item) for item in items)
        memories = counted
        on_disk = size() if self.max_space_bytes > 0 else 0
        with self._lock:
            held_n, held_b = self._reserved.get(space_id, (0, 0))
            if counted_at is not None:
                releases, released_n = self._released.get(space_id, (0, 0))
                if releases != counted_at[0]:
                    if not stale_ok:
                        raise StaleCount(space_id)
                    memories += released_n - counted_at[1]
            if self.max_memories > 0 and n and memories + held_n + n > self.max_memories:
                raise QuotaExceeded(
                    f"memory space {space_id!r} holds {memories} memories (max_memories = "
                    f"{self.max_memories}); this write of {n} was refused and nothing was stored",
                    details={"memory_space_id": space_id, "max_memories": self.max_memories})
            if self.max_space_bytes > 0 and on_disk + held_b + need > self.max_space_bytes:
                raise QuotaExceeded(
                    f"memory space {space_id!r} uses {on_disk} bytes and this write needs about {need} more "
                    f"(max_space_bytes = {self.max_space_bytes}); it was refused and nothing was stored",
                    details={"memory_space_id": space_id, "max_space_bytes": self.max_space_bytes})
            self._reserved[space_id] = (held_n + n, held_b + need)
        try:
            yield
        finally:
            with self._lock:
                releases, released_n = self._released.get(space_id, (0, 0))
                self._released[space_id] = (releases + 1, released_n + n)
                held_n, held_b = self._reserved.get(space_id, (n, need))
                if held_n <= n and held_b <= need:
                    self._reserved.pop(space_id, None)
                else:
                    self._reserved[space_id] = (held_n - n, held_b - need)
