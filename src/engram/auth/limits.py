"""Per-key rate limiting: one token bucket per key id (SPEC §10).

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a
request takes one token or is refused with :class:`RateLimited` carrying how
long until a token is back. Buckets of keys idle for a minute are dropped, so
memory stays bounded by the keys active in the last minute.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..errors import RateLimited

_IDLE_DROP_SECONDS = 60.0


class RateLimiter:
    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst) if burst > 0 else max(1.0, 2.0 * self.rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)
        self._last_sweep = clock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key_id: str) -> None:
        """Take one token for ``key_id`` or raise :class:`RateLimited`."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                self._sweep(now)
                return
            self._buckets[key_id] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        raise RateLimited(
            f"rate limit of this API key reached ({self.rate:g} requests/s, burst {self.burst:g})",
            retry_after_seconds=max(1, math.ceil(wait)),
            details={"rate_limit_per_second": self.rate, "rate_limit_burst": self.burst},
        )

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < _IDLE_DROP_SECONDS:
            return
        self._last_sweep = now
        for key in [k for k, (_t, last) in self._buckets.items() if now - last > _IDLE_DROP_SECONDS]:
            del self._buckets[key]
