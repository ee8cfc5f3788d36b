"""The change logs read workers' copies are brought forward with (index.changes, LocalDensity):
a copy replaying the recorded changes ends exactly as the set that recorded them."""

from __future__ import annotations

import numpy as np
import pytest

import engram.index.changes as changes
from engram.index.changes import ChangeLog
from engram.index.density import LocalDensity
from engram.index.vector import VectorSet


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _near(rng: np.random.Generator, n: int) -> list[tuple[int, float]]:
    return [(int(o), float(s)) for o, s in zip(rng.integers(0, n, 6), rng.random(6), strict=True)]


def _rows(vs: VectorSet) -> list[tuple[int, bytes, int]]:
    """Every live row in its order: key, float16 bytes, sequence number."""
    out = []
    for vec, keys, seq, _lsn, alive, n in vs.views():
        for i in range(n):
            if alive[i]:
                out.append((int(keys[i]), vec[i].astype(np.float16).tobytes(), int(seq[i])))
    return out


@pytest.mark.parametrize("float32_max", [20_000, 100])
def test_replaying_the_log_gives_the_same_rows_in_the_same_order(float32_max: int) -> None:
    rng = np.random.default_rng(1)
    server, copy = VectorSet(16, float32_max), VectorSet(16, float32_max)
    base = _unit(rng, 300)
    server.add_many(np.arange(300), base)
    copy.add_many(np.arange(300), base)
    log = server.changes = ChangeLog()
    log.begin(7, idle=True)
    epoch = 7
    for step in range(40):  # adds one by one and in runs, replacements, removals (compactions)
        epoch += 1
        if step % 3 == 0:
            server.add_many(np.arange(400 + step * 5, 405 + step * 5), _unit(rng, 5), epoch)
        elif step % 3 == 1:
            server.add(int(rng.integers(0, 300)), _unit(rng, 1)[0], epoch)  # replaces a key
        else:
            for key in rng.choice(300, 8, replace=False).tolist():
                server.remove(int(key), epoch)
        log.seal(epoch)
    ops = log.since(7, epoch)
    assert ops is not None
    copy.replay(ops)
    assert _rows(copy) == _rows(server)
    q = _unit(rng, 1)[0]
    assert copy.search_exact(q, 25) == server.search_exact(q, 25)


def test_a_range_is_given_only_whole() -> None:
    log = ChangeLog()
    log.begin(10, idle=False)  # a commit may be half recorded: 11 is not complete
    log.seal(11)
    log.seal(12)
    log.seal(13)
    assert log.since(10, 13) is None
    assert log.since(11, 13) == []
    assert log.since(11, 14) is None  # not sealed yet
    assert log.reaches(11) and not log.reaches(10)
    log.seal(15)  # a gap: nothing before is usable
    assert log.since(13, 15) is None and log.since(14, 15) is None and log.since(15, 15) == []


def test_the_ring_is_bounded_by_epochs_and_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changes, "MAX_EPOCHS", 4)
    monkeypatch.setattr(changes, "MAX_ROWS", 10)
    log = ChangeLog()
    log.begin(0, idle=True)
    for e in range(1, 8):
        log.removed(e, e)
        log.seal(e)
    assert len(log) == 4 and log.first == 4 and log.since(3, 7) is not None and log.since(2, 7) is None
    log.added(np.arange(11), np.zeros((11, 2), np.float16), np.zeros(11, np.int64))  # too big to keep
    log.seal(8)
    assert log.since(7, 8) is None and log.since(8, 8) == []


def test_the_fans_changes_bring_a_copy_to_the_same_values() -> None:
    rng = np.random.default_rng(2)
    fans = LocalDensity()
    for key in range(50):
        fans.observe(key, _near(rng, 50))
    values, total, version = fans.snapshot()
    copy = LocalDensity.restored(values, total)
    assert fans.changes_since(version) is None  # not tracked yet
    fans.track()
    for key in range(40, 60):
        fans.observe(key, _near(rng, 60))
    fans.remove(3)
    fans.remove(999)
    got = fans.changes_since(version)
    assert got is not None and got[2] == fans.version
    copy.apply(got[0], got[1])
    now, now_total, _ = fans.snapshot()
    assert copy._value == now and copy._total == now_total
    assert all(copy.excess(k) == fans.excess(k) for k in range(60))
    assert fans.changes_since(version - 1) is None and not fans.reaches(version - 1)  # before the log
    assert fans.reaches(version) and fans.reaches(fans.version)


def test_a_removed_fan_reaches_the_copy() -> None:
    fans = LocalDensity()
    for key in range(5):
        fans.observe(key, [(9, 0.5 + key / 10)])
    fans.track()
    values, total, version = fans.snapshot()
    copy = LocalDensity.restored(values, total)
    fans.remove(2)
    got = fans.changes_since(version)
    assert got is not None and got[0] == {2: None}
    copy.apply(got[0], got[1])
    assert copy._value == fans.snapshot()[0] and 2 not in copy
