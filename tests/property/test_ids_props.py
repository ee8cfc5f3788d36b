"""MemorySpaceId validation: valid ids round-trip, everything else is rejected with a named rule."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from engram.errors import InvalidMemorySpace
from engram.spaces.ids import MemorySpaceId, explain, is_valid

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
REST = ALNUM + "-_"
SPEC = re.compile(r"\A[a-z0-9][a-z0-9_-]{2,63}\Z")

valid_ids = st.builds(lambda a, b: a + b, st.sampled_from(ALNUM), st.text(REST, min_size=2, max_size=63))


@given(valid_ids)
def test_valid_ids_round_trip(value: str) -> None:
    sid = MemorySpaceId(value)
    assert sid == value and str(sid) == value and is_valid(value)
    assert MemorySpaceId(str(sid)) == sid and hash(sid) == hash(value)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=80), st.text(REST + "A. /\\\n", max_size=70)))
def test_validity_matches_the_spec(value: str) -> None:
    expected = SPEC.match(value) is not None
    assert is_valid(value) is expected
    try:
        MemorySpaceId(value)
    except InvalidMemorySpace as exc:
        assert not expected
        assert exc.message == explain(value)
        assert any(
            rule in exc.message for rule in ("too short", "too long", "outside [a-z0-9_-]", "must start")
        )
    else:
        assert expected
