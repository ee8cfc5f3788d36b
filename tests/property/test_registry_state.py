"""SpaceRegistry against a set model; every operation is raced from several threads at once."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engram.errors import MemorySpaceNotFound, SpaceLimitReached
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry

IDS = st.sampled_from(["aaa", "bbb", "ccc", "ddd", "eee"])
THREADS = 4
MAX_SPACES = 5  # the default space plus four of the five ids: the limit is reachable


def race(fn: Callable[[], Any]) -> list[tuple[Any, BaseException | None]]:
    """Run ``fn`` in THREADS threads at once; ``(result, error)`` per thread."""
    def call(_: int) -> tuple[Any, BaseException | None]:
        try:
            return fn(), None
        except Exception as exc:
            return None, exc

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(call, range(THREADS)))


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="engram-regstate-"))
        self.settings = load_settings(
            overrides={"data_dir": self.tmp, "max_spaces": MAX_SPACES}, use_env=False
        )
        self.reg = SpaceRegistry(self.settings)
        self.model: set[str] = {"default"}

    @rule(sid=IDS)
    def create(self, sid: str) -> None:
        outcomes = race(lambda: self.reg.create(sid))
        if sid not in self.model and len(self.model) >= MAX_SPACES:
            assert all(isinstance(e, SpaceLimitReached) for _, e in outcomes)
            return
        assert all(e is None for _, e in outcomes), outcomes
        handles = {id(r[0]) for r, _ in outcomes}
        assert len(handles) == 1  # one handle, never two stores
        created = sum(1 for r, _ in outcomes if r[1])
        assert created == (0 if sid in self.model else 1)
        self.model.add(sid)

    @rule(sid=IDS)
    def get(self, sid: str) -> None:
        outcomes = race(lambda: self.reg.get(sid))
        if sid in self.model:
            assert all(e is None for _, e in outcomes)
            assert len({id(r) for r, _ in outcomes}) == 1
        else:
            assert all(isinstance(e, MemorySpaceNotFound) for _, e in outcomes)

    @rule(sid=IDS)
    def delete(self, sid: str) -> None:
        outcomes = race(lambda: self.reg.delete(sid))
        ok = [r for r, e in outcomes if e is None]
        if sid in self.model:
            assert len(ok) == 1 and ok[0].deleted  # exactly one thread deletes it
            assert all(isinstance(e, MemorySpaceNotFound) for _, e in outcomes if e is not None)
            self.model.discard(sid)
        else:
            assert not ok
        assert not (self.tmp / sid).exists()

    @rule()
    def list_spaces(self) -> None:
        pages = race(lambda: self.reg.list(limit=2))
        for page, err in pages:
            assert err is None
            assert [d.id for d in page.spaces] == sorted(self.model)[:2]

    @rule()
    def unload(self) -> None:
        self.reg.unload_idle(idle_seconds=0.0)

    @rule()
    def restart(self) -> None:
        self.reg.close()
        self.reg = SpaceRegistry(self.settings)

    @invariant()
    def known_matches_model(self) -> None:
        assert set(self.reg.known_ids()) == self.model

    def teardown(self) -> None:
        self.reg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestRegistryState = RegistryMachine.TestCase
TestRegistryState.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
