"""Fixtures for integration tests: real ``engram start`` processes shared per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engram.testing import EngramProcess


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., EngramProcess]]:
    """Start servers shared by one test module: ``factory(spaces=[...], settings={...})``."""
    started: list[EngramProcess] = []

    def factory(
        spaces: tuple[str, ...] | list[str] = (), settings: dict[str, Any] | None = None, name: str = "srv"
    ) -> EngramProcess:
        root: Path = tmp_path_factory.mktemp(name)
        srv = EngramProcess.start(root, spaces, settings)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        if srv.running:
            srv.kill()


@pytest.fixture(scope="module")
def rest_server(module_server_factory: Callable[..., EngramProcess]) -> EngramProcess:
    """One server per module with spaces ``alpha`` and ``beta`` (plus ``default``)."""
    return module_server_factory(spaces=["alpha", "beta"], name="rest")
