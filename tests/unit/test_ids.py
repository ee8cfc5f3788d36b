"""MemorySpaceId: SPEC §1 rules, with errors that name the broken rule."""

from __future__ import annotations

import pytest

from engram.errors import InvalidInput, InvalidMemorySpace
from engram.spaces.ids import MemorySpaceId, is_valid


@pytest.mark.parametrize("value", ["abc", "a-b", "a_b", "0ab", "agent-7", "x" * 64, "9" * 3, "a--", "a__"])
def test_valid_ids_round_trip(value: str) -> None:
    sid = MemorySpaceId(value)
    assert sid == value and isinstance(sid, str) and is_valid(value)
    assert MemorySpaceId(sid) is sid


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("ab", "too short"),
        ("", "too short"),
        ("x" * 65, "too long"),
        ("Abc", "outside [a-z0-9_-]"),
        ("a b", "outside [a-z0-9_-]"),
        ("ab/c", "outside [a-z0-9_-]"),
        ("../etc", "outside [a-z0-9_-]"),
        ("abc\n", "outside [a-z0-9_-]"),
        ("caf\u00e9", "outside [a-z0-9_-]"),
        ("-abc", "must start with a letter or digit"),
        ("_abc", "must start with a letter or digit"),
    ],
)
def test_invalid_ids_name_the_rule(value: str, rule: str) -> None:
    with pytest.raises(InvalidMemorySpace) as info:
        MemorySpaceId(value)
    assert rule in info.value.message
    assert info.value.code == "INVALID_MEMORY_SPACE"
    assert info.value.http_status == 400 and info.value.grpc_status == "INVALID_ARGUMENT"
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    assert not is_valid(value)


@pytest.mark.parametrize("value", [None, 123, b"abc", ["abc"]])
def test_non_strings_rejected(value: object) -> None:
    with pytest.raises(InvalidMemorySpace, match="must be a string"):
        MemorySpaceId(value)
    assert not is_valid(value)


def test_long_values_are_truncated_in_message() -> None:
    with pytest.raises(InvalidMemorySpace) as info:
        MemorySpaceId("x" * 500)
    assert len(info.value.message) < 200
