"""Shared fixtures. Server fixtures start real ``engram start`` processes on free ports."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engram.testing import EngramProcess, report

# -- the multi-tenant validation tier ----------------------------------------------------------
# Its tests carry the `multitenant` marker (given here, by file, so the list is in one place):
# `python3 run.py test --tier multitenant` (= `-m multitenant`) runs just them, and the default
# run includes them. Either way the session records how long the tier's tests took (setup + call +
# teardown of each, module fixtures included) in the report section `multitenant_tier` and in
# reports/tier_durations.jsonl, and prints it, so CI records it without running the tier twice.
MULTITENANT_FILES = (
    "tests/integration/test_isolation_matrix.py",
    "tests/integration/test_differential.py",
    "tests/crash/test_server_crash.py",
    "tests/property/test_multispace_state.py",
    "tests/fuzz/test_fuzz_short.py",
    "tests/integration/test_load_short.py",
)
TIER_BUDGET_SECONDS = 60.0
_tier: dict[str, Any] = {"seconds": 0.0, "tests": set(), "failed": set()}


def pytest_sessionstart(session: pytest.Session) -> None:
    report.start_run(os.environ.get("ENGRAM_TEST_RUN_ID") or None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only the default-tier tests of those files: `-m multitenant` replaces addopts' `-m 'not slow'`,
    # so a slow test carrying the marker would run in the tier (the long crash soak, long fuzz).
    for item in items:
        if _in_tier(item.nodeid) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.multitenant)


def _in_tier(nodeid: str) -> bool:
    return any(nodeid.startswith(f) for f in MULTITENANT_FILES)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "multitenant" in report.keywords:
        _tier["seconds"] += report.duration
        _tier["tests"].add(report.nodeid)
        if report.failed:
            _tier["failed"].add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _tier["tests"]:
        return
    files = sorted({n.split("::")[0] for n in _tier["tests"]})
    seconds = round(_tier["seconds"], 1)
    load = os.getloadavg()
    report.write_section(
        "multitenant_tier",
        [{"name": "tier-tests", "tests": len(_tier["tests"]), "violations": sorted(_tier["failed"])}],
        seconds=seconds, budget_seconds=TIER_BUDGET_SECONDS, within_budget=seconds < TIER_BUDGET_SECONDS,
        complete=files == sorted(MULTITENANT_FILES), files=files, loadavg=[round(x, 2) for x in load],
    )
    line = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
            "tests": len(_tier["tests"]), "failed": len(_tier["failed"]),
            "complete": files == sorted(MULTITENANT_FILES),
            "loadavg": [round(x, 2) for x in load], **report.current_run()}
    log = report.report_dir().parent / "tier_durations.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\n")
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"multitenant tier: {seconds} s over {len(_tier['tests'])} tests "
                      f"(budget {TIER_BUDGET_SECONDS:.0f} s, load {load[0]:.2f}); logged to {log}")


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
