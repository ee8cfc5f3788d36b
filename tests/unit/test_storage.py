"""SpaceStore: group commit, LSNs, op isolation, durability, recovery, damage."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engram.core.models import ForgetMode, MemoryInput
from engram.core.space import MemorySpace
from engram.errors import MemoryExists, MemoryNotFound, SpaceUnhealthy, StorageError
from engram.spaces.registry import SpaceRegistry
from engram.storage.sqlite_store import SpaceStore


def _insert(key: str) -> Callable[[sqlite3.Connection, int], str]:
    def op(conn: sqlite3.Connection, lsn: int) -> str:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, str(lsn)))
        return key

    return op


def test_group_commit_batches_concurrent_writes(tmp_path: Path) -> None:
    store = SpaceStore(tmp_path / "s")
    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda i: store.write(_insert(f"k{i}")), range(400)))
        lsns = sorted(lsn for _, lsn in results)
        assert lsns == list(range(1, 401))  # one LSN per mutation, no gaps
        assert store.last_lsn == 400
        assert store.commits < 400  # batched: fewer commits (fsyncs) than writes
        assert store.ops_committed == 400
    finally:
        store.close()


def test_failing_op_fails_alone(tmp_path: Path) -> None:
    store = SpaceStore(tmp_path / "s")
    try:
        def bad(conn: sqlite3.Connection, lsn: int) -> None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('half', 'x')")
            raise ValueError("boom")

        futs = [store.submit(_insert("a")), store.submit(bad), store.submit(_insert("b"))]
        assert futs[0].result()[0] == "a" and futs[2].result()[0] == "b"
        with pytest.raises(ValueError, match="boom"):
            futs[1].result()
        assert store.meta("half") is None  # its partial effect was rolled back
        assert futs[2].result()[1] == futs[0].result()[1] + 1  # the failed op consumed no LSN
    finally:
        store.close()


def test_after_runs_before_ack_and_close_drains(tmp_path: Path) -> None:
    store = SpaceStore(tmp_path / "s")
    seen: list[int] = []
    futs = [store.submit(_insert(f"k{i}"), after=lambda res, lsn: seen.append(lsn)) for i in range(50)]
    store.close()  # finishes every queued write durably
    assert all(f.done() and f.exception() is None for f in futs)
    assert seen == list(range(1, 51))
    with pytest.raises(StorageError, match="closed"):
        store.submit(_insert("late"))
    with pytest.raises(StorageError, match="closed"):
        store.reader()
    reopened = SpaceStore(tmp_path / "s")
    try:
        assert reopened.last_lsn == 50 and reopened.meta("k49") == "50"
    finally:
        reopened.close()


def test_commit_failure_fails_the_batch(tmp_path: Path) -> None:
    store = SpaceStore(tmp_path / "s")
    try:
        def poison(conn: sqlite3.Connection, lsn: int) -> None:
            # Leaves the transaction unable to commit: a stand-in for a failed fsync.
            conn.execute("COMMIT")

        fut = store.submit(poison)
        with pytest.raises(StorageError):
            fut.result()
        assert store.write(_insert("after"))[0] == "after"  # the writer survives
    finally:
        store.close()


def _space(root: Path, settings: Any, sid: str = "space-a") -> MemorySpace:
    d = root / sid
    d.mkdir(parents=True, exist_ok=True)
    return MemorySpace(sid, d, settings)


def test_memory_writes_survive_reopen(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    settings = engine_settings()
    space = _space(tmp_path, settings)
    ids = [
        space.remember(MemoryInput(content=f"m {i}", embedding=[1.0, float(i), 0.5])).memory_id
        for i in range(20)
    ]
    space.forget(ids[0], ForgetMode.delete)
    space.forget(ids[1], ForgetMode.suppress)
    last = space.last_lsn
    space.close()
    again = _space(tmp_path, settings)
    try:
        assert again.last_lsn == last == 22
        assert again.dim == 3 and len(again.vectors) == 18
        with pytest.raises(MemoryNotFound):
            again.get(ids[0])  # deletes stay deleted
        assert again.get(ids[1]).suppressed  # suppression is durable too
        assert again.list(limit=100).total == 18
    finally:
        again.close()


def test_duplicate_id_rejected(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    space = _space(tmp_path, engine_settings())
    try:
        space.remember(MemoryInput(id="same", content="one"))
        with pytest.raises(MemoryExists, match="already exists"):
            space.remember(MemoryInput(id="same", content="two"))
        assert space.get("same").content == "one"
    finally:
        space.close()


def test_truncated_wal_tail_is_discarded(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    """A torn final WAL frame is dropped on open; everything before it is back."""
    settings = engine_settings()
    space2 = _space(tmp_path, settings, "space-b")
    for i in range(30):
        space2.remember(MemoryInput(id=f"m{i}", content="y" * 100))
    # Copy the files while the WAL still holds the frames (the connection is open).
    snap = tmp_path / "snap"
    snap.mkdir()
    for name in ("space.db", "space.db-wal"):
        (snap / name).write_bytes((tmp_path / "space-b" / name).read_bytes())
    space2.close()
    wal_copy = snap / "space.db-wal"
    size = wal_copy.stat().st_size
    assert size > 4096
    with open(wal_copy, "r+b") as f:
        f.truncate(size - 1000)  # tear the last frame
    recovered = MemorySpace("space-c", snap, settings)
    try:
        assert recovered.healthy
        got = {m.id for m in recovered.list(limit=100).memories}
        assert 25 <= len(got) < 30  # the torn last commit is gone, the rest is back
        assert got == {f"m{i}" for i in range(len(got))}  # a prefix, no holes
    finally:
        recovered.close()


def test_corrupt_database_marks_only_that_space_unhealthy(registry_factory: Callable[..., SpaceRegistry],
                                                          engine_settings: Callable[..., Any]) -> None:
    reg = registry_factory(bootstrap_spaces=("good-one", "bad-one"))
    for sid in ("good-one", "bad-one"):
        for i in range(200):
            reg.get(sid).remember(MemoryInput(content=f"{sid} memory {i} " + "z" * 200))
    root = Path(reg.root)
    reg.close()
    db = root / "bad-one" / "space.db"
    with open(db, "r+b") as f:  # scribble over pages past the header
        f.seek(4096)
        f.write(os.urandom(4096 * 6))
    reg2 = SpaceRegistry(engine_settings())
    try:
        bad = reg2.get("bad-one")
        assert not bad.healthy and "storage" in (bad.unhealthy_reason or "")
        with pytest.raises(SpaceUnhealthy):
            bad.remember(MemoryInput(content="no"))
        good = reg2.get("good-one")
        assert good.healthy and good.count() == 200
        good.remember(MemoryInput(content="still serving"))
        assert reg2.describe("bad-one").healthy is False
    finally:
        reg2.close()


def test_garbage_database_file(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    d = tmp_path / "junk-space"
    d.mkdir()
    (d / "space.db").write_bytes(b"this is not a database" * 100)
    space = MemorySpace("junk-space", d, engine_settings())
    assert not space.healthy
    with pytest.raises(SpaceUnhealthy):
        space.list()
    space.close()


def test_readers_beside_writer(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    space = _space(tmp_path, engine_settings())
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                space.list(limit=5)
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: space.remember(MemoryInput(content=f"c{i}")), range(300)))
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert space.count() == 300
    space.close()


def test_remember_async_batches_acks(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    import asyncio

    space = _space(tmp_path, engine_settings())

    async def main() -> list[Any]:
        async def one(i: int) -> Any:
            return await space.remember_async(
                MemoryInput(id=f"a{i}", content=f"async {i}", embedding=[1.0, i, 2.0])
            )

        ok = await asyncio.gather(*(one(i) for i in range(200)))
        with pytest.raises(MemoryExists, match="already exists"):  # errors reach the awaiting caller
            await one(3)
        cancelled = asyncio.ensure_future(one(500))
        await asyncio.sleep(0)
        cancelled.cancel()  # the caller gives up; the write itself still completes durably
        return list(ok)

    receipts = asyncio.run(main())
    try:
        assert sorted(r.lsn for r in receipts) == list(range(1, 201))
        assert space.count() >= 200 and space.get("a199").content == "async 199"
        assert space.store is not None and space.store.commits < 200
    finally:
        space.close()


def test_cancelled_waiters_do_not_break_the_writer(tmp_path: Path) -> None:
    """A caller that gives up (cancelled future) must not take the writer down with it."""
    import asyncio

    store = SpaceStore(tmp_path / "s")
    try:
        futs = [store.submit(_insert(f"c{i}")) for i in range(50)]
        cancelled = [f for f in futs[::2] if f.cancel()]
        assert cancelled  # still pending, so cancellable (what asyncio.wrap_future does on task cancel)

        async def wrapped_then_cancelled() -> None:
            task = asyncio.ensure_future(asyncio.wrap_future(store.submit(_insert("wrapped"))))
            await asyncio.sleep(0)
            task.cancel()

        asyncio.run(wrapped_then_cancelled())
        assert store.write(_insert("after"))[0] == "after"  # the writer and completer are alive
        assert store.meta("c0") is not None and store.meta("wrapped") is not None  # the writes stand
    finally:
        store.close()


def test_background_integrity_check(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    """Big databases are checked beside serving; close() interrupts a running check cleanly."""
    settings = engine_settings(integrity_check_sync_max_bytes=0)  # every database counts as big
    space = _space(tmp_path, settings)
    for i in range(300):
        space.remember(MemoryInput(content=f"row {i} " + "w" * 300, embedding=[1.0, float(i), 3.0]))
    space.close()
    for _ in range(5):  # open and close at once: the check is interrupted, never a crash or a verdict
        again = _space(tmp_path, settings)
        again.close()
        assert again.healthy and again.integrity_checked.is_set()
    again = _space(tmp_path, settings)
    assert again.integrity_checked.wait(30) and again.healthy
    again.close()
    db = tmp_path / "space-a" / "space.db"
    with open(db, "r+b") as f:
        f.seek(8192)
        f.write(os.urandom(4096 * 8))
    damaged = _space(tmp_path, settings)
    try:
        assert damaged.integrity_checked.wait(30)
        assert not damaged.healthy
    finally:
        damaged.close()


class _HeldCheckSpace(MemorySpace):
    """A space whose background check, once its connection is closed, waits to be released."""

    conn_closed = threading.Event()
    release = threading.Event()

    def _check_finished(self) -> None:
        type(self).conn_closed.set()
        assert type(self).release.wait(30), "close() never reached the join"


def test_close_while_check_thread_is_finishing(tmp_path: Path, engine_settings: Callable[..., Any]) -> None:
    """close() when the check thread is alive but has closed its connection (the race of issue 16).

    The thread is held after closing its connection; close() then runs against exactly that
    state. It used to interrupt the closed connection (ProgrammingError); now it must wait for
    the thread. Releasing the thread from the join itself proves close() got that far.
    """
    settings = engine_settings(integrity_check_sync_max_bytes=0)
    space = _space(tmp_path, settings)
    for i in range(20):
        space.remember(MemoryInput(content=f"row {i}", embedding=[1.0, float(i), 3.0]))
    space.close()
    d = tmp_path / "space-a"
    held = _HeldCheckSpace("space-a", d, settings)
    thread = held._check_thread
    assert thread is not None
    try:
        assert _HeldCheckSpace.conn_closed.wait(30)
        assert thread.is_alive()  # the racy state: alive, connection gone
        join = thread.join

        def release_then_join(timeout: float | None = None) -> None:
            _HeldCheckSpace.release.set()
            join(timeout)

        thread.join = release_then_join  # type: ignore[method-assign]
        held.close()
        assert not thread.is_alive() and held.integrity_checked.is_set() and held.healthy
    finally:
        _HeldCheckSpace.release.set()


def test_an_acknowledged_write_finds_the_store_idle(tmp_path: Path) -> None:
    """The store counts a write done *before* its caller is answered: the caller, acknowledged,
    must not see its own space busy (the unloader would refuse to make room: a spurious 503)."""
    store = SpaceStore(tmp_path / "s")
    try:
        release = threading.Event()

        def slow(conn: sqlite3.Connection, lsn: int) -> str:
            release.wait(10)  # holds the write until the callback below is in place
            return _insert("slow")(conn, lsn)

        seen: list[bool] = []
        fut = store.submit(slow)
        # A done-callback runs in the thread that answers, at the moment it answers.
        fut.add_done_callback(lambda _f: seen.append(store.busy))
        release.set()
        assert fut.result(10)[0] == "slow"
        assert seen == [False]
        assert not store.busy
    finally:
        store.close()
