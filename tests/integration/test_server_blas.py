"""A started server caps numpy's BLAS at ``blas_threads`` (its own threadpoolctl report, logged)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engram.testing.harness import EngramProcess


def test_a_started_server_applies_it(tmp_path: Path) -> None:
    for wanted in (1, 2):
        srv = EngramProcess.start(tmp_path / f"s{wanted}", settings={"blas_threads": wanted})
        try:
            lines = [json.loads(line) for line in srv.logs().splitlines() if '"blas threads"' in line]
        finally:
            srv.stop()
        assert len(lines) == 1, srv.logs()[-2000:]
        assert lines[0]["requested"] == wanted
        assert lines[0]["libraries"] and {n for _api, n in lines[0]["libraries"]} == {wanted}


def test_a_started_server_tunes_its_garbage_collector(tmp_path: Path) -> None:
    """``gc_young_threshold``: the started server logs the thresholds in force and what it froze."""
    for wanted in (50_000, 0):
        srv = EngramProcess.start(tmp_path / f"g{wanted}", settings={"gc_young_threshold": wanted})
        try:
            lines = [json.loads(line) for line in srv.logs().splitlines() if '"gc thresholds"' in line]
        finally:
            srv.stop()
        assert len(lines) == 1, srv.logs()[-2000:]
        if wanted:
            assert lines[0]["thresholds"][0] == wanted and lines[0]["frozen"] > 1_000
        else:
            assert lines[0]["thresholds"][0] == 700 and lines[0]["frozen"] == 0


def test_a_space_open_at_start_is_not_kept_frozen_after_it_is_unloaded(tmp_path: Path) -> None:
    """The spaces open when the server froze its start-up's objects: once one is unloaded (idle),
    the maintenance loop undoes the freeze, so the closed space can be collected."""
    srv = EngramProcess.start(tmp_path / "s", settings={"bootstrap_spaces": "boot",
                                                        "space_idle_unload_seconds": 1.0})
    try:
        deadline = time.monotonic() + 30
        while '"space unloaded (idle)"' not in srv.logs() or "no longer frozen" not in srv.logs():
            assert time.monotonic() < deadline, srv.logs()[-3000:]
            time.sleep(0.2)
        lines = srv.logs().splitlines()
        unloaded = next(i for i, line in enumerate(lines) if '"space unloaded (idle)"' in line)
        released = [i for i, line in enumerate(lines) if "no longer frozen" in line]
        assert len(released) == 1 and released[0] > unloaded
    finally:
        srv.stop()
