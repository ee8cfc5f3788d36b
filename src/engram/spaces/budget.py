"""How many memory spaces one process may hold open, from its open-file limit.

A loaded space costs file descriptors: its writer connection (the database
and its ``-wal``), one reader connection per thread that has read it (two
more each), and its share of the process-wide ``-shm`` mapping. Threads cost
nothing while the space is idle (see ``storage.sqlite_store``), so descriptors
are what bounds the number of loaded spaces.

Two guards, both checked before a space is opened (``SpaceRegistry``):

* a count: at most ``max_loaded`` spaces with open storage. ``max_loaded_spaces``
  sets it; 0 derives it at start from the spaces' share of ``RLIMIT_NOFILE``
  (:class:`engram.descriptors.DescriptorBudget`, the one place the limit is
  divided: what is not kept for sockets, logs and models) divided by
  :data:`FDS_PER_SPACE`;
* the real descriptor count (``/proc/self/fd``) against water marks of the
  *current* limit: above :data:`HIGH_WATER` of it, least recently used spaces
  are unloaded until it is below :data:`LOW_WATER`, so a burst of readers or
  connections cannot push the process into ``EMFILE``. Checked before every
  load and once a second by the server's maintenance loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..descriptors import DescriptorBudget, nofile_limit

FDS_PER_SPACE = 10  # writer (2) + shm share + per-thread readers (2 each); ~10 measured under load
HIGH_WATER = 0.80
LOW_WATER = 0.65


def open_fds() -> int | None:
    """How many descriptors this process holds now, or None where /proc is not available."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself opened
    except OSError:
        return None


@dataclass(frozen=True)
class SpaceBudget:
    nofile: int  # the soft limit seen at start
    max_loaded: int  # spaces with open storage at once
    derived: bool  # True when max_loaded came from nofile (max_loaded_spaces = 0)

    @classmethod
    def derive(cls, max_loaded_spaces: int, max_spaces: int, descriptors: DescriptorBudget) -> SpaceBudget:
        nofile = descriptors.nofile
        if max_loaded_spaces > 0:
            return cls(nofile, max_loaded_spaces, False)
        return cls(nofile, max(2, min(max_spaces, descriptors.spaces // FDS_PER_SPACE)), True)

    def fds_above(self, fraction: float) -> bool:
        """True if open descriptors exceed ``fraction`` of the current limit."""
        n = open_fds()
        return n is not None and n > fraction * nofile_limit()

    def describe(self) -> dict[str, int | bool | None]:
        return {"nofile": nofile_limit(), "nofile_at_start": self.nofile,
                "max_loaded_spaces": self.max_loaded, "derived": self.derived, "open_fds": open_fds()}
