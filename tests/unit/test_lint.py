"""The code stays lint-clean and typed (STYLE.md habit 7): ruff over src, tests and scripts,
mypy --strict over the ``engram`` package, both as configured in pyproject.toml.

Both run as subprocesses of this interpreter, so they are the versions pinned in the ``test``
extra. mypy gets a fresh cache directory, so this measures what CI sees (a cold run, a few
seconds); to run them by hand: ``.venv/bin/ruff check src tests scripts`` and ``.venv/bin/mypy``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )


def test_ruff_clean() -> None:
    proc = _run("ruff", "check", "--no-cache", "src", "tests", "scripts")
    assert proc.returncode == 0, f"ruff check src tests scripts:\n{proc.stdout}{proc.stderr}"


def test_mypy_strict_clean(tmp_path: Path) -> None:
    proc = _run("mypy", "--cache-dir", str(tmp_path / "mypy-cache"))
    assert proc.returncode == 0, f"mypy (see [tool.mypy] in pyproject.toml):\n{proc.stdout}{proc.stderr}"
