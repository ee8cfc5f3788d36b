"""``SpaceBackend``: what one memory space offers, whatever holds its data (SPEC §13).

Two implementations: :class:`engram.core.space.MemorySpace` (one SQLite file per space, the
embedded default) and :class:`engram.core.postgres.space.PostgresSpace` (rows of a shared
PostgreSQL database, served by any number of Engram servers). The service and the transports
above it call these methods and nothing backend-specific; operations only SQLite offers yet
(cognition, backup, re-embedding) answer ``NotBuiltYet`` on PostgreSQL (service_pg.py).

mypy checks both classes against the Protocol (the assignments at the end of this module and of
``core/postgres/space.py``), so a method changing shape on one side fails the lint test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from . import filters
from .models import (
    ForgetMode,
    ForgetReceipt,
    Memory,
    MemoryInput,
    MemoryPage,
    MemoryPatch,
    StoreReceipt,
    UpdateReceipt,
)

if TYPE_CHECKING:
    from .events import EventBus


class SpaceBackend(Protocol):
    """One space's data plane: durable writes with a per-space LSN, reads, and its event bus."""

    id: str
    events: EventBus

    @property
    def last_lsn(self) -> int:
        """The LSN of the space's last acknowledged write (0: none yet)."""
        ...

    def count(self) -> int:
        """Live memories (suppressed ones included, expired ones not)."""
        ...

    def remember(self, item: MemoryInput) -> StoreReceipt:
        """Store one memory durably; the receipt carries its LSN."""
        ...

    def update(self, memory_id: str, *, put: MemoryInput | None = None,
               patch: MemoryPatch | None = None) -> UpdateReceipt:
        """PUT (create or replace) or PATCH (the given fields) one memory."""
        ...

    def get(self, memory_id: str, include_embedding: bool = True) -> Memory:
        """One live memory, or ``MemoryNotFound``."""
        ...

    def list(self, cursor: str | None = None, limit: int = 50, memory_type: str | None = None,
             include_suppressed: bool = False, filter: filters.Node | None = None) -> MemoryPage:
        """A page of live memories in storage order; ``next_cursor`` continues it."""
        ...

    def forget(self, memory_id: str, mode: ForgetMode = ForgetMode.suppress) -> ForgetReceipt:
        """Suppress (reversible) or delete one memory, durably."""
        ...

    def close(self, reason: str = "space closed") -> None:
        """Release what this handle holds; its subscribers are told ``reason``."""
        ...


if TYPE_CHECKING:
    from .space import MemorySpace

    _sqlite: type[SpaceBackend] = MemorySpace
