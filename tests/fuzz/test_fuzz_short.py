"""Short seeded runs of every atheris target (default tier), the long runs (slow tier), and the
regressions the fuzzers found.

Each target runs as a subprocess on a *copy* of its corpus (the committed
``tests/fuzz/corpus/<target>/`` seeds and regressions are replayed first, then
mutated), so a default run never writes into the repository. The long run
(``-m slow``) fuzzes for ``ENGRAM_FUZZ_SECONDS`` (default 120) per target and
grows the committed corpus in place. See docs/testing.md ("Fuzzing").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engram.testing.report import write_section

HERE = Path(__file__).resolve().parent
#: target -> executions in the default tier (a few seconds each on this machine)
SHORT_RUNS = {"multi_space_routing": 3000, "rest_decoding": 6000, "proto_decoding": 30000}
MAX_LEN = {"multi_space_routing": 256, "rest_decoding": 1024, "proto_decoding": 512}
#: CPU seconds of each short run on the 2-core machine (start-up ~1.5-5.5 s of it): the order to start them
SHORT_RUNS_CPU = {"multi_space_routing": 20, "rest_decoding": 10, "proto_decoding": 2}


def run_target(
    target: str, workdir: Path, corpus: Path, *flags: str, timeout: float = 240
) -> tuple[int, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        str(corpus),
        f"-max_len={MAX_LEN[target]}",
        f"-artifact_prefix={workdir}/",
        *flags,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _executions(output: str) -> int:
    m = re.search(r"Done (\d+) (?:runs )?in", output)
    return int(m.group(1)) if m else 0


def _short_run(target: str, tmp_path: Path) -> tuple[int, int, str]:
    """(seed inputs, exit code, output) of the default tier's seeded run of ``target``."""
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)
    seeds = len(list(corpus.iterdir()))
    code, out = run_target(
        target, tmp_path / "work", corpus, f"-atheris_runs={SHORT_RUNS[target]}", "-seed=1"
    )
    return seeds, code, out


@pytest.fixture(scope="module")
def short_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Path, Future[Any]]]]:
    """The selected targets' short runs, started at once: each is one single-threaded process, so
    on two cores they overlap instead of queueing (same runs, same seed, same executions)."""
    selected: set[str] = {str(item.callspec.params["target"]) for item in request.session.items
                if isinstance(item, pytest.Function) and item.originalname == "test_short_fuzz_run"}
    with ThreadPoolExecutor(len(SHORT_RUNS)) as pool:
        runs: dict[str, tuple[Path, Future[Any]]] = {}
        for target in sorted(selected, key=lambda t: -SHORT_RUNS_CPU[t]):  # the longest first
            tmp = tmp_path_factory.mktemp(f"fuzz-{target}")
            runs[target] = (tmp, pool.submit(_short_run, target, tmp))
        yield runs


@pytest.mark.parametrize("target", sorted(SHORT_RUNS))
def test_short_fuzz_run(target: str, short_runs: dict[str, tuple[Path, Future[Any]]]) -> None:
    tmp_path, run = short_runs[target]
    seeds, code, out = run.result()
    tail = "\n".join(ln for ln in out.splitlines() if "Instrumenting" not in ln)[-6000:]
    execs = _executions(out)
    write_section(
        f"fuzz_{target}",
        [{"name": target, "exit_code": code, "executions": execs, "seed_inputs": seeds,
          "violations": ([f"exit code {code}"] if code else [])
          + ([f"{execs} of {SHORT_RUNS[target]} executions"] if execs < SHORT_RUNS[target] - 1 else [])}],
    )
    assert code == 0, f"fuzz_{target} found a failure (artifact in {tmp_path / 'work'}):\n{tail}"
    assert execs >= SHORT_RUNS[target] - 1, f"fuzz_{target} did not run to completion:\n{tail}"


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(SHORT_RUNS))
def test_long_fuzz_run(target: str, tmp_path: Path) -> None:
    seconds = int(os.environ.get("ENGRAM_FUZZ_SECONDS", "120"))
    code, out = run_target(
        target,
        tmp_path / "work",
        HERE / "corpus" / target,
        f"-max_total_time={seconds}",
        timeout=seconds + 120,
    )
    write_section(
        f"fuzz_{target}_long",
        [{"name": target, "passed": code == 0, "executions": _executions(out), "seconds": seconds}],
    )
    assert code == 0, out[-6000:]


# ----------------------------------------------------------------------------- regressions found by fuzzing


def test_regression_embedding_beyond_float32_is_rejected(tmp_path: Path) -> None:
    """fuzz_rest_decoding: 1e39 passed validation, was stored as Infinity and read back as null."""
    from engram.core.models import MemoryInput

    with pytest.raises(ValueError, match="32-bit"):
        MemoryInput(content="x", embedding=[1e39, 1.0])
    MemoryInput(content="x", embedding=[3.0e38, 1.0])  # the largest float32 values are fine


def test_regression_out_of_range_timestamp_is_invalid_argument() -> None:
    """fuzz_proto_decoding: a Timestamp outside 0001..9999 raised ValueError -> gRPC INTERNAL."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from engram.api.grpc import convert
    from engram.api.grpc.gen import memory_pb2 as pb
    from engram.errors import InvalidInput

    with pytest.raises(InvalidInput, match="time_start"):
        convert.cue(pb.Cue(query="x", time_start=Timestamp(seconds=10**15)))
    with pytest.raises(InvalidInput, match="when"):
        convert.episode_input(pb.EpisodeInput(what="x", when=Timestamp(seconds=-(10**15))))
