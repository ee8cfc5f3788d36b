"""Bounded load over 10 spaces (scripts/load.py): no errors, no isolation violations, no unbounded
growth of server RSS / file descriptors / threads.

The default tier's run is sized by work, not time: 4,000 requests (12 workers, REST and gRPC,
every operation kind, an SSE and a gRPC stream per space; the old 10 s run made ~3,700 at load
~4), the server sampled every 250 completed requests (17 samples; the growth check compares the
last third of them with the middle third). It runs in the background from the tier's first test
(tests/conftest.py) and is checked last. ``-m slow`` runs ``ENGRAM_LOAD_SECONDS`` (default 60) of
load sampled every second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiers import lower_priority

from engram.testing.report import write_section

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "load.py"
SHORT_REQUESTS = 4000
SHORT_SAMPLE_EVERY = 250


def run_load(
    workdir: Path, *sizing: str, background: bool = False
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = workdir / "load.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *sizing, "--spaces", "10", "--concurrency", "12", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
        preexec_fn=lower_priority if background else None,
    )
    return proc, out


def check_load(proc: subprocess.CompletedProcess[str], out: Path, section: str) -> dict[str, Any]:
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    write_section(
        section,
        [{"name": "load", "passed": result["passed"],
          **{k: v for k, v in result.items() if k not in ("samples", "latency")}}],
    )
    assert not result["errors"], result["error_samples"]
    assert not result["isolation_violations"], result["isolation_violations"]
    assert result["growth"]["ok"], result["growth"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    return result


def background_run(item: pytest.Item) -> tuple[str, Callable[[Path], Any]] | None:
    """For tests/conftest.py: the short run starts with the tier and is checked last."""
    if not isinstance(item, pytest.Function) or item.originalname != "test_load_short":
        return None
    sizing = ("--requests", str(SHORT_REQUESTS), "--sample-every-requests", str(SHORT_SAMPLE_EVERY))
    return "load_short", lambda workdir: run_load(workdir, *sizing, background=True)


def test_load_short(request: pytest.FixtureRequest, background: Any) -> None:
    result = check_load(*background.result(request.node), "load_short")
    # It must actually have been load: the asked requests, every operation kind, across REST and
    # gRPC, with events flowing; and the server sampled all along (the growth check needs them).
    assert result["requests"] >= SHORT_REQUESTS, result["ops"]
    assert {"remember", "recall", "get", "forget", "list"} <= set(result["ops"])
    assert result["events_received"] > 0
    assert result["samples_taken"] == 1 + result["requests"] // SHORT_SAMPLE_EVERY, result["growth"]
    assert "rss_mb" in result["growth"], result["growth"]  # compared, not "only n samples"


@pytest.mark.slow
def test_load_long(tmp_path: Path) -> None:
    check_load(*run_load(tmp_path, "--seconds", os.environ.get("ENGRAM_LOAD_SECONDS", "60")), "load_long")
