"""In-process test helpers: a fake clock and one way to build an ``EngramService``.

Tests that need no server process (unit, property, differential) use these instead of
their own copies, so "a service on a temp root with this space" means the same everywhere.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..service import EngramService
from ..settings import load_settings
from ..types import Clock

#: A RAM-backed file system where the machine has one (Linux: tmpfs at /dev/shm).
RAM_DIR = Path("/dev/shm")


def scratch_dir(prefix: str) -> Path:
    """A new directory for data whose durability on disk is not what the test checks.

    Real files, but on tmpfs when the machine has one: the fsyncs of a space's creation, of
    every acknowledged write and of its close cost nothing there, where on a shared disk they
    were most of the wall time of an in-process property run. Tests of durability itself (the
    crash tier) keep their data on disk. The caller removes the directory.
    """
    ram = RAM_DIR if RAM_DIR.is_dir() and os.access(RAM_DIR, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=ram))


class FakeClock:
    """A clock that moves only when told: ``clock.now += 3600`` (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_service(root: Path, spaces: Iterable[str] = (), *, clock: Clock | None = None,
                 **settings: Any) -> EngramService:
    """An ``EngramService`` on ``root`` with ``spaces`` created, the environment ignored.

    Embedding defaults to ``none`` (client vectors only); ``settings`` override anything.
    """
    overrides = {"embedder": "none", "data_dir": root, "bootstrap_spaces": tuple(spaces), **settings}
    built = load_settings(overrides=overrides, use_env=False)
    return EngramService(built, clock=clock) if clock is not None else EngramService(built)
