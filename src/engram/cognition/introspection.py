"""Introspection: statistics of one space, read from its own store and index only."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import numpy as np

from ..core.decay import retention_array
from ..core.embedded import known_dimension
from ..core.models import EmbedderInfo, SpaceStats, from_epoch
from .consolidation import META_LAST_AT

if TYPE_CHECKING:
    from ..core.space import MemorySpace


def average_activation(space: MemorySpace, conn: sqlite3.Connection) -> float:
    """Mean *current* (decayed) activation of the live memories."""
    rows = conn.execute(
        "SELECT activation, last_access, decay_rate FROM memories WHERE suppressed = 0"
    ).fetchall()
    if not rows:
        return 0.0
    now = space.clock()
    arr = np.asarray(rows, dtype=np.float64)
    out = arr[:, 0] * retention_array(now - arr[:, 1], arr[:, 2])
    return float(np.clip(out, 0.0, 1.0).mean())


def embedder_info(space: MemorySpace) -> EmbedderInfo:
    """The embedder ``space`` uses now; its dimension is the space's, else the model's known one."""
    spec = space.embedder_spec
    if spec.provider == "none":
        return EmbedderInfo(provider=spec.provider, model=spec.model, dimension=None)
    return EmbedderInfo(provider=spec.provider, model=spec.model,
                        dimension=space.dim or known_dimension(spec, space.settings.openai_dimension))


def introspect(space: MemorySpace) -> SpaceStats:
    store = space.check_healthy()
    conn = store.reader()
    try:
        by_type = {
            str(t): int(n)
            for t, n in conn.execute(
                "SELECT memory_type, count(*) FROM memories WHERE suppressed = 0 "
                "GROUP BY memory_type ORDER BY 1"
            )
        }
        by_state = {
            str(s): int(n)
            for s, n in conn.execute(
                "SELECT consolidation_state, count(*) FROM memories "
                "WHERE kind = 'episode' AND suppressed = 0 "
                "GROUP BY consolidation_state ORDER BY 1"
            )
        }
        total, suppressed = conn.execute("SELECT count(*), total(suppressed) FROM memories").fetchone()
        associations = int(conn.execute("SELECT count(*) FROM associations").fetchone()[0])
        beliefs = int(conn.execute("SELECT count(*) FROM beliefs").fetchone()[0])
        last = conn.execute("SELECT value FROM meta WHERE key = ?", (META_LAST_AT,)).fetchone()
        avg = average_activation(space, conn)
    except sqlite3.DatabaseError as exc:
        space.guard_read(exc)
        raise  # unreachable: guard_read always raises
    return SpaceStats(
        memory_space_id=space.id,
        memories=int(total),
        by_type=by_type,
        by_consolidation_state=by_state,
        suppressed=int(suppressed),
        associations=associations,
        beliefs=beliefs,
        average_activation=round(avg, 6),
        index=space.ann.state() if space.ann is not None else {},
        storage_bytes=store.size_bytes(),
        last_lsn=space.last_lsn,
        last_consolidation=from_epoch(float(last[0])) if last else None,
        dimension=space.dim,
        embedder=embedder_info(space),
        embedding_backlog=space.embedding_backlog,
        healthy=space.healthy,
    )
