#!/usr/bin/env python3
"""Set up Engram in ./.venv (once, and again when pyproject.toml changes), then run it.

    python3 run.py start [engram start options]   # the server, on its embedded default
    python3 run.py test  [pytest options]         # the default (fast) test tiers
    python3 run.py test --tier multitenant        # one tier: pytest -m multitenant over its files
    python3 run.py bench [bench options]          # the benchmark suite
    python3 run.py engram ...                     # any engram CLI command

`start` and `engram` run in your current directory (relative paths such as
--data-dir ./x or a backup FILE are yours) and install only what the server
needs; `test` and `bench` run in the repository root and add the test tools.

Only the standard library is used here, so this works on a machine that has
nothing but Python 3.11.
"""

from __future__ import annotations

import hashlib
import os
import runpy
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".engram-install-stamp"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# What each command installs (pyproject.toml extras): the server and the CLI need no test tools.
EXTRAS = {"start": "local", "engram": "local", "test": "local,test", "bench": "local,test,bench"}
ARGS = {"start": ["-m", "engram", "start"], "engram": ["-m", "engram"], "test": ["-m", "pytest"],
        "bench": [str(ROOT / "bench" / "run.py")]}


def _pyproject_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def _read_stamp(text: str) -> tuple[str, frozenset[str]]:
    """``(pyproject digest, extras installed)`` from a stamp; ``("", {})`` when there is none.

    The stamp is ``<digest>:<extra>,<extra>...`` (the format older run.py versions wrote too).
    """
    digest, _, extras = text.strip().partition(":")
    return digest, frozenset(e for e in extras.split(",") if e)


def plan_install(stamp: str, digest: str, wanted: frozenset[str]) -> frozenset[str] | None:
    """The extras to install now, or None when the environment already has what is wanted.

    Extras accumulate: once ``test`` has installed the test tools, ``start`` (which wants
    only ``local``) finds them a superset and installs nothing, and ``test`` after ``start``
    installs once. A changed pyproject.toml reinstalls everything that was there, plus
    what is wanted, so switching commands never flip-flops between installs.
    """
    have_digest, have = _read_stamp(stamp)
    if have_digest == digest and wanted <= have:
        return None
    return wanted | have


def ensure_env(extras: str) -> Path:
    py = _venv_python()
    if not py.exists():
        # stderr, like pip's output below: `run.py engram mcp` keeps stdout for the MCP protocol only
        print(f"[run.py] creating virtual environment in {VENV}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = _pyproject_digest()
    install = plan_install(STAMP.read_text() if STAMP.exists() else "", digest, frozenset(extras.split(",")))
    if install is not None:
        names = ",".join(sorted(install))
        print(f"[run.py] installing engram[{names}] into {VENV}", file=sys.stderr, flush=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True,
                       stdout=sys.stderr)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-e", f"{ROOT}[{names}]"], check=True, cwd=ROOT,
            stdout=sys.stderr,
        )
        STAMP.write_text(f"{digest}:{names}")
    return py


def workdir(command: str) -> Path:
    """Where a command runs: ``start`` and ``engram`` in the caller's directory, so relative
    paths (``--data-dir``, ``--config``, import/export and backup/restore files, the default
    ``./engram-data``) mean what they mean to the caller's shell; ``test`` and ``bench`` in the
    repository root, where their configuration and relative test paths live."""
    return Path.cwd() if command in ("start", "engram") else ROOT


def _exec(py: Path, args: list[str], cwd: Path) -> int:
    """Replace this process with the command (run in ``cwd``), so that signals (Ctrl-C,
    SIGTERM from a supervisor) reach the server itself and its exit code is ours."""
    os.chdir(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # no exec semantics worth having there: wait for the child instead
        return subprocess.call([str(py), *args])
    os.execv(str(py), [str(py), *args])
    return 1  # not reached


def _tiers() -> dict[str, Any]:
    """tests/tiers.py's names (it is standard library only, so it loads before the venv exists)."""
    return runpy.run_path(str(ROOT / "tests" / "tiers.py"))


def tier_args(rest: list[str]) -> list[str]:
    """``--tier NAME`` (test only) is pytest's ``-m NAME`` (the tiers are pytest markers) over only
    the tier's files (tests/tiers.py), without the pytest plugins it does not use: collecting the
    whole suite and loading schemathesis were seconds of every tier run."""
    if "--tier" not in rest:
        return rest
    i = rest.index("--tier")
    name = rest[i + 1] if i + 1 < len(rest) else ""
    tiers = _tiers()
    if name not in tiers["TIERS"]:
        raise SystemExit(f"unknown tier {name!r}: one of {', '.join(sorted(tiers['TIERS']))}")
    plugins = [a for p in tiers["TIER_DISABLED_PLUGINS"] for a in ("-p", f"no:{p}")]
    others = [*rest[:i], *rest[i + 2:]]
    # Paths given (`--tier multitenant tests/fuzz/test_fuzz_short.py`) narrow the tier to them.
    named = any((ROOT / a.split("::")[0]).exists() for a in others if a and not a.startswith("-"))
    return [*rest[:i], "-m", name, *plugins, *rest[i + 2:], *([] if named else tiers["TIERS"][name])]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "test":
        rest = tier_args(rest)
    if command in EXTRAS:
        return _exec(ensure_env(EXTRAS[command]), [*ARGS[command], *rest], workdir(command))
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
