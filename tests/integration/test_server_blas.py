"""A started server caps numpy's BLAS at ``blas_threads`` (its own threadpoolctl report, logged)."""

from __future__ import annotations

import json
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
