"""Shared fixtures. Server fixtures start real ``engram start`` processes on free ports."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tiers import MULTITENANT_FILES, TIER_BUDGET_SECONDS

from engram.testing import EngramProcess, report, scratch_dir

# -- the multi-tenant validation tier ----------------------------------------------------------
# Its tests carry the `multitenant` marker, given here by file (tests/tiers.py lists the files):
# `python3 run.py test --tier multitenant` (= `-m multitenant` over those files) runs just them, and
# the default run includes them, as one block at its end. Either way the session records how long
# the tier took, from its first test's start to its last test's end (`seconds`; the old sum of the
# tests' durations is `tests_seconds`), in the report section `multitenant_tier` and in
# reports/tier_durations.jsonl, and prints it, so CI records it without running the tier twice.
#
# Fast by design: the tier's long runs that mostly wait on other processes (the three short fuzz
# runs and the short load run, subprocesses at nice 10; the crash cycles, whose CPU is in their
# servers) start in the background when the tier's first test starts (`Background`); the tests
# that check them run last, so the runs overlap the rest of the tier instead of following it.
# A test module offers such a run with `background_run(item)` -> (name, run) or None, where
# `run(workdir)` does the work and returns what the test checks (the test gets it from
# `background.result(request.node)`).
_tier: dict[str, Any] = {"tests_seconds": 0.0, "tests": set(), "failed": set(),
                         "first_start": None, "last_stop": None}


class Background:
    """Runs started once, early, each in a thread of its own (the thread mostly waits: for a
    subprocess, or for servers), so they overlap the other tests on the cores; a test asks for its
    run's result and waits only if it is not done (or starts it then, if nothing started it)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tier-background")
        self.runs: dict[str, Future[Any]] = {}
        self.root: Path | None = None

    def workdir(self, name: str) -> Path:
        if self.root is None:  # tmpfs when there is one: nothing here tests durability
            self.root = scratch_dir("engram-tier-")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, item: pytest.Item) -> str | None:
        found = background_run(item)
        if found is None:
            return None
        name, run = found
        if name not in self.runs:
            self.runs[name] = self.pool.submit(run, self.workdir(name))
        return name

    def result(self, item: pytest.Item) -> Any:
        name = self.start(item)
        assert name is not None, f"{item.nodeid} offers no background run"
        return self.runs[name].result()

    def close(self, keep: bool) -> None:
        """Waits for any run still going (a session stopped early, e.g. by ``-x``, before its
        test), then removes the work directories unless a test failed (a fuzz artifact is there)."""
        self.pool.shutdown(wait=True)
        if self.root is not None and not keep:
            shutil.rmtree(self.root, ignore_errors=True)


_BACKGROUND = pytest.StashKey[Background]()


def background_run(item: pytest.Item) -> tuple[str, Callable[[Path], Any]] | None:
    """The background run ``item`` checks, if its module offers one for it."""
    offer = getattr(getattr(item, "module", None), "background_run", None)
    return offer(item) if offer is not None else None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BACKGROUND] = Background()


def pytest_sessionstart(session: pytest.Session) -> None:
    report.start_run(os.environ.get("ENGRAM_TEST_RUN_ID") or None)
    _compile_engram()


def _compile_engram() -> None:
    """Byte-compile engram's source once when Python was told not to (PYTHONDONTWRITEBYTECODE=1,
    as on the shared development machine): otherwise every process a test starts (each server,
    fuzz target and load run) compiles the ~150 modules from source again (~0.1-0.3 s of CPU
    each). Python still reads .pyc files then; compileall writes them, and skips current ones."""
    if not sys.flags.dont_write_bytecode:
        return  # Python writes its caches itself
    import compileall

    import engram

    compileall.compile_dir(Path(engram.__file__).parent, quiet=2)


def pytest_itemcollected(item: pytest.Item) -> None:
    # Only the default-tier tests of those files: `-m multitenant` replaces addopts' `-m 'not slow'`,
    # so a slow test carrying the marker would run in the tier (the long crash soak, long fuzz).
    # (Here, before `-m` deselects: collection_modifyitems below runs after it.)
    if _in_tier(item.nodeid) and item.get_closest_marker("slow") is None:
        item.add_marker(pytest.mark.multitenant)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tier as one block at the end of the run, and within it the tests that check background
    runs last (so their runs overlap the tier's other tests). Stable: any other order is kept."""
    def place(item: pytest.Item) -> int:
        if "multitenant" not in item.keywords:
            return 0
        return 2 if background_run(item) is not None else 1
    items.sort(key=place)


def _in_tier(nodeid: str) -> bool:
    return any(nodeid.startswith(f) for f in MULTITENANT_FILES)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "multitenant" not in item.keywords or _tier["first_start"] is not None:
        return
    # The tier's first test: start every selected test's background run now.
    background = item.config.stash[_BACKGROUND]
    for other in item.session.items:
        if "multitenant" in other.keywords:
            background.start(other)


@pytest.fixture(scope="session")
def background(request: pytest.FixtureRequest) -> Background:
    """The tier's background runs: ``background.result(request.node)``."""
    return request.config.stash[_BACKGROUND]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "multitenant" in report.keywords:
        _tier["tests_seconds"] += report.duration
        _tier["tests"].add(report.nodeid)
        if _tier["first_start"] is None:
            _tier["first_start"] = report.start
        _tier["last_stop"] = report.stop
        if report.failed:
            _tier["failed"].add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    session.config.stash[_BACKGROUND].close(keep=session.testsfailed > 0)
    if not _tier["tests"]:
        return
    files = sorted({n.split("::")[0] for n in _tier["tests"]})
    seconds = round(_tier["last_stop"] - _tier["first_start"], 1)
    tests_seconds = round(_tier["tests_seconds"], 1)
    load = [round(x, 2) for x in os.getloadavg()]
    complete = files == sorted(MULTITENANT_FILES)
    report.write_section(
        "multitenant_tier",
        [{"name": "tier-tests", "tests": len(_tier["tests"]), "violations": sorted(_tier["failed"])}],
        seconds=seconds, tests_seconds=tests_seconds, budget_seconds=TIER_BUDGET_SECONDS,
        within_budget=seconds < TIER_BUDGET_SECONDS, complete=complete, files=files, loadavg=load,
    )
    line = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
            "tests_seconds": tests_seconds, "tests": len(_tier["tests"]), "failed": len(_tier["failed"]),
            "complete": complete, "loadavg": load, **report.current_run()}
    log = report.report_dir().parent / "tier_durations.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\n")
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"multitenant tier: {seconds} s wall over {len(_tier['tests'])} tests "
                      f"(their durations sum to {tests_seconds} s; budget {TIER_BUDGET_SECONDS:.0f} s, "
                      f"load {load[0]:.2f}); logged to {log}")


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
