"""Stateful property test: random operations across several spaces against a model.

The model knows, for every space, which ids exist (live or suppressed) and
which have been erased. Every answer the in-process ``EngramService`` gives is
checked against it: nothing returned from a space was ever written to a
different space only, gets of another space's id are ``MemoryNotFound``,
counts are this space's own, and a reopen (close + new service on the same
data root) loses nothing acknowledged.

Every memory carries ``metadata={"space": <its space>}`` and the same ids and
contents are written to several spaces, so a result borrowed from a sibling
space is visible even when its id also exists here.

(Single-space store semantics and registry-from-threads machines are the
engine's own tests; this one is about where ids live.)
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engram.core.models import (
    AssociateInput,
    ConsolidateInput,
    Cue,
    EpisodeInput,
    ForgetMode,
    MemoryInput,
    RecognizeInput,
)
from engram.errors import InvalidInput, MemoryExists, MemoryNotFound, NotFound
from engram.service import EngramService
from engram.settings import load_settings
from engram.testing import scratch_dir

SPACES = ("sp-a", "sp-b", "sp-c")
IDS = tuple(f"m{i}" for i in range(6))
CONTENTS = ("alpha beta", "gamma delta", "alpha gamma", "epsilon")
VECTORS = ((1.0, 0.0, 0.0, 0.2), (0.0, 1.0, 0.0, 0.2), (0.7, 0.7, 0.0, 0.2), (0.1, 0.0, 1.0, 0.2))

spaces = st.sampled_from(SPACES)
ids = st.sampled_from(IDS)
vec_ix = st.integers(0, len(VECTORS) - 1)
text_ix = st.integers(0, len(CONTENTS) - 1)


class MultiSpaceMachine(RuleBasedStateMachine):
    """Model: ``live[space][id] -> (content, vector index, is_episode)``, ``suppressed[space]`` ids."""

    def __init__(self) -> None:
        super().__init__()
        self.root = str(scratch_dir("engram-prop-"))  # tmpfs: which ids live where, not fsync, is tested
        self.loop = asyncio.new_event_loop()
        self.service = self._open()
        self.live: dict[str, dict[str, tuple[str, int, bool]]] = {s: {} for s in SPACES}
        self.suppressed: dict[str, set[str]] = {s: set() for s in SPACES}

    def _open(self) -> EngramService:
        return EngramService(
            load_settings(
                overrides={"embedder": "none",
                    "data_dir": self.root,
                    "bootstrap_spaces": ",".join(SPACES),
                    "durability": "buffered",
                    "consolidation_interval_seconds": 0,
                    "log_json": False,
                },
                use_env=False,
            )
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.service.close()
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------
    def _exists(self, space: str, mid: str) -> bool:
        return mid in self.live[space] or mid in self.suppressed[space]

    def _check_memory(self, space: str, mem: Any) -> None:
        assert mem.metadata.get("space") == space, (
            f"{mem.id} from space {mem.metadata.get('space')} seen in {space}"
        )
        assert self._exists(space, mem.id), f"{mem.id} returned by {space} but never stored there (or erased)"

    # -- rules -------------------------------------------------------------------
    @rule(space=spaces, mid=ids, t=text_ix, v=vec_ix, episode=st.booleans())
    def remember(self, space: str, mid: str, t: int, v: int, episode: bool) -> None:
        kw: dict[str, Any] = {
            "id": mid,
            "content": CONTENTS[t],
            "embedding": list(VECTORS[v]),
            "metadata": {"space": space},
        }
        item = (
            EpisodeInput(when=1_700_000_000 + IDS.index(mid) * 60, what=CONTENTS[t], **kw)
            if episode
            else MemoryInput(**kw)
        )
        if self._exists(space, mid):
            with pytest.raises(MemoryExists):
                self.run(self.service.remember(space, item))
            return
        receipt = self.run(self.service.remember(space, item))
        assert receipt.memory_id == mid and receipt.memory_space_id == space
        self.live[space][mid] = (CONTENTS[t], v, episode)

    @rule(
        space=spaces,
        v=vec_ix,
        t=st.one_of(st.none(), text_ix),
        mode=st.sampled_from(["similarity", "spreading", "hybrid"]),
    )
    def recall(self, space: str, v: int, t: int | None, mode: str) -> None:
        cue = Cue(
            embedding=list(VECTORS[v]),
            query=CONTENTS[t] if t is not None else None,
            mode=mode,
            max_results=20,
            trace_activation=True,
        )
        res = self.run(self.service.recall(space, cue))
        assert res.memory_space_id in ("", space)
        seen = []
        for bucket in (res.memories.vivid, res.memories.associated, res.memories.reconstructed):
            for item in bucket:
                self._check_memory(space, item.memory)
                assert item.memory.id in self.live[space], (
                    f"suppressed/erased {item.memory.id} recalled in {space}"
                )
                for step in item.activation_path or []:
                    assert self._exists(space, step.memory_id), f"path step {step.memory_id} not in {space}"
                seen.append(item.memory.id)
        assert len(seen) == len(set(seen)), f"duplicate results {seen}"
        # An exact vector match that is live in this space must be found (cosine 1 is the top score).
        exact = [m for m, (_, vi, _) in self.live[space].items() if vi == v]
        if exact and mode == "similarity" and t is None:
            assert set(exact) & set(seen), f"exact matches {exact} in {space} not recalled: {seen}"

    @rule(space=spaces, mid=ids)
    def get(self, space: str, mid: str) -> None:
        if not self._exists(space, mid):
            with pytest.raises(MemoryNotFound):
                self.run(self.service.get_memory(space, mid))
            return
        mem = self.run(self.service.get_memory(space, mid))
        self._check_memory(space, mem)
        assert mem.suppressed == (mid in self.suppressed[space])
        if mid in self.live[space]:
            content, _, _ = self.live[space][mid]
            assert mem.content == content

    @rule(space=spaces, mid=ids, delete=st.booleans())
    def forget(self, space: str, mid: str, delete: bool) -> None:
        mode = ForgetMode.delete if delete else ForgetMode.suppress
        if not self._exists(space, mid):
            with pytest.raises(MemoryNotFound):
                self.run(self.service.forget(space, mid, mode))
            return
        receipt = self.run(self.service.forget(space, mid, mode))
        assert receipt.memory_id == mid
        self.live[space].pop(mid, None)
        if delete:
            self.suppressed[space].discard(mid)
        else:
            self.suppressed[space].add(mid)

    @rule(space=spaces, a=ids, b=ids, strength=st.floats(0.1, 1.0))
    def associate(self, space: str, a: str, b: str, strength: float) -> None:
        item = AssociateInput(source_id=a, target_id=b, strength=strength)
        if a == b or a not in self.live[space] or b not in self.live[space]:
            # Associating with an id this space does not hold must never reach a sibling's memory.
            try:
                self.run(self.service.associate(space, item))
            except (NotFound, InvalidInput):
                return
            assert a in self.live[space] and b in self.live[space], (
                f"associate {a}->{b} in {space} succeeded although one end is not there"
            )
            return
        assoc = self.run(self.service.associate(space, item))
        assert {assoc.source_id, assoc.target_id} == {a, b}

    @rule(space=spaces)
    def consolidate(self, space: str) -> None:
        report = self.run(self.service.consolidate(space, ConsolidateInput(min_cluster=2)))
        page = self.run(self.service.list_beliefs(space))
        episodes = {m for m, (_, _, ep) in self.live[space].items() if ep}
        for belief in [*report.beliefs, *page.beliefs]:
            for cit in belief.citations:
                assert cit.episode_id in episodes or cit.episode_id in self.suppressed[space], (
                    f"belief {belief.id} in {space} cites {cit.episode_id}, not an episode of {space}"
                )

    @rule(space=spaces, t=text_ix)
    def recognize(self, space: str, t: int) -> None:
        rec = self.run(self.service.recognize(space, RecognizeInput(content=CONTENTS[t], threshold=0.5)))
        for match in rec.matches:
            assert match.memory_id in self.live[space], f"recognize in {space} matched {match.memory_id}"

    @rule()
    def reopen(self) -> None:
        """Close the service and open a new one on the same root: nothing acknowledged is lost."""
        self.service.close()
        self.service = self._open()

    # -- invariants -------------------------------------------------------------------
    @invariant()
    def lists_match_model(self) -> None:
        for space in SPACES:
            page = self.run(self.service.list_memories(space, limit=100))
            got = {m.id for m in page.memories}
            assert got == set(self.live[space]), (
                f"{space}: listed {sorted(got)}, model {sorted(self.live[space])}"
            )
            for mem in page.memories:
                self._check_memory(space, mem)
            assert page.total == len(self.live[space])

    @invariant()
    def introspection_counts_own_space(self) -> None:
        for space in SPACES:
            stats = self.run(self.service.introspect(space))
            assert stats.memory_space_id == space
            assert stats.memories == len(self.live[space]) + len(self.suppressed[space]), (space, stats)
            assert stats.suppressed == len(self.suppressed[space]), (space, stats)


MultiSpaceMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestMultiSpace = MultiSpaceMachine.TestCase


@pytest.mark.slow
def test_multispace_long() -> None:
    """Long run: many more examples and steps (``python3 run.py test -m slow``)."""
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        MultiSpaceMachine,
        settings=settings(
            max_examples=400,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
