"""Forgetting curve: strength as a function of time since last access.

Exponential early (``exp(-rate * t)`` for ``t`` below the knee), a power law
after it (continuous at the knee), never below ``floor``. Computed lazily on
read, with the clock passed in, so tests can move time without sleeping.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

KNEE_HOURS = 24.0
POWER = 0.5
FLOOR = 0.05


def retention(elapsed_seconds: float, decay_rate: float, floor: float = FLOOR) -> float:
    """Fraction of strength left after ``elapsed_seconds`` (1.0 at t=0, >= floor, monotone)."""
    if elapsed_seconds <= 0.0 or decay_rate <= 0.0:
        return 1.0
    hours = elapsed_seconds / 3600.0
    if hours <= KNEE_HOURS:
        r = math.exp(-decay_rate * hours / KNEE_HOURS)
    else:
        at_knee = math.exp(-decay_rate)
        r = at_knee * (hours / KNEE_HOURS) ** (-POWER * decay_rate)
    return max(floor, min(1.0, r))


def retention_array(
    elapsed_seconds: np.ndarray, decay_rate: np.ndarray, floor: float = FLOOR
) -> np.ndarray:
    """:func:`retention` over arrays (same curve, for statistics over many memories)."""
    import numpy as np

    hours = np.maximum(np.asarray(elapsed_seconds, dtype=np.float64), 0.0) / 3600.0
    rate = np.maximum(np.asarray(decay_rate, dtype=np.float64), 0.0)
    early = np.exp(-rate * hours / KNEE_HOURS)
    late = np.exp(-rate) * np.power(np.maximum(hours, KNEE_HOURS) / KNEE_HOURS, -POWER * rate)
    r = np.where(hours <= KNEE_HOURS, early, late)
    return np.clip(r, floor, 1.0)


def current_activation(activation: float, last_access: float, decay_rate: float, now: float) -> float:
    """Activation decayed from its stored value by the time since last access."""
    return max(0.0, min(1.0, activation * retention(now - last_access, decay_rate)))


def recency(created_or_access: float, now: float, half_life_hours: float = 24.0 * 7) -> float:
    """A [0, 1] freshness score: 1 now, 0.5 after one half-life."""
    age_h = max(0.0, now - created_or_access) / 3600.0
    return float(0.5 ** (age_h / half_life_hours))

