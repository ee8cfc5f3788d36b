"""The validation suite's JSON report: one file per suite section, merged on read.

Each multi-tenant test writes what it checked (name, spaces, transport, how
many ids/events it saw, violations, pass/fail) with :func:`write_section`.
Files go to ``$ENGRAM_TEST_REPORT_DIR`` or ``<repo>/reports/validation/``
(git-ignored), one ``<section>.json`` each, written atomically so concurrent
test runs never leave a half-written file. ``python -m engram.testing.report``
prints the merged report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def report_dir() -> Path:
    env = os.environ.get("ENGRAM_TEST_REPORT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "reports" / "validation"


def write_section(section: str, checks: Iterable[dict[str, Any]], **summary: Any) -> Path:
    checks = list(checks)
    failed = [c for c in checks if not c.get("passed", not c.get("violations"))]
    doc = {
        "section": section,
        "written_at": time.time(),
        "checks": checks,
        "total": len(checks),
        "failed": len(failed),
        "passed": not failed,
        **summary,
    }
    out = report_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{section}.json"
    tmp = out / f".{section}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)
    return path


def merged() -> dict[str, Any]:
    sections = {}
    for p in sorted(report_dir().glob("*.json")):
        try:
            sections[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return {"sections": sections, "passed": all(s.get("passed") for s in sections.values())}


if __name__ == "__main__":
    json.dump(merged(), sys.stdout, indent=2)
    print()
