"""The multi-tenant tier runs as one block at the end of a run, the tests that check its background
runs (short fuzz, short load) last within it, so those runs overlap the tier's other tests
(tests/conftest.py). Checked on a real collection, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = ["tests/fuzz/test_fuzz_short.py", "tests/integration/test_load_short.py",
         "tests/integration/test_differential.py", "tests/unit/test_ids.py"]


def collected(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:schemathesis",
                          *args, *FILES], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [ln for ln in out.stdout.splitlines() if "::" in ln]


def test_the_tier_is_one_block_at_the_end_with_background_checks_last() -> None:
    ids = collected()
    in_tier = [not n.startswith("tests/unit/") for n in ids]
    assert in_tier == sorted(in_tier), ids  # every other test before the tier's first
    checks = [n for n in ids if "test_short_fuzz_run[" in n or n.endswith("::test_load_short")]
    assert len(checks) == 4, ids
    assert ids[-len(checks):] == checks, ids  # the background runs' checks close the run
    assert any("test_differential" in n for n in ids[: -len(checks)])


def test_a_tier_run_collects_the_same_order() -> None:
    ids = collected("-m", "multitenant")
    assert not any(n.startswith("tests/unit/") for n in ids), ids
    assert ids[-4:] == [n for n in ids if "test_short_fuzz_run[" in n or n.endswith("::test_load_short")]
