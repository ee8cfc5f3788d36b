"""The descriptor budget: RLIMIT_NOFILE divided once between sockets (HTTP connections, stream
subscribers) and spaces, each share overridable by its setting, and every consumer capped by
the same object (the service's)."""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engram.api.rest.connection import HttpLimits
from engram.descriptors import UNLIMITED, DescriptorBudget
from engram.service import EngramService
from engram.spaces.budget import FDS_PER_SPACE

Make = Callable[..., Any]


@pytest.mark.parametrize("nofile, sockets, http, subs, spaces", [
    (1024, 256, 256, 256, 768),
    (256, 64, 64, 64, 192),
    (160, 64, 40, 40, 96),  # the sockets share never goes below 64
    (40, 64, 16, 10, 0),  # absurdly low: HTTP keeps its floor of 16, spaces get nothing planned
    (UNLIMITED, UNLIMITED // 4, 4096, 4096, UNLIMITED - UNLIMITED // 4),
])
def test_the_split(engine_settings: Make, nofile: int, sockets: int, http: int, subs: int,
                   spaces: int) -> None:
    b = DescriptorBudget.from_settings(engine_settings(), nofile=nofile)
    assert (b.sockets, b.http_connections, b.subscribers, b.spaces) == (sockets, http, subs, spaces)
    assert b.http_connections_derived and b.subscribers_derived
    assert b.sockets + b.spaces == max(nofile, b.sockets)
    assert str(nofile) in b.describe()


def test_settings_override_their_share(engine_settings: Make) -> None:
    settings = engine_settings(http_max_connections=100, max_subscribers=7)
    b = DescriptorBudget.from_settings(settings, nofile=1024)
    assert (b.http_connections, b.subscribers) == (100, 7)
    assert not b.http_connections_derived and not b.subscribers_derived
    assert "set by http_max_connections" in b.describe() and "set by max_subscribers" in b.describe()


@pytest.fixture
def nofile_1024() -> Iterator[None]:
    """This process's soft open-file limit lowered to 1024 (like ``ulimit -n 1024``), then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:  # a missing check is a failure, never a skip
        pytest.fail(f"cannot set the open-file limit to 1024: the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_every_consumer_uses_the_services_budget(engine_settings: Make, nofile_1024: None) -> None:
    settings = engine_settings(max_loaded_spaces=0)
    service = EngramService(settings)
    try:
        d = service.descriptors
        assert (d.nofile, d.http_connections, d.subscribers, d.spaces) == (1024, 256, 256, 768)
        planned = max(2, min(settings.max_spaces, d.spaces // FDS_PER_SPACE))
        assert service.registry.budget.max_loaded == planned
        assert service.streams.total == d.subscribers
        limits = HttpLimits.from_settings(settings, d)
        assert limits.max_connections == d.http_connections and limits.nofile == d.nofile
    finally:
        service.close()
    capped = EngramService(engine_settings(max_loaded_spaces=5, max_subscribers=3, http_max_connections=20))
    try:
        assert capped.registry.budget.max_loaded == 5 and not capped.registry.budget.derived
        assert capped.streams.total == 3
        assert HttpLimits.from_settings(capped.settings, capped.descriptors).max_connections == 20
    finally:
        capped.close()
