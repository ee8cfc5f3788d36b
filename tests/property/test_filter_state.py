"""remember / delete-by-filter / list-with-filter / recall-with-filter against a Python model,
in two spaces that share ids and metadata (a filter never crosses spaces), across restarts."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engram.cognition import filtered
from engram.cognition.recall import recall
from engram.core import filters
from engram.core.models import Cue, ForgetMode, MemoryInput
from engram.errors import MemoryExists
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry

SPACES = st.sampled_from(["left", "right"])
IDS = st.sampled_from([f"id{i}" for i in range(10)])
DIM = 6
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.5, 1.0, "a", "b", "1"]))
METADATA = st.dictionaries(st.sampled_from(["k", "n", "t"]), VALUES, max_size=3)
LEAF = st.one_of(
    st.builds(lambda k, v: {k: v}, st.sampled_from(["k", "n", "t"]), VALUES),
    st.builds(lambda k, op, v: {k: {op: v}}, st.sampled_from(["k", "n", "t"]),
              st.sampled_from(["$ne", "$gt", "$lte"]),
              st.one_of(st.integers(-2, 2), st.sampled_from(["a", "b"]))),
    st.builds(lambda k, vs: {k: {"$in": vs}}, st.sampled_from(["k", "n", "t"]), st.lists(VALUES, max_size=3)),
    st.builds(lambda k, b: {k: {"$exists": b}}, st.sampled_from(["k", "n", "t"]), st.booleans()),
)
FILTERS = st.one_of(LEAF, st.builds(lambda a, b: {"$or": [a, b]}, LEAF, LEAF),
                    st.builds(lambda a, b: {"$and": [a, b]}, LEAF, LEAF))


def vec(seed: int) -> list[float]:
    return list(np.random.default_rng(seed).standard_normal(DIM).tolist())


class Model:
    def __init__(self) -> None:
        # id -> [metadata, seed (or -1: no vector), suppressed]
        self.mems: dict[str, list[Any]] = {}

    def matching(self, raw: dict[str, Any], *, suppressed: bool = False) -> set[str]:
        node = filters.parse(raw)
        return {m for m, (meta, _, sup) in self.mems.items()
                if (suppressed or not sup) and filters.evaluate(node, meta)}


class FilterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="engram-filterstate-"))
        # A tiny exact_search_max puts the HNSW path under test, and a tiny EXACT_SET_MAX the
        # broad-filter path (ANN + membership checks) beside the exact one.
        self.settings = load_settings(overrides={"data_dir": self.tmp, "bootstrap_spaces": ("left", "right"),
                                                 "exact_search_max": 3}, use_env=False)
        self.reg = SpaceRegistry(self.settings)
        self.saved_exact = filtered.EXACT_SET_MAX
        self.model = {"left": Model(), "right": Model()}

    @rule(space=SPACES, mid=IDS, meta=METADATA, seed=st.integers(0, 10_000), with_vec=st.booleans())
    def remember(self, space: str, mid: str, meta: dict[str, Any], seed: int, with_vec: bool) -> None:
        item = MemoryInput(id=mid, content=f"{space} memory {mid}", metadata=meta,
                           embedding=vec(seed) if with_vec else None)
        try:
            self.reg.get(space).remember(item)
        except MemoryExists:
            assert mid in self.model[space].mems
            return
        assert mid not in self.model[space].mems
        self.model[space].mems[mid] = [meta, seed if with_vec else -1, False]

    @rule(space=SPACES, raw=FILTERS, delete=st.booleans())
    def delete_by_filter(self, space: str, raw: dict[str, Any], delete: bool) -> None:
        mode = ForgetMode.delete if delete else ForgetMode.suppress
        model = self.model[space]
        want = model.matching(raw, suppressed=delete)
        node = filters.parse(raw)
        assert node is not None
        fut, receipt = self.reg.get(space).submit_delete_by_filter(node, mode)
        got = receipt(fut.result())
        assert got.count == len(want) and got.memory_space_id == space
        for mid in want:
            if delete:
                del model.mems[mid]
            else:
                model.mems[mid][2] = True

    @rule(space=SPACES, raw=FILTERS, suppressed=st.booleans())
    def list_with_filter(self, space: str, raw: dict[str, Any], suppressed: bool) -> None:
        page = self.reg.get(space).list(limit=100, include_suppressed=suppressed, filter=filters.parse(raw))
        want = self.model[space].matching(raw, suppressed=suppressed)
        assert {m.id for m in page.memories} == want and page.total == len(want)

    @rule(space=SPACES, raw=FILTERS, seed=st.integers(0, 10_000), small=st.booleans())
    def recall_with_filter(self, space: str, raw: dict[str, Any], seed: int, small: bool) -> None:
        filtered.EXACT_SET_MAX = 1 if small else self.saved_exact
        try:
            res = recall(self.reg.get(space), Cue(embedding=vec(seed), max_results=4, filter=raw))
        finally:
            filtered.EXACT_SET_MAX = self.saved_exact
        got = [it.memory for it in res.memories.vivid + res.memories.associated]
        model = self.model[space]
        want = model.matching(raw)
        with_vec = {m for m in want if model.mems[m][1] >= 0}
        assert {m.id for m in got} <= want
        assert len(got) == min(4, len(with_vec))  # k results whenever k matching exist
        for m in got:
            assert m.metadata == model.mems[m.id][0]  # its own space's memory, typed as stored

    @rule()
    def restart(self) -> None:
        self.reg.close()
        self.reg = SpaceRegistry(self.settings)

    @invariant()
    def everything_listed_matches(self) -> None:
        for space, model in self.model.items():
            page = self.reg.get(space).list(limit=100, include_suppressed=True)
            assert {m.id: (m.metadata, m.suppressed) for m in page.memories} == {
                k: (meta, sup) for k, (meta, _, sup) in model.mems.items()}

    def teardown(self) -> None:
        filtered.EXACT_SET_MAX = self.saved_exact
        self.reg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestFilterState = FilterMachine.TestCase
TestFilterState.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
