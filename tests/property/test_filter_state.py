"""remember / update (PUT, PATCH) / expiry / delete-by-filter / list-with-filter /
recall-with-filter against a Python model, in two spaces that share ids and metadata (a filter
never crosses spaces), across restarts. The clock is a FakeClock: memories expire when the
machine moves it, and the sweep runs only when the machine says so, so an expired memory that
is still stored must already be invisible to every rule."""

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
from engram.core.models import Cue, ForgetMode, MemoryInput, MemoryPatch
from engram.errors import MemoryExists, MemoryNotFound
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry
from engram.testing import FakeClock

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
TTLS = st.sampled_from([None, None, 5.0, 30.0])
FILTERS = st.one_of(LEAF, st.builds(lambda a, b: {"$or": [a, b]}, LEAF, LEAF),
                    st.builds(lambda a, b: {"$and": [a, b]}, LEAF, LEAF))


def vec(seed: int) -> list[float]:
    return list(np.random.default_rng(seed).standard_normal(DIM).tolist())


class Model:
    def __init__(self, clock: FakeClock) -> None:
        # id -> [metadata, seed (or -1: no vector), suppressed, expires_at (or None)]
        self.mems: dict[str, list[Any]] = {}
        self.clock = clock

    def live(self) -> dict[str, list[Any]]:
        """What a reader sees: expired memories are gone, swept or not."""
        now = self.clock()
        return {m: v for m, v in self.mems.items() if v[3] is None or v[3] > now}

    def matching(self, raw: dict[str, Any], *, suppressed: bool = False) -> set[str]:
        node = filters.parse(raw)
        return {m for m, (meta, _, sup, _exp) in self.live().items()
                if (suppressed or not sup) and filters.evaluate(node, meta)}


class FilterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="engram-filterstate-"))
        # A tiny exact_search_max puts the HNSW path under test, and a tiny EXACT_SET_MAX the
        # broad-filter path (ANN + membership checks) beside the exact one.
        self.settings = load_settings(overrides={"data_dir": self.tmp, "bootstrap_spaces": ("left", "right"),
                                                 "exact_search_max": 3}, use_env=False)
        self.clock = FakeClock()
        self.reg = SpaceRegistry(self.settings, self.clock)
        self.saved_exact = filtered.EXACT_SET_MAX
        self.model = {"left": Model(self.clock), "right": Model(self.clock)}

    @rule(space=SPACES, mid=IDS, meta=METADATA, seed=st.integers(0, 10_000), with_vec=st.booleans(), ttl=TTLS)
    def remember(self, space: str, mid: str, meta: dict[str, Any], seed: int, with_vec: bool,
                 ttl: float | None) -> None:
        item = MemoryInput(id=mid, content=f"{space} memory {mid}", metadata=meta,
                           embedding=vec(seed) if with_vec else None, ttl_seconds=ttl)
        try:
            self.reg.get(space).remember(item)
        except MemoryExists:
            assert mid in self.model[space].live()
            return
        assert mid not in self.model[space].live()  # an expired, unswept memory frees its id
        self.model[space].mems[mid] = [meta, seed if with_vec else -1, False,
                                       None if ttl is None else self.clock() + ttl]

    @rule(space=SPACES, mid=IDS, meta=METADATA, seed=st.integers(0, 10_000), with_vec=st.booleans(), ttl=TTLS)
    def put(self, space: str, mid: str, meta: dict[str, Any], seed: int, with_vec: bool,
            ttl: float | None) -> None:
        item = MemoryInput(id=mid, content=f"{space} replaced {mid}", metadata=meta,
                           embedding=vec(seed) if with_vec else None, ttl_seconds=ttl)
        got = self.reg.get(space).update(mid, put=item)
        model = self.model[space]
        assert got.created == (mid not in model.live())
        # A replacement revives a suppressed memory and takes its own expiry.
        model.mems[mid] = [meta, seed if with_vec else -1, False, None if ttl is None else self.clock() + ttl]

    @rule(space=SPACES, mid=IDS, meta=METADATA)
    def patch_metadata(self, space: str, mid: str, meta: dict[str, Any]) -> None:
        model = self.model[space]
        try:
            self.reg.get(space).update(mid, patch=MemoryPatch(metadata=meta))
        except MemoryNotFound:
            assert mid not in model.live()
            return
        assert mid in model.live()
        model.mems[mid][0] = meta  # vector, suppression and expiry stay

    @rule(seconds=st.sampled_from([1.0, 6.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(space=SPACES)
    def sweep(self, space: str) -> None:
        model = self.model[space]
        expired = set(model.mems) - set(model.live())
        assert self.reg.get(space).sweep_expired() == len(expired)
        for mid in expired:
            del model.mems[mid]

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
        self.reg = SpaceRegistry(self.settings, self.clock)
        # Opening a space queues a sweep of what expired while it was closed; settle it here so
        # the sweep rule's count stays exact (a reader never sees the difference either way).
        for space, model in self.model.items():
            self.reg.get(space).sweep_expired()
            for mid in set(model.mems) - set(model.live()):
                del model.mems[mid]

    @invariant()
    def everything_listed_matches(self) -> None:
        for space, model in self.model.items():
            handle = self.reg.get(space)
            page = handle.list(limit=100, include_suppressed=True)
            assert {m.id: (m.metadata, m.suppressed) for m in page.memories} == {
                k: (meta, sup) for k, (meta, _, sup, _exp) in model.live().items()}
            for mid in set(model.mems) - set(model.live()):
                try:
                    handle.get(mid)
                except MemoryNotFound:
                    continue
                raise AssertionError(f"expired memory {mid!r} of {space!r} is still returned")

    def teardown(self) -> None:
        filtered.EXACT_SET_MAX = self.saved_exact
        self.reg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestFilterState = FilterMachine.TestCase
TestFilterState.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
