"""kill -9 a process writing to several spaces; every acknowledged write must come back, in its own space.

The child (``engine_writer.py``) prints one line per acknowledged write. The parent
reads lines until a random number have arrived, SIGKILLs the child, and reopens
the data root. Reading the pipe is the synchronisation: no sleeps.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engram.cognition.recall import recall
from engram.core.models import Cue, MemoryInput
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry

HERE = Path(__file__).resolve().parent
SPACES = ["crash-a", "crash-b", "crash-c"]


Acks = dict[str, set[str]]


def run_and_kill(data_dir: Path, seed: int) -> tuple[Acks, Acks]:
    """Start the writer, SIGKILL it after a random number of acks.

    Returns ``(acked, deleted)`` per space. ``deleted`` holds acknowledged
    deletes under their id and deletes that had started (may or may not have
    committed) under ``"?" + id``.
    """
    rnd = random.Random(seed)
    kill_after = rnd.randint(30, 600)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "engine_writer.py"), str(data_dir), str(seed), *SPACES],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acked: dict[str, set[str]] = {s: set() for s in SPACES}
    deleted: dict[str, set[str]] = {s: set() for s in SPACES}
    assert proc.stdout is not None
    seen = 0
    try:
        while seen < kill_after:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"writer exited early: {err[-2000:]}")
            seen += _record(line, acked, deleted)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        # Read the rest through the same buffered reader: readline() may already hold
        # complete lines in its buffer, which communicate() (reading the raw fd) would
        # drop - a lost "TRY" line once made a committed delete look like a lost write.
        rest = proc.stdout.read()
        if proc.stderr is not None:
            proc.stderr.read()
        proc.wait()
    # Lines already written before the kill are acknowledged too; a torn last line is not.
    for line in rest.splitlines(keepends=True):
        if line.endswith(b"\n"):
            _record(line, acked, deleted)
    assert proc.returncode == -signal.SIGKILL
    return acked, deleted


def _record(line: bytes, acked: dict[str, set[str]], deleted: dict[str, set[str]]) -> int:
    kind, space, mid = line.decode().split()
    if kind == "ACK":
        acked[space].add(mid)
    elif kind == "TRY":
        deleted[space].add("?" + mid)
    else:
        deleted[space].add(mid)
    return 1


def reopen(data_dir: Path) -> SpaceRegistry:
    return SpaceRegistry(
        load_settings(overrides={"data_dir": data_dir, "exact_search_max": 40}, use_env=False)
    )


def check_recovered(reg: SpaceRegistry, acked: dict[str, set[str]], deleted: dict[str, set[str]],
                    spaces: list[str]) -> None:
    for space in spaces:
        sp = reg.get(space)
        assert sp.healthy, sp.unhealthy_reason
        page = sp.list(limit=100_000, include_suppressed=True)
        have = {m.id: m.content for m in page.memories}
        maybe_gone = {d[1:] for d in deleted[space] if d.startswith("?")}
        done_deletes = {d for d in deleted[space] if not d.startswith("?")}
        missing = acked[space] - maybe_gone - have.keys()
        assert not missing, f"{len(missing)} acknowledged writes lost in {space}: {sorted(missing)[:5]}"
        assert not (done_deletes & have.keys()), "a deleted memory came back"
        # In its own space and in no other: ids and contents carry their space's name.
        assert all(mid.startswith(space + "-") and c.startswith(space + " ") for mid, c in have.items())
        # Derived state is consistent too: recall by embedding finds a sample of them.
        sample = sorted(acked[space] - maybe_gone)[:15]
        for mid in sample:
            mem = sp.get(mid)
            assert mem.embedding is not None
            res = recall(sp, Cue(embedding=mem.embedding, max_results=3))
            assert res.memories.vivid and res.memories.vivid[0].memory.id == mid
        assert sp.ann is not None and sp.ann.wait_caught_up(60)
        sp.remember(MemoryInput(content=f"{space} after recovery"))  # and it accepts writes


def one_round(tmp_path: Path, seed: int) -> None:
    data_dir = tmp_path / f"seed{seed}"
    acked, deleted = run_and_kill(data_dir, seed)
    assert sum(len(v) for v in acked.values()) >= 30
    reg = reopen(data_dir)
    try:
        check_recovered(reg, acked, deleted, SPACES)
    finally:
        reg.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill9_recovers_every_acknowledged_write(tmp_path: Path, seed: int) -> None:
    one_round(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 40))
def test_kill9_soak(tmp_path: Path, seed: int) -> None:
    one_round(tmp_path, seed)


def test_kill9_twice_in_a_row(tmp_path: Path) -> None:
    """Recovery of a recovered root: acks of both runs survive."""
    data_dir = tmp_path / "twice"
    acked1, deleted1 = run_and_kill(data_dir, 7)
    acked2, deleted2 = run_and_kill(data_dir, 8)  # ids carry the seed: the runs never collide
    acked = {s: acked1[s] | acked2[s] for s in SPACES}
    deleted = {s: deleted1[s] | deleted2[s] for s in SPACES}
    reg = reopen(data_dir)
    try:
        check_recovered(reg, acked, deleted, SPACES)
    finally:
        reg.close()


def test_torn_wal_tail_after_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "torn"
    acked, deleted = run_and_kill(data_dir, 21)
    wal = data_dir / "crash-b" / "space.db-wal"
    if wal.exists() and wal.stat().st_size > 8192:
        with open(wal, "r+b") as f:
            f.truncate(wal.stat().st_size - 3000)  # tear the last frame(s)
    reg = reopen(data_dir)
    try:
        check_recovered(reg, acked, deleted, ["crash-a", "crash-c"])
        torn = reg.get("crash-b")
        assert torn.healthy
        have = {m.id for m in torn.list(limit=100_000, include_suppressed=True).memories}
        assert all(mid.startswith("crash-b-") for mid in have)
        assert len(have) > 0
    finally:
        reg.close()


def test_corrupt_space_is_unhealthy_and_others_serve(tmp_path: Path) -> None:
    data_dir = tmp_path / "corrupt"
    acked, deleted = run_and_kill(data_dir, 31)
    # Fold the WAL into the database first so the damage hits committed pages.
    probe = reopen(data_dir)
    for space in SPACES:
        probe.get(space)
    probe.close()
    assert not (data_dir / "crash-a" / "space.db-wal").exists() or \
        (data_dir / "crash-a" / "space.db-wal").stat().st_size == 0
    db = data_dir / "crash-a" / "space.db"
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(min(4096, size // 2))
        f.write(os.urandom(max(4096, size // 2)))
    reg = reopen(data_dir)
    try:
        bad = reg.get("crash-a")
        assert not bad.healthy
        assert reg.describe("crash-a").healthy is False
        check_recovered(reg, acked, deleted, ["crash-b", "crash-c"])
    finally:
        reg.close()

