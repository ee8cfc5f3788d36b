"""remember / recall / forget against a dict model, in two spaces that share ids."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engram.cognition.recall import recall
from engram.core.models import Cue, ForgetMode, MemoryInput
from engram.errors import MemoryExists, MemoryNotFound
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry

SPACES = st.sampled_from(["left", "right"])
IDS = st.sampled_from([f"id{i}" for i in range(6)])
DIM = 6


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return v.tolist()


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="engram-storestate-"))
        # A tiny exact_search_max puts the HNSW path (and its tail) under test too.
        self.settings = load_settings(overrides={"data_dir": self.tmp, "bootstrap_spaces": ("left", "right"),
                                                 "exact_search_max": 3}, use_env=False)
        self.reg = SpaceRegistry(self.settings)
        # model[space][id] = (content, seed, suppressed)
        self.model: dict[str, dict[str, tuple[str, int, bool]]] = {"left": {}, "right": {}}

    @rule(space=SPACES, mid=IDS, seed=st.integers(0, 10_000), with_vec=st.booleans())
    def remember(self, space: str, mid: str, seed: int, with_vec: bool) -> None:
        content = f"{space} says word{seed}"
        item = MemoryInput(id=mid, content=content, embedding=vec(seed) if with_vec else None)
        try:
            self.reg.get(space).remember(item)
        except MemoryExists as exc:
            assert mid in self.model[space], exc
            return
        assert mid not in self.model[space]
        self.model[space][mid] = (content, seed if with_vec else -1, False)

    @rule(space=SPACES, mid=IDS, delete=st.booleans())
    def forget(self, space: str, mid: str, delete: bool) -> None:
        mode = ForgetMode.delete if delete else ForgetMode.suppress
        try:
            self.reg.get(space).forget(mid, mode)
        except MemoryNotFound:
            assert mid not in self.model[space]
            return
        assert mid in self.model[space]
        if delete:
            del self.model[space][mid]
        else:
            content, seed, _ = self.model[space][mid]
            self.model[space][mid] = (content, seed, True)

    @rule(space=SPACES, mid=IDS)
    def recall_by_embedding(self, space: str, mid: str) -> None:
        entry = self.model[space].get(mid)
        if entry is None or entry[1] < 0:
            return
        res = recall(self.reg.get(space), Cue(embedding=vec(entry[1]), max_results=10))
        got = [it.memory for it in res.memories.vivid + res.memories.associated]
        live = {m for m, (_, _, sup) in self.model[space].items() if not sup}
        assert {m.id for m in got} <= live
        if not entry[2]:
            assert got and got[0].content == entry[0]  # finds itself first, with its own space's content

    @rule(space=SPACES, mid=IDS)
    def recall_by_text(self, space: str, mid: str) -> None:
        entry = self.model[space].get(mid)
        if entry is None:
            return
        res = recall(self.reg.get(space), Cue(query=entry[0].split()[-1], max_results=10))
        got = {it.memory.id: it.memory.content for it in res.memories.vivid + res.memories.associated}
        if entry[2]:
            assert mid not in got
        else:
            assert got.get(mid) == entry[0]
        assert all(c.startswith(space) for c in got.values())  # never another space's memory

    @rule()
    def restart(self) -> None:
        self.reg.close()
        self.reg = SpaceRegistry(self.settings)

    @invariant()
    def contents_match(self) -> None:
        for space, mems in self.model.items():
            sp = self.reg.get(space)
            page = sp.list(limit=100, include_suppressed=True)
            assert {m.id: (m.content, m.suppressed) for m in page.memories} == {
                k: (c, s) for k, (c, _, s) in mems.items()}

    def teardown(self) -> None:
        self.reg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestStoreState = StoreMachine.TestCase
TestStoreState.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
