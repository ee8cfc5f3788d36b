"""Shared fixtures. Server fixtures start real ``engram start`` processes on free ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from engram.testing import EngramProcess


@pytest.fixture
def engram_server_factory(tmp_path: Path) -> Iterator[Callable[..., EngramProcess]]:
    """Start servers: ``factory(spaces=[...], settings={...})``; all are stopped at teardown."""
    started: list[EngramProcess] = []

    def factory(spaces: tuple[str, ...] | list[str] = (), settings: Optional[dict[str, Any]] = None,
                name: Optional[str] = None) -> EngramProcess:
        root = tmp_path / (name or f"srv{len(started)}")
        srv = EngramProcess.start(root, spaces, settings)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.kill() if srv.running else None


@pytest.fixture
def engram_server(engram_server_factory: Callable[..., EngramProcess]) -> EngramProcess:
    """One server with spaces ``alpha`` and ``beta`` (plus ``default``)."""
    return engram_server_factory(spaces=["alpha", "beta"])
