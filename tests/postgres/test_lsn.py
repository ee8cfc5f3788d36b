"""Per-space LSNs under concurrent writers: strictly increasing, no gaps, no duplicates."""

from __future__ import annotations

import threading
import uuid

from engram.core.postgres import MemoryRow, PostgresStore

WRITERS = 4
PER_WRITER = 20


def test_concurrent_writers_get_gapless_lsns_per_space(store: PostgresStore) -> None:
    spaces = [f"lsn-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for sid in spaces:
        store.create_space(sid)
    got: dict[str, list[int]] = {sid: [] for sid in spaces}
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS * len(spaces))

    def writer(sid: str, w: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(PER_WRITER):
                lsn = store.remember(sid, MemoryRow(id=f"w{w}-{i}", content=f"writer {w} item {i}"))
                with lock:
                    got[sid].append(lsn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(sid, w)) for sid in spaces for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    n = WRITERS * PER_WRITER
    for sid in spaces:
        assert sorted(got[sid]) == list(range(1, n + 1))  # no gap, no duplicate
        events = store.events_after(sid, limit=10 * n)
        assert [e.lsn for e in events] == list(range(1, n + 1))  # the log holds them in LSN order
        info = store.space(sid)
        assert info is not None and info.last_lsn == n
        # each memory carries the LSN its writer was told
        rows = store.list_memories(sid, limit=10 * n)
        assert sorted(m.lsn for m in rows) == list(range(1, n + 1))


def test_one_transaction_of_several_writes_takes_consecutive_lsns(store: PostgresStore) -> None:
    sid = f"lsn-{uuid.uuid4().hex[:8]}"
    store.create_space(sid)
    store.remember(sid, MemoryRow(id="first", content="x"))
    batch = [(MemoryRow(id=f"b{i}", content="y"), None) for i in range(3)]
    assert store.remember_many(sid, batch) == [2, 3, 4]
