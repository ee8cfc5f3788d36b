"""In-process test helpers: a fake clock and one way to build an ``EngramService``.

Tests that need no server process (unit, property, differential) use these instead of
their own copies, so "a service on a temp root with this space" means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..service import EngramService
from ..settings import load_settings
from ..types import Clock


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
