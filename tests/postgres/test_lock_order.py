"""Lock order: every write takes its space's LSN counter row first, before any memory row, so two
writers of one space queue on the counter and never deadlock on each other's rows.

The scenario that deadlocked when an update locked the memory row (SELECT ... FOR UPDATE) before
the counter: a writer holding the counter deletes that memory while the update waits."""

from __future__ import annotations

import threading
import time

import pytest

from engram.core.postgres import MemoryRow, PostgresStore
from engram.errors import MemoryNotFound

from .conftest import new_space


def _wait_until_blocked(store: PostgresStore, deadline: float = 10.0) -> None:
    """Until another session of the app role waits on a lock (pg_stat_activity)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with store.db.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND usename = current_user").fetchone()
        if row is not None and int(str(row[0])) > 0:
            return
        time.sleep(0.02)
    raise AssertionError("the second writer never blocked")


@pytest.mark.parametrize("second", ["patch", "put", "forget", "associate"])
def test_a_writer_waits_on_the_counter_not_on_the_memory_row(store: PostgresStore, second: str) -> None:
    sid = new_space(store)
    store.remember_many(sid, [(MemoryRow(id="m", content="contended"), None),
                              (MemoryRow(id="o", content="other"), None)])
    errors: list[BaseException] = []

    def write() -> None:
        try:
            if second == "patch":
                store.patch(sid, "m", {"content": "patched"})
            elif second == "put":
                store.put(sid, MemoryRow(id="m", content="put"))
            elif second == "forget":
                assert store.forget(sid, "m", "suppress") is None
            else:
                store.associate(sid, "o", "m", 0.5)
        except BaseException as exc:
            errors.append(exc)

    with store.db.space(sid) as tx:  # the first writer: holds the counter, then deletes m
        lsn = store.next_lsn(tx)
        waiter = threading.Thread(target=write)
        waiter.start()
        _wait_until_blocked(store)
        tx.execute("DELETE FROM engram.memories WHERE space_id = %(space)s AND id = 'm'")  # no deadlock
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    if second == "put":  # PUT after the delete creates the memory anew
        assert not errors and store.get(sid, "m").content == "put"  # type: ignore[union-attr]
        assert store.space(sid).last_lsn == lsn + 1  # type: ignore[union-attr]
    elif second == "forget":
        assert not errors and store.space(sid).last_lsn == lsn  # type: ignore[union-attr]
    else:
        assert len(errors) == 1 and isinstance(errors[0], MemoryNotFound), errors
        assert store.space(sid).last_lsn == lsn  # type: ignore[union-attr]  # the refusal's LSN given back
