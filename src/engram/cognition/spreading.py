"""Spreading activation over the association graph of one space.

Activation starts at the seeds (the best direct candidates of a recall) and
flows along weighted edges: crossing an edge of strength ``w`` multiplies the
activation by ``w * decay`` (exponential decay per hop). A node keeps the
strongest activation that reached it, and the path it came by. Spread stops at
``max_hops``, when the propagated activation falls below ``threshold``, or when
the time budget runs out (returning what it has). Because a node is only
re-expanded when it is reached with *more* activation than before, and every
hop multiplies by at most ``decay < 1``, cycles terminate (and ``max_hops``
bounds the work even before that).

Each hop expands at most ``beam`` frontier nodes (the most active ones): the
cost of a hop is then bounded by ``beam * fan-out`` edges whatever the graph
looks like, which is what keeps spreading inside a recall's latency budget on
a 100k-memory space with auto-linking on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Neighbours = Callable[[list[int]], Mapping[int, list[tuple[int, float]]]]


@dataclass
class Hit:
    activation: float
    hops: int
    path: list[tuple[int, float]] = field(default_factory=list)  # (node, activation on arrival), seed first


@dataclass
class SpreadResult:
    hits: dict[int, Hit]
    hops_done: int
    truncated: bool  # the time budget ran out


def spread(
    seeds: Mapping[int, float],
    neighbours: Neighbours,
    *,
    max_hops: int = 3,
    decay: float = 0.5,
    threshold: float = 0.05,
    budget_seconds: float = 0.015,
    beam: int = 64,
    clock: Callable[[], float] = time.perf_counter,
) -> SpreadResult:
    decay = min(max(decay, 0.0), 0.999)
    deadline = clock() + budget_seconds
    hits: dict[int, Hit] = {}
    for node, act in seeds.items():
        a = min(1.0, max(0.0, float(act)))
        hits[node] = Hit(a, 0, [(node, a)])
    frontier = _top(hits, [n for n, h in hits.items() if h.activation >= threshold], beam)
    hops = 0
    truncated = False
    while frontier and hops < max_hops:
        if clock() > deadline:
            truncated = True
            break
        hops += 1
        adjacency = neighbours(frontier)
        next_frontier: list[int] = []
        for node in frontier:
            src = hits[node]
            for other, weight in adjacency.get(node, ()):
                a = src.activation * min(1.0, max(0.0, weight)) * decay
                if a < threshold:
                    continue
                cur = hits.get(other)
                if cur is None or a > cur.activation + 1e-12:
                    hits[other] = Hit(a, src.hops + 1, [*src.path, (other, a)])
                    next_frontier.append(other)
        frontier = _top(hits, list(dict.fromkeys(next_frontier)), beam)
    return SpreadResult(hits, hops, truncated)


def _top(hits: Mapping[int, Hit], nodes: list[int], beam: int) -> list[int]:
    """The ``beam`` most active nodes (ties by node id, so the result is deterministic)."""
    if len(nodes) <= beam:
        return sorted(nodes)
    return sorted(nodes, key=lambda n: (-hits[n].activation, n))[:beam]
