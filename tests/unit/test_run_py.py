"""run.py: which extras each command installs (and when it installs nothing), and where commands run.

The install plan is a pure function of the stamp, so it is tested directly; the working
directory is tested through a real ``python3 run.py engram`` from another directory, which must
also find the environment complete (no install) when the stamp says so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engram_run_py", ROOT / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCAL = frozenset({"local"})
TEST = frozenset({"local", "test"})
BENCH = frozenset({"local", "test", "bench"})


def test_start_on_a_fresh_checkout_installs_no_test_tools(run_py: ModuleType) -> None:
    assert run_py.EXTRAS["start"] == run_py.EXTRAS["engram"] == "local"
    assert run_py.EXTRAS["test"] == "local,test"
    assert run_py.plan_install("", "d1", LOCAL) == LOCAL
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [d for d in extras["local"] if d.startswith(("pytest", "hypothesis", "schemathesis"))]
    assert any(d.startswith("pytest") for d in extras["test"])


def test_test_after_start_adds_the_test_tools_once(run_py: ModuleType) -> None:
    assert run_py.plan_install("d1:local", "d1", TEST) == TEST
    assert run_py.plan_install("d1:local,test", "d1", TEST) is None


def test_switching_commands_never_reinstalls(run_py: ModuleType) -> None:
    for stamp in ("d1:local,test", "d1:test,local", "d1:bench,local,test"):
        assert run_py.plan_install(stamp, "d1", LOCAL) is None, stamp
        assert run_py.plan_install(stamp, "d1", TEST) is None, stamp
    assert run_py.plan_install("d1:local,test", "d1", BENCH) == BENCH


def test_a_changed_pyproject_reinstalls_what_was_there(run_py: ModuleType) -> None:
    assert run_py.plan_install("d1:local,test", "d2", LOCAL) == TEST
    assert run_py.plan_install("d1:local", "d2", LOCAL) == LOCAL


def test_start_and_engram_run_where_the_caller_is(run_py: ModuleType, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_py.workdir("start") == tmp_path
    assert run_py.workdir("engram") == tmp_path
    assert run_py.workdir("test") == ROOT
    assert run_py.workdir("bench") == ROOT


def test_engram_through_run_py_from_another_directory(tmp_path: Path) -> None:
    """A relative --data-dir is the caller's: ``stop`` finds (and removes) the stale state file there."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state = tmp_path / "mine" / "engram.state.json"
    state.parent.mkdir()
    state.write_text(f'{{"pid": {gone.pid}, "http_port": 1}}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "engram", "stop", "--data-dir", "./mine"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    said = out.stdout + out.stderr
    assert "[run.py] installing" not in said  # the test environment has everything `engram` needs
    assert out.returncode == 3 and f"server pid {gone.pid} is not running; removing stale" in said, said
    assert not state.exists()


def test_tier_is_a_marker_selection_over_its_files(run_py: ModuleType) -> None:
    from tiers import MULTITENANT_FILES  # tests/tiers.py, on the path through tests/conftest.py

    assert run_py.tier_args(["--tier", "multitenant", "-q"]) == [
        "-m", "multitenant", "-p", "no:schemathesis", "-q", *MULTITENANT_FILES]
    assert run_py.tier_args(["tests/unit", "-x"]) == ["tests/unit", "-x"]
    assert all((ROOT / f).is_file() for f in MULTITENANT_FILES)
    # a path given narrows the tier to it; an option's value (-k load) is no path
    one = "tests/integration/test_load_short.py::test_load_short"
    assert run_py.tier_args(["--tier", "multitenant", one]) == [
        "-m", "multitenant", "-p", "no:schemathesis", one]
    assert run_py.tier_args(["--tier", "multitenant", "-k", "load"])[-len(MULTITENANT_FILES):] == list(
        MULTITENANT_FILES)
    with pytest.raises(SystemExit, match="unknown tier 'nope'"):
        run_py.tier_args(["--tier", "nope"])


def test_export_and_import_files_are_the_callers(tmp_path: Path) -> None:
    """``run.py engram memory export out.jsonl`` writes into the caller's directory, and import reads
    a relative file from there too (not from the repository, where run.py lives)."""
    from engram.client import EngramClient
    from engram.testing import EngramProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    work = tmp_path / "work"
    work.mkdir()
    with EngramProcess.start(tmp_path / "srv", spaces=["alpha", "beta"]) as srv:
        with EngramClient(srv.http_url, space="alpha") as mem:
            mem.remember("exported through run.py", id="rel-1")

        def engram(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, str(ROOT / "run.py"), "engram", *args, "--url", srv.http_url,
                   "--no-progress"]
            return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=120)

        out = engram("memory", "export", "out.jsonl", "--space", "alpha")
        assert out.returncode == 0, out.stderr
        assert (work / "out.jsonl").exists() and not (ROOT / "out.jsonl").exists()
        assert "rel-1" in (work / "out.jsonl").read_text()
        back = engram("memory", "import", "out.jsonl", "--space", "beta")
        assert back.returncode == 0, back.stderr
        with EngramClient(srv.http_url, space="beta") as mem:
            assert mem.get("rel-1").content == "exported through run.py"
        srv.stop()
