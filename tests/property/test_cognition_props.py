"""Properties of the cognitive layer (Hypothesis).

* spreading: activation stays in [0, 1], never grows along a path, and spread
  terminates on any graph, cycles and self-loops included;
* decay: monotone in time, floored, 1 at t = 0; the array form agrees;
* consolidation: the same episodes give the same beliefs, in any storage order;
* isolation: two spaces holding the same ids and embeddings with different
  content never leak into each other's outputs.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engram.cognition.clustering import cluster
from engram.cognition.consolidation import Snapshot, build_belief
from engram.cognition.recall import recall
from engram.cognition.spreading import spread
from engram.core.decay import FLOOR, current_activation, retention, retention_array
from engram.core.models import (
    AssociateInput,
    CompleteInput,
    ConsolidateInput,
    Cue,
    EpisodeInput,
    RecallMode,
    RecognizeInput,
    ReminisceQuery,
)
from engram.errors import CueTooWeak
from engram.service import EngramService
from engram.settings import load_settings

T0 = datetime(2026, 2, 1, tzinfo=UTC)

# -- spreading -------------------------------------------------------------------

graphs = st.integers(1, 25).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(0.0, 1.0)), max_size=120),
        st.dictionaries(st.integers(0, n - 1), st.floats(0.0, 1.0), min_size=1, max_size=5),
    )
)


class StepClock:
    """A clock that never runs out: spreading is bounded by hops and threshold alone."""

    def __call__(self) -> float:
        return 0.0


@settings(max_examples=200, deadline=None)
@given(graphs, st.floats(0.05, 0.999), st.floats(0.001, 0.5), st.integers(0, 60))
def test_spreading_is_bounded_decreasing_and_terminates(
    graph: Any, decay: float, threshold: float, max_hops: int
) -> None:
    _n, edge_list, seeds = graph
    adj: dict[int, list[tuple[int, float]]] = {}
    for a, b, w in edge_list:
        adj.setdefault(a, []).append((b, w))
    calls = []

    def neighbours(nodes: list[int]) -> dict[int, list[tuple[int, float]]]:
        calls.append(len(nodes))
        return {x: adj.get(x, []) for x in nodes}

    res = spread(
        seeds,
        neighbours,
        max_hops=max_hops,
        decay=decay,
        threshold=threshold,
        budget_seconds=1.0,
        clock=StepClock(),
    )
    assert not res.truncated
    assert len(calls) <= max_hops
    # Each hop multiplies by at most decay, and spread stops below threshold.
    bound = 0 if max(seeds.values()) < threshold else math.ceil(math.log(threshold) / math.log(decay)) + 1
    assert res.hops_done <= bound
    top = max(seeds.values())
    for node, hit in res.hits.items():
        assert 0.0 <= hit.activation <= 1.0
        assert hit.path[-1] == (node, hit.activation) and len(hit.path) == hit.hops + 1
        acts = [a for _, a in hit.path]
        assert all(x >= y for x, y in itertools.pairwise(acts))  # non-increasing with hops
        assert hit.activation <= top * decay**hit.hops + 1e-12
        for (u, _), (v, _) in itertools.pairwise(hit.path):
            assert any(t == v for t, _ in adj.get(u, []))  # every step is a real edge


# -- decay -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 1e9), st.floats(0.0, 1e9), st.floats(0.0, 10.0), st.floats(0.0, 1.0))
def test_decay_is_monotone_and_floored(t1: float, t2: float, rate: float, activation: float) -> None:
    early, late = sorted((t1, t2))
    r_early, r_late = retention(early, rate), retention(late, rate)
    assert FLOOR <= r_late <= r_early <= 1.0
    assert retention(0.0, rate) == 1.0
    assert np.allclose(retention_array(np.array([early, late]), np.array([rate, rate])), [r_early, r_late])
    now = 2e9
    a_early = current_activation(activation, now - early, rate, now)
    a_late = current_activation(activation, now - late, rate, now)
    assert 0.0 <= a_late <= a_early <= activation + 1e-12


# -- consolidation ---------------------------------------------------------------

episode_sets = st.lists(
    st.tuples(st.integers(0, 3), st.lists(st.floats(-0.2, 0.2), min_size=6, max_size=6)),
    min_size=0,
    max_size=24,
)


def _centres() -> np.ndarray:
    return np.eye(6, dtype=np.float32)[:4] * 3.0


def _snapshot(items: list[tuple[str, np.ndarray]]) -> Snapshot:
    items = sorted(items)
    x = np.asarray([v for _, v in items], dtype=np.float32).reshape(len(items), 6)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return Snapshot(
        list(range(len(items))), [i for i, _ in items], [f"text {i}" for i, _ in items], [0] * len(items), x
    )


@settings(max_examples=150, deadline=None)
@given(episode_sets, st.randoms(use_true_random=False), st.floats(0.5, 0.99), st.integers(2, 4))
def test_clustering_and_beliefs_are_order_independent(
    raw: Any, rnd: Any, threshold: float, min_size: int
) -> None:
    centres = _centres()
    items = [(f"ep-{i:03d}", centres[c] + np.asarray(noise, np.float32)) for i, (c, noise) in enumerate(raw)]
    shuffled = items[:]
    rnd.shuffle(shuffled)
    outs = []
    for variant in (items, shuffled):
        snap = _snapshot(variant)
        clusters = cluster(snap.vectors, threshold, min_size)
        beliefs = [build_belief("space", snap, m, "run", 0.0)[0] for m in clusters]
        outs.append(
            [
                (
                    b.id,
                    b.content,
                    b.strength,
                    b.schema_confidence,
                    b.centroid,
                    [c.model_dump() for c in b.citations],
                )
                for b in beliefs
            ]
        )
        covered = [i for m in clusters for i in m]
        assert len(covered) == len(set(covered)) and all(len(m) >= min_size for m in clusters)
    assert outs[0] == outs[1]


@settings(max_examples=8, deadline=None)
@given(episode_sets.filter(lambda r: len(r) >= 2), st.randoms(use_true_random=False))
def test_consolidation_in_a_space_is_deterministic(raw: Any, rnd: Any) -> None:
    centres = _centres()
    eps = [
        EpisodeInput(
            id=f"ep-{i:03d}",
            what=f"episode {i} of kind {c}",
            when=T0 + timedelta(hours=i),
            embedding=(centres[c] + np.asarray(noise)).tolist(),
        )
        for i, (c, noise) in enumerate(raw)
    ]
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(2):
            order = eps[:]
            rnd.shuffle(order)
            svc = EngramService(
                load_settings(
                    overrides={
                        "embedder": "none", "data_dir": Path(tmp) / str(n), "bootstrap_spaces": ("det",),
                    }, use_env=False
                )
            )
            for ep in order:
                svc.space("det").remember(ep)
            rep = svc.cognition("det").consolidate(ConsolidateInput())
            again = svc.cognition("det").consolidate(ConsolidateInput())
            svc.close()
            strip = [
                (b.id, b.content, b.strength, b.schema_confidence, [c.model_dump() for c in b.citations])
                for b in rep.beliefs
            ]
            assert strip == [
                (b.id, b.content, b.strength, b.schema_confidence, [c.model_dump() for c in b.citations])
                for b in again.beliefs
            ]
            reports.append((rep.run_id, strip))
    assert reports[0] == reports[1]


# -- isolation -------------------------------------------------------------------

shared_data = st.lists(
    st.tuples(st.integers(0, 3), st.lists(st.floats(-0.3, 0.3), min_size=6, max_size=6)),
    min_size=3,
    max_size=12,
).flatmap(
    lambda eps: st.tuples(
        st.just(eps),
        st.lists(
            st.tuples(st.integers(0, len(eps) - 1), st.integers(0, len(eps) - 1), st.floats(0.1, 1.0)),
            max_size=15,
        ),
    )
)


def _outputs(svc: EngramService, space: str, n: int) -> list[Any]:
    cog = svc.cognition(space)
    sp = svc.space(space)
    probe = (_centres()[0] + 0.01).tolist()
    out: list[Any] = []
    for mode in RecallMode:
        out.append(recall(sp, Cue(embedding=probe, mode=mode, trace_activation=True, max_results=20)))
        out.append(recall(sp, Cue(query="episode", mode=mode, trace_activation=True, max_results=20)))
    out.append(cog.recognize(RecognizeInput(content="episode 0", embedding=probe)))
    out.append(cog.reminisce(ReminisceQuery(topic="episode")))
    out.append(cog.reminisce(ReminisceQuery(embedding=probe)))
    out.extend(cog.dream(ConsolidateInput()))
    report = cog.consolidate(ConsolidateInput())
    out.append(report)
    out.extend(cog.get_belief(b.id) for b in report.beliefs)
    out.append(cog.list_beliefs())
    try:
        out.append(cog.complete(CompleteInput(what="episode", embedding=probe[:3])))
    except CueTooWeak as exc:
        out.append(exc.to_envelope())
    out.append(cog.introspect())
    return out


@settings(max_examples=8, deadline=None)
@given(shared_data)
def test_spaces_with_identical_ids_never_see_each_other(data: Any) -> None:
    eps, links = data
    centres = _centres()
    with tempfile.TemporaryDirectory() as tmp:
        svc = EngramService(
            load_settings(overrides={
                "embedder": "none", "data_dir": tmp, "bootstrap_spaces": ("alpha", "bravo"),
            }, use_env=False)
        )
        for space, word in (("alpha", "apple"), ("bravo", "banana")):
            for i, (c, noise) in enumerate(eps):
                svc.space(space).remember(
                    EpisodeInput(
                        id=f"ep-{i}",
                        what=f"episode {i} {word} {word}{c}",
                        where_location=f"{word} town",
                        who=[f"{word}-person"],
                        when=T0 + timedelta(minutes=i),
                        embedding=(centres[c] + np.asarray(noise)).tolist(),
                        auto_link=True,
                    )
                )
            for a, b, w in links:
                if a != b:
                    svc.cognition(space).associate(
                        AssociateInput(source_id=f"ep-{a}", target_id=f"ep-{b}", strength=w)
                    )
        for space, own, other, other_space in (
            ("alpha", "apple", "banana", "bravo"),
            ("bravo", "banana", "apple", "alpha"),
        ):
            outputs = _outputs(svc, space, len(eps))
            text = " ".join(o.model_dump_json() if hasattr(o, "model_dump_json") else str(o) for o in outputs)
            assert other not in text, f"{space} output mentions {other!r}"
            assert f'"{other_space}"' not in text
            assert own in text
            stats = svc.cognition(space).introspect()
            assert stats.memories == len(eps) and stats.memory_space_id == space
        svc.close()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=80)
        )
    )
)
def test_components_match_a_reference_union_find(graph: Any) -> None:
    from engram.cognition.clustering import components

    n, edges = graph
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    src = np.asarray([a for a, _ in edges], dtype=np.int64)
    dst = np.asarray([b for _, b in edges], dtype=np.int64)
    assert components(n, src, dst) == [groups[r] for r in sorted(groups)]
    rev = components(n, dst[::-1].copy(), src[::-1].copy())  # edge order and direction do not matter
    assert rev == components(n, src, dst)
