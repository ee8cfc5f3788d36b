"""Shared fixtures. Server fixtures start real ``engram start`` processes on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engram.testing import EngramProcess


@pytest.fixture
def engram_server_factory(tmp_path: Path) -> Iterator[Callable[..., EngramProcess]]:
    """Start servers: ``factory(spaces=[...], settings={...})``; all are stopped at teardown."""
    started: list[EngramProcess] = []

    def factory(spaces: tuple[str, ...] | list[str] = (), settings: dict[str, Any] | None = None,
                name: str | None = None) -> EngramProcess:
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


# -- engine fixtures (in-process; no server) ------------------------------------------------


@pytest.fixture
def engine_settings(tmp_path: Path) -> Callable[..., Any]:
    """``make(**overrides)`` -> Settings rooted at ``tmp_path/data``, environment ignored."""
    from engram.settings import load_settings

    def make(**overrides: Any) -> Any:
        overrides.setdefault("data_dir", tmp_path / "data")
        return load_settings(overrides=overrides, use_env=False)

    return make


@pytest.fixture
def registry_factory(engine_settings: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``make(**overrides)`` -> an open SpaceRegistry; every one is closed at teardown."""
    from engram.spaces.registry import SpaceRegistry

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        reg = SpaceRegistry(engine_settings(**overrides))
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.close()
