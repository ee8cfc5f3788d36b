"""Short seeded runs of every atheris target (default tier), the long runs (slow tier), and the
regressions the fuzzers found.

Each target runs as a subprocess on a *copy* of its corpus (the committed
``tests/fuzz/corpus/<target>/`` seeds and regressions are replayed first, then
mutated), so a default run never writes into the repository. The long run
(``-m slow``) fuzzes for ``ENGRAM_FUZZ_SECONDS`` (default 120) per target and
grows the committed corpus in place. See docs/testing.md ("Fuzzing").
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _instrument import UNDER_TEST
from tiers import lower_priority

from engram.testing.report import write_section

HERE = Path(__file__).resolve().parent
#: target -> executions in the default tier (a few seconds each on this machine)
SHORT_RUNS = {"multi_space_routing": 3000, "rest_decoding": 6000, "proto_decoding": 30000}
MAX_LEN = {"multi_space_routing": 256, "rest_decoding": 1024, "proto_decoding": 512}


def run_target(
    target: str, workdir: Path, corpus: Path, *flags: str, timeout: float = 240, background: bool = False
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
    env["FUZZ_DATA_ROOT"] = str(workdir)  # the target's service data, removed with the work dir
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=lower_priority if background else None)
    return proc.returncode, proc.stdout + proc.stderr


def _executions(output: str) -> int:
    m = re.search(r"Done (\d+) (?:runs )?in", output)
    return int(m.group(1)) if m else 0


def _short_run(target: str, workdir: Path) -> tuple[Path, int, int, str]:
    """(work dir, seed inputs, exit code, output) of the default tier's seeded run of ``target``."""
    corpus = workdir / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)
    seeds = len(list(corpus.iterdir()))
    code, out = run_target(
        target, workdir / "work", corpus, f"-atheris_runs={SHORT_RUNS[target]}", "-seed=1", background=True
    )
    return workdir, seeds, code, out


def background_run(item: pytest.Item) -> tuple[str, Callable[[Path], Any]] | None:
    """For tests/conftest.py: the short run ``item`` checks. The tier starts every selected target's
    run when its first test starts (each is one single-threaded process, so they overlap the tier's
    other tests; same runs, same seed, same executions), and these tests run last."""
    if not isinstance(item, pytest.Function) or item.originalname != "test_short_fuzz_run":
        return None
    target = str(item.callspec.params["target"])
    return f"fuzz_{target}", functools.partial(_short_run, target)


@pytest.mark.parametrize("target", sorted(SHORT_RUNS))
def test_short_fuzz_run(target: str, request: pytest.FixtureRequest, background: Any) -> None:
    tmp_path, seeds, code, out = background.result(request.node)
    tail = "\n".join(ln for ln in out.splitlines() if "Instrumenting" not in ln)[-6000:]
    execs = _executions(out)
    # Coverage instrumentation of the code under test, all of it, and of no other engram module
    # (atheris prints a line per module it instruments).
    instrumented = set(re.findall(r"INFO: Instrumenting (engram\S*)", out))
    under_test = UNDER_TEST[target]
    stray = sorted(m for m in instrumented if not any(m == p or m.startswith(p + ".") for p in under_test))
    missed = [p for p in under_test if not any(m == p or m.startswith(p + ".") for m in instrumented)]
    write_section(
        f"fuzz_{target}",
        [{"name": target, "exit_code": code, "executions": execs, "seed_inputs": seeds,
          "instrumented_modules": len(instrumented),
          "violations": ([f"exit code {code}"] if code else [])
          + ([f"{execs} of {SHORT_RUNS[target]} executions"] if execs < SHORT_RUNS[target] - 1 else [])
          + [f"instrumented outside the code under test: {m}" for m in stray]
          + [f"code under test not instrumented: {p}" for p in missed]}],
    )
    assert code == 0, f"fuzz_{target} found a failure (artifact in {tmp_path / 'work'}):\n{tail}"
    assert execs >= SHORT_RUNS[target] - 1, f"fuzz_{target} did not run to completion:\n{tail}"
    assert not stray, f"fuzz_{target} instrumented modules outside the code under test: {stray}"
    assert not missed, f"fuzz_{target} did not instrument {missed} (under test: {under_test})"


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
