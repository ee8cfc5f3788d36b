"""Coverage instrumentation of the code under test only (atheris).

``atheris.instrument_imports(include=["engram.api"])`` instruments *all* of ``engram``: its
``include`` is cut to the top-level package (``"engram.api"`` -> ``"engram"``), so every engram
module imported inside the block is instrumented, the test helpers too. Instrumented code runs
several times slower, and ``engram.testing.isolation.scan`` (called on every answer by the routing
target) is not what is fuzzed. Its ``exclude`` is a list of exact module names, so
:func:`instrument_only` names every engram module outside ``under_test`` there.

This module imports nothing of engram: a target calls it *before* its instrumented imports (a
module imported earlier would be cached uninstrumented).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import atheris

#: target -> the engram packages and modules it fuzzes (instrumented); everything else of engram
#: it imports runs uninstrumented. ``test_fuzz_short`` checks each run's "Instrumenting" lines.
UNDER_TEST: dict[str, tuple[str, ...]] = {
    # The engine: the service and everything below it. Not the isolation scanner (engram.testing),
    # which checks every answer and is no routing code (instrumented, it was a fifth of the run's
    # CPU), nor the transports, which this target does not reach.
    "multi_space_routing": ("engram.service", "engram.spaces", "engram.cognition", "engram.core",
                            "engram.storage", "engram.index", "engram.embedding", "engram.errors"),
    "rest_decoding": ("engram.api", "engram.core.models", "engram.spaces"),
    "proto_decoding": ("engram.api.grpc", "engram.core.models", "engram.spaces"),
}


def engram_modules() -> list[str]:
    """Every module name of the engram package, found on disk (importing nothing)."""
    spec = importlib.util.find_spec("engram")
    assert spec is not None and spec.submodule_search_locations, "engram is not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = ("engram", *path.relative_to(root).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def outside(under_test: tuple[str, ...]) -> list[str]:
    """The engram modules not in (or below) any of ``under_test``."""
    return [n for n in engram_modules()
            if not any(n == p or n.startswith(p + ".") for p in under_test)]


def instrument_only(*under_test: str) -> Any:
    """A context manager: engram modules imported inside it are instrumented only when they are
    (or are below) one of ``under_test``."""
    assert under_test and all(p.startswith("engram") for p in under_test), under_test
    return atheris.instrument_imports(include=["engram"], exclude=outside(under_test))
