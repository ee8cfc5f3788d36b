"""The validation suite's JSON report: one file per suite section, merged on read.

Each multi-tenant test writes what it checked (name, spaces, transport, how
many ids/events it saw, violations) with :func:`write_section`, on failure as
well as on success. A check passes when it says ``"passed"`` or, more often,
when its ``violations`` are empty; a section passes when every check does and
it has at least one. Nothing in a section is taken on trust: the verdict is
computed here, from the checks.

Files go to ``$ENGRAM_TEST_REPORT_DIR`` or ``<repo>/reports/validation/``
(git-ignored), one ``<section>.json`` each, written atomically. A test run
(``tests/conftest.py``) starts by writing ``run.json`` there: its run id and
the git commit. Every section carries the run id and commit it was written
under, so :func:`merged` can tell a section of *this* run from a file a
previous run left behind. The merged report fails when an expected section is
missing, is stale (another run or commit) or failed.
``python -m engram.testing.report`` prints it and exits 1 unless it passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engram.testing.leaky import KINDS as LEAK_KINDS

RUN_FILE = "run.json"

# What the multi-tenant tier (pytest -m multitenant, part of the default run) writes.
EXPECTED_SECTIONS: tuple[str, ...] = (
    "isolation_matrix",
    "isolation_streams",
    "isolation_health_metrics",
    *(f"leak_demo_{kind}" for kind in LEAK_KINDS),
    "differential",
    "crash_cycles",
    "crash_injected_damage",
    "fuzz_multi_space_routing",
    "fuzz_rest_decoding",
    "fuzz_proto_decoding",
    "load_short",
    "multitenant_tier",
)


def report_dir() -> Path:
    env = os.environ.get("ENGRAM_TEST_REPORT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "reports" / "validation"


def git_commit() -> str:
    """The checkout's commit (``+dirty`` when the tree has changes), or ``unknown`` outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)
    return path


def start_run(run_id: str | None = None) -> dict[str, Any]:
    """Begin a run: record its id and commit in ``run.json`` and return them.

    The id also goes to ``$ENGRAM_TEST_RUN_ID`` so every section this process (and any
    child) writes carries it.
    """
    run: dict[str, Any] = {"run_id": run_id or uuid.uuid4().hex, "commit": git_commit(),
                           "started_at": time.time()}
    os.environ["ENGRAM_TEST_RUN_ID"] = run["run_id"]
    os.environ["ENGRAM_TEST_COMMIT"] = run["commit"]
    _write_json(report_dir() / RUN_FILE, run)
    return run


def current_run() -> dict[str, Any]:
    """The run sections are written under: this process's, else the last ``run.json``."""
    if os.environ.get("ENGRAM_TEST_RUN_ID"):
        return {"run_id": os.environ["ENGRAM_TEST_RUN_ID"],
                "commit": os.environ.get("ENGRAM_TEST_COMMIT") or git_commit()}
    try:
        run = json.loads((report_dir() / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {"run_id": None, "commit": None}
    return {"run_id": run.get("run_id"), "commit": run.get("commit")}


def check_passed(check: dict[str, Any]) -> bool:
    """A check passes when it has no violations and no error, and does not say it failed."""
    return bool(check.get("passed", True)) and not check.get("violations") and not check.get("error")


def write_section(section: str, checks: Iterable[dict[str, Any]], **summary: Any) -> Path:
    checks = [{**c, "passed": check_passed(c)} for c in checks]
    failed = [c for c in checks if not c["passed"]]
    run = current_run()
    doc = {
        **summary,
        "section": section,
        "run_id": run["run_id"],
        "commit": run["commit"],
        "written_at": time.time(),
        "checks": checks,
        "total": len(checks),
        "failed": len(failed),
        "passed": bool(checks) and not failed,  # a section that checked nothing proves nothing
    }
    return _write_json(report_dir() / f"{section}.json", doc)


def merged(expected: Iterable[str] = EXPECTED_SECTIONS, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every section of ``run`` (default: :func:`current_run`), judged.

    Fails when a section in ``expected`` is missing or stale, or when any section of this
    run failed. A stale section not in ``expected`` (a slow-tier file from an earlier run)
    is listed under ``ignored_stale`` and does not count.
    """
    run = run or current_run()
    expected = list(expected)
    sections: dict[str, Any] = {}
    problems: list[str] = []
    ignored: list[str] = []
    for p in sorted(report_dir().glob("*.json")):
        if p.name == RUN_FILE:
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{p.stem}: unreadable ({exc})")
            continue
        stale = doc.get("run_id") != run["run_id"] or doc.get("commit") != run["commit"]
        if stale and p.stem not in expected:
            ignored.append(p.stem)
            continue
        # Recompute the verdict from the checks rather than trust the file's "passed".
        checks = doc.get("checks") or []
        ok = bool(checks) and all(check_passed(c) for c in checks)
        if stale:
            problems.append(f"{p.stem}: stale (run {doc.get('run_id')}, commit {doc.get('commit')})")
        elif not ok:
            problems.append(f"{p.stem}: failed")
        sections[p.stem] = {**doc, "passed": ok and not stale, "stale": stale}
    problems += [f"{name}: missing" for name in expected if name not in sections]
    return {**run, "expected": expected, "sections": sections, "ignored_stale": ignored,
            "problems": problems, "passed": not problems}


def main() -> int:
    report = merged()
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
