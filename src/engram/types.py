"""Shapes shared across layers, so that no layer imports a higher one to name them.

Layers point one way: transports -> service -> spaces -> cognition -> core ->
index / storage / embedding. What two layers both need to name lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the epoch; passed in everywhere time matters, so tests can move it."""


def system_clock() -> float:
    return time.time()
