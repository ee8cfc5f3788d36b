#!/usr/bin/env python3
"""Set up Engram in ./.venv (once, and again when pyproject.toml changes), then run it.

    python3 run.py start [engram start options]   # the server, on its embedded default
    python3 run.py test  [pytest options]         # the default (fast) test tiers
    python3 run.py bench [bench options]          # the benchmark suite
    python3 run.py engram ...                     # any engram CLI command

Only the standard library is used here, so this works on a machine that has
nothing but Python 3.11.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".engram-install-stamp"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted_stamp(extras: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest}:{extras}"


def ensure_env(extras: str = "local,test") -> Path:
    py = _venv_python()
    if not py.exists():
        # stderr, like pip's output below: `run.py engram mcp` keeps stdout for the MCP protocol only
        print(f"[run.py] creating virtual environment in {VENV}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    have = STAMP.read_text().strip() if STAMP.exists() else ""
    want = _wanted_stamp(extras)
    if have != want:
        print(f"[run.py] installing engram[{extras}] into {VENV}", file=sys.stderr, flush=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True,
                       stdout=sys.stderr)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]"], check=True, cwd=ROOT,
            stdout=sys.stderr,
        )
        STAMP.write_text(want)
    return py


def _exec(py: Path, args: list[str]) -> int:
    """Replace this process with the command (run from the repository root), so that
    signals (Ctrl-C, SIGTERM from a supervisor) reach the server itself and its exit
    code is ours."""
    os.chdir(ROOT)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # no exec semantics worth having there: wait for the child instead
        return subprocess.call([str(py), *args])
    os.execv(str(py), [str(py), *args])
    return 1  # not reached


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "start":
        return _exec(ensure_env(), ["-m", "engram", "start", *rest])
    if command == "test":
        return _exec(ensure_env(), ["-m", "pytest", *rest])
    if command == "bench":
        return _exec(ensure_env("local,test,bench"), [str(ROOT / "bench" / "run.py"), *rest])
    if command == "engram":
        return _exec(ensure_env(), ["-m", "engram", *rest])
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
