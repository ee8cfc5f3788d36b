"""``MemorySpaceId``: the validated name of a memory space (SPEC §1).

A space id is 3-64 characters of ``[a-z0-9_-]`` starting with a letter or a
digit. It is validated before it ever touches a path, a log line or a label,
and the error names the rule that was broken.
"""

from __future__ import annotations

import re

from ..errors import InvalidMemorySpace

MIN_LEN = 3
MAX_LEN = 64
_ALLOWED = re.compile(r"[a-z0-9_-]")
_FULL = re.compile(r"[a-z0-9][a-z0-9_-]{2,63}")


class MemorySpaceId(str):
    """A ``str`` that is known to be a valid memory space id."""

    __slots__ = ()

    def __new__(cls, value: object) -> MemorySpaceId:
        if isinstance(value, MemorySpaceId):
            return value
        if not isinstance(value, str):
            raise InvalidMemorySpace(
                f"memory space id must be a string, got {type(value).__name__}"
            )
        if _FULL.fullmatch(value) is None:
            raise InvalidMemorySpace(explain(value))
        return super().__new__(cls, value)


def explain(value: str) -> str:
    """Say which rule ``value`` breaks (the message of the error)."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    if len(value) < MIN_LEN:
        return f"memory space id {shown!r} is too short: {len(value)} characters, need at least {MIN_LEN}"
    if len(value) > MAX_LEN:
        return f"memory space id {shown!r} is too long: {len(value)} characters, at most {MAX_LEN}"
    bad = sorted({ch for ch in value if _ALLOWED.fullmatch(ch) is None})
    if bad:
        return (
            f"memory space id {shown!r} contains characters outside [a-z0-9_-]: "
            + ", ".join(repr(c) for c in bad[:10])
        )
    if not value[0].isalnum():
        return f"memory space id {shown!r} must start with a letter or digit, not {value[0]!r}"
    return f"memory space id {shown!r} is not valid"  # pragma: no cover


def is_valid(value: object) -> bool:
    return isinstance(value, str) and _FULL.fullmatch(value) is not None
