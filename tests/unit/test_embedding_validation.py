"""Embedding validation: each rule's message, and the first offending value picks it.

The check is vectorised (one numpy pass, not a Python loop per value); these pin
the behaviour the per-value loop had, so every transport keeps the same errors.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engram.core.models import Cue, MemoryInput


def _error(embedding: list[float]) -> str:
    with pytest.raises(ValidationError) as info:
        MemoryInput(content="x", embedding=embedding)
    (err,) = info.value.errors()
    assert err["loc"] == ("embedding",)
    return str(err["msg"])


@pytest.mark.parametrize(
    ("embedding", "expected"),
    [
        ([], "must not be empty"),
        ([0.0, -0.0], "must not be all zeros"),
        ([1.0, float("nan")], "must be finite numbers"),
        ([1.0, float("-inf")], "must be finite numbers"),
        ([1.0, -1e39], "must fit in 32-bit floats (|x| <= 3.402823e+38); got -1e+39"),
        # the first bad value decides, whichever rule it breaks
        ([float("inf"), 1e39], "must be finite numbers"),
        ([1e39, float("nan")], "got 1e+39"),
    ],
)
def test_embedding_rules(embedding: list[float], expected: str) -> None:
    assert expected in _error(embedding)


def test_valid_embeddings_pass_unchanged() -> None:
    values = [0.0, 1e-45, -3.4028234663852886e38, 3.4028234663852886e38, 1]
    assert MemoryInput(content="x", embedding=values).embedding == [float(v) for v in values]
    assert Cue(embedding=[0.5, -0.5]).embedding == [0.5, -0.5]
