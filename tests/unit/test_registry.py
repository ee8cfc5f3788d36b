"""SpaceRegistry: create/get/list/delete, limits, concurrency, lazy load and idle unload."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engram.core.models import MemoryInput
from engram.errors import (
    InvalidInput,
    InvalidMemorySpace,
    MemorySpaceNotFound,
    ShuttingDown,
    SpaceLimitReached,
)
from engram.spaces.registry import MARKER, SpaceRegistry

Factory = Callable[..., SpaceRegistry]


def test_default_and_bootstrap_spaces_exist(registry_factory: Factory) -> None:
    reg = registry_factory(bootstrap_spaces=("alpha", "beta"))
    assert reg.known_ids() == ["alpha", "beta", "default"]
    assert (Path(reg.root) / "alpha" / MARKER).exists()


def test_create_is_idempotent(registry_factory: Factory) -> None:
    reg = registry_factory()
    a, created_a = reg.create("agent-1")
    b, created_b = reg.create("agent-1")
    assert created_a and not created_b and a is b
    assert reg.get("agent-1") is a


def test_create_with_dimension(registry_factory: Factory) -> None:
    reg = registry_factory()
    space, _ = reg.create("dims", dimension=4)
    assert space.dim == 4
    with pytest.raises(InvalidInput, match="between 1 and"):
        reg.create("dims2", dimension=0)


def test_get_unknown_and_invalid(registry_factory: Factory) -> None:
    reg = registry_factory()
    with pytest.raises(MemorySpaceNotFound) as info:
        reg.get("nobody-here")
    assert "default" not in info.value.message  # never lists other spaces
    assert "engram space create" in info.value.suggestion
    with pytest.raises(InvalidMemorySpace):
        reg.get("../x")


def test_auto_create(registry_factory: Factory) -> None:
    reg = registry_factory(auto_create_spaces=True)
    assert reg.get("fresh-one").id == "fresh-one"
    assert "fresh-one" in reg.known_ids()


def test_list_sorted_paginated_with_counts(registry_factory: Factory) -> None:
    reg = registry_factory()
    for sid in ("ccc", "aaa", "bbb"):
        reg.create(sid)
    reg.get("bbb").remember(MemoryInput(content="one"))
    reg.get("bbb").remember(MemoryInput(content="two"))
    page = reg.list(limit=2)
    assert [d.id for d in page.spaces] == ["aaa", "bbb"] and page.next_cursor == "bbb"
    assert page.spaces[1].memory_count == 2
    rest = reg.list(cursor=page.next_cursor, limit=2)
    assert [d.id for d in rest.spaces] == ["ccc", "default"] and rest.next_cursor is None


def test_delete_erases_and_stays_deleted(
    registry_factory: Factory, engine_settings: Callable[..., Any]
) -> None:
    reg = registry_factory()
    space, _ = reg.create("doomed")
    space.remember(MemoryInput(content="secret"))
    result = reg.delete("doomed")
    assert (
        result.deleted
        and result.memories_removed == 1
        and result.files_removed >= 2
        and result.bytes_removed > 0
    )
    assert not (Path(reg.root) / "doomed").exists()
    with pytest.raises(MemorySpaceNotFound):
        reg.get("doomed")
    with pytest.raises(MemorySpaceNotFound):
        reg.delete("doomed")
    with pytest.raises(MemorySpaceNotFound):  # a stale handle says the space is gone
        space.list()
    reg.close()
    reg2 = SpaceRegistry(engine_settings())
    assert "doomed" not in reg2.known_ids()
    again, created = reg2.create("doomed")
    assert created and again.count() == 0
    reg2.close()


def test_max_spaces(registry_factory: Factory) -> None:
    reg = registry_factory(max_spaces=3)  # default + 2
    reg.create("one-1")
    reg.create("two-2")
    with pytest.raises(SpaceLimitReached):
        reg.create("three")
    reg.create("one-1")  # existing ones are still fine


def test_max_spaces_under_concurrency(registry_factory: Factory) -> None:
    reg = registry_factory(max_spaces=5)
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(reg.create, f"space-{i}") for i in range(12)]
    ok = [f for f in futs if f.exception() is None]
    assert len(ok) == 4 and len(reg.known_ids()) == 5
    assert all(isinstance(f.exception(), SpaceLimitReached) for f in futs if f.exception() is not None)


def test_concurrent_opens_never_exceed_the_space_budget(registry_factory: Factory) -> None:
    """Sixteen threads open sixteen different unloaded spaces at once with room for three: every
    open is counted against the budget before it happens, so no moment has more loaded."""
    reg = registry_factory(max_loaded_spaces=3)
    ids = [f"budget-{i:02d}" for i in range(16)]
    for sid in ids:
        reg.create(sid)
    for sid in ids:
        reg.unload(sid)
    most = 0
    lock = threading.Lock()

    def seen(_space: Any) -> None:
        nonlocal most
        loaded = sum(1 for s in reg.loaded() if s.store is not None and not s.closed)
        with lock:
            most = max(most, loaded)

    reg.on_open.append(seen)
    barrier = threading.Barrier(len(ids))

    def open_one(sid: str) -> None:
        barrier.wait()
        reg.get(sid)

    with ThreadPoolExecutor(len(ids)) as pool:
        list(pool.map(open_one, ids))
    assert 1 <= most <= 3


def test_concurrent_create_yields_one_handle(registry_factory: Factory) -> None:
    reg = registry_factory()
    barrier = threading.Barrier(16)

    def create() -> Any:
        barrier.wait()
        return reg.create("shared")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: create(), range(16)))
    handles = {id(h) for h, _ in results}
    assert len(handles) == 1
    assert sum(1 for _, created in results if created) == 1
    assert len([s for s in reg.loaded() if s.id == "shared"]) == 1


def test_lazy_load_on_restart(registry_factory: Factory, engine_settings: Callable[..., Any]) -> None:
    reg = registry_factory(bootstrap_spaces=("lazy-one",))
    reg.get("lazy-one").remember(MemoryInput(content="kept"))
    reg.close()
    reg2 = SpaceRegistry(engine_settings())
    try:
        assert "lazy-one" in reg2.known_ids()
        assert [s.id for s in reg2.loaded()] == ["default"]
        assert reg2.describe("lazy-one").memory_count == 1  # counted offline, not loaded
        assert reg2.get("lazy-one").count() == 1
    finally:
        reg2.close()


def test_leftover_directory_without_marker_is_reused(registry_factory: Factory, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "half-made").mkdir(parents=True)
    (root / "half-made" / "junk").write_text("x")
    reg = registry_factory()
    assert "half-made" not in reg.known_ids()
    _space, created = reg.create("half-made")
    assert created and not (root / "half-made" / "junk").exists()


def test_unload_idle(registry_factory: Factory) -> None:
    reg = registry_factory(bootstrap_spaces=("idle-one", "busy-one"))
    idle = reg.get("idle-one")
    idle.remember(MemoryInput(content="still here"))
    busy = reg.get("busy-one")
    sub = busy.events.subscribe()
    unloaded = reg.unload_idle(idle_seconds=0.0)
    assert "idle-one" in unloaded and "busy-one" not in unloaded  # subscribers keep a space loaded
    assert idle.closed
    with pytest.raises(ShuttingDown):  # a stale handle gets a retriable error
        idle.remember(MemoryInput(content="late"))
    again = reg.get("idle-one")
    assert again is not idle and again.count() == 1
    sub.close()
    with again.lease():
        assert "idle-one" not in reg.unload_idle(idle_seconds=0.0)
    assert reg.unload_idle(idle_seconds=3600.0) == []


def test_unload_idle_beside_writers(registry_factory: Factory) -> None:
    """Unloading while writers run never loses an acknowledged write nor opens two stores."""
    reg = registry_factory(bootstrap_spaces=("churn",))
    acked: list[str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        pause = random.Random(n)
        while not stop.is_set():
            try:
                receipt = reg.get("churn").remember(MemoryInput(id=f"w{n}-{i}", content="x"))
            except ShuttingDown:
                continue  # retriable: the handle was unloaded under us
            acked.append(receipt.memory_id)
            i += 1
            # Short, uneven gaps: a space written back to back is never idle, so without them the
            # unloader could wait for ever (it did, under CI load) instead of racing the writers.
            time.sleep(pause.uniform(0.0, 0.003))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    unloads = 0
    deadline = time.monotonic() + 60.0
    while unloads < 20 and time.monotonic() < deadline:
        unloads += len(reg.unload_idle(idle_seconds=0.0))
        time.sleep(0.0005)
    stop.set()
    for t in threads:
        t.join()
    space = reg.get("churn")
    ids: set[str] = set()
    cursor = None
    while True:  # every page: the writers may well have stored more than one page
        page = space.list(cursor=cursor, limit=1000)
        ids |= {m.id for m in page.memories}
        cursor = page.next_cursor
        if cursor is None:
            break
    assert unloads >= 5, f"only {unloads} unloads raced the writers"
    assert acked and set(acked) <= ids


def test_unload_one_space(registry_factory: Factory) -> None:
    reg = registry_factory(bootstrap_spaces=("one-off",))
    space = reg.get("one-off")
    space.remember(MemoryInput(content="kept across unload"))
    assert reg.unload("one-off") and not reg.unload("one-off")
    assert space.closed and "one-off" not in [s.id for s in reg.loaded()]
    assert reg.get("one-off").count() == 1
