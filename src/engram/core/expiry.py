"""Expiry of memories (SPEC §11): when a memory expires, and the one read condition that hides it.

A memory stored with ``ttl_seconds`` or ``expires_at`` (or, without either, in a space with a
``default_ttl_seconds``) carries ``memories.expires_at`` (Unix seconds). From that instant on,
by the space's clock, it is never returned: every read of memory rows adds ``LIVE_SQL`` with
``now`` (``MemorySpace.select_rows``, ``row_by_id``, ``list``, ``count`` and the SQL-only
candidate queries). That holds before the background sweep (``MemorySpace.sweep_expired``)
deletes the row; the sweep only reclaims the space and publishes ``expired``.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from .models import MemoryInput, to_epoch

#: The condition of a row that has not expired at ``?`` (bind ``now``); for ``AND``-ing into a WHERE.
LIVE_SQL = "(expires_at IS NULL OR expires_at > ?)"
#: Default meta key of a space's default time to live (seconds, a float as text).
DEFAULT_TTL_KEY = "default_ttl_seconds"


def live_sql(alias: str = "") -> str:
    """``LIVE_SQL`` for a table alias (``live_sql("m")`` -> ``(m.expires_at IS NULL OR ...)``)."""
    return LIVE_SQL if not alias else LIVE_SQL.replace("expires_at", f"{alias}.expires_at")


def expiry_of(item: MemoryInput, now: float, default_ttl: float | None) -> float | None:
    """The ``expires_at`` (epoch seconds) a memory is stored with, checked against ``now``."""
    if item.expires_at is not None:
        at = to_epoch(item.expires_at)
        if at <= now:
            raise InvalidInput(
                f"expires_at {item.expires_at.isoformat()} is not in the future (server time "
                f"{_iso(now)})",
                suggestion="Send a future time, or ttl_seconds for a time relative to the store.",
                example='{"content": "...", "ttl_seconds": 3600}',
            )
        return at
    if item.ttl_seconds is not None:
        return now + float(item.ttl_seconds)
    if default_ttl is not None:
        return now + default_ttl
    return None


def check_default_ttl(value: Any) -> float | None:
    """A space's ``default_ttl_seconds`` as given at creation: None, or a positive finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= 1e10:
        raise InvalidInput(
            f"default_ttl_seconds must be a number of seconds above 0 (at most 1e10), got {value!r}",
            suggestion="Omit it for memories that never expire by default.",
            example='{"id": "agent-7", "default_ttl_seconds": 86400}',
        )
    return float(value)


def _iso(epoch: float) -> str:
    from .models import from_epoch

    return from_epoch(epoch).isoformat()
