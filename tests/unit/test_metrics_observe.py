"""``Metrics.observe`` keeps each label set's counter and histogram children after the first call
(Round 8 of bench/notes/write_profile.md): the counts and histograms are those of a fresh lookup
per call, per status and per space, and spaces past the label cap (``_other``) are counted there
without being remembered one by one."""

from __future__ import annotations

from engram.observability import OTHER, Metrics


def _count(metrics: Metrics, op: str, space: str, status: str) -> float:
    labels = {"transport": "grpc", "operation": op, "memory_space": space, "status": status}
    value = metrics.registry.get_sample_value("engram_requests_total", labels)
    return value or 0.0


def _hist(metrics: Metrics, op: str, space: str) -> tuple[float, float]:
    labels = {"transport": "grpc", "operation": op, "memory_space": space}
    count = metrics.registry.get_sample_value("engram_request_duration_seconds_count", labels) or 0.0
    total = metrics.registry.get_sample_value("engram_request_duration_seconds_sum", labels) or 0.0
    return count, total


def test_repeated_observations_count_per_label_set() -> None:
    metrics = Metrics(space_label_cap=2)
    for _ in range(3):
        metrics.observe("grpc", "Remember", "a", "OK", 0.5)
    metrics.observe("grpc", "Remember", "a", "NOT_FOUND", 0.25)
    metrics.observe("grpc", "Recall", "a", "OK", 1.0)
    metrics.observe("grpc", "Remember", None, "INVALID_ARGUMENT", 0.125)
    assert _count(metrics, "Remember", "a", "OK") == 3
    assert _count(metrics, "Remember", "a", "NOT_FOUND") == 1
    assert _count(metrics, "Recall", "a", "OK") == 1
    assert _count(metrics, "Remember", "none", "INVALID_ARGUMENT") == 1
    assert _hist(metrics, "Remember", "a") == (4, 1.75)
    assert _hist(metrics, "Recall", "a") == (1, 1.0)


def test_spaces_past_the_cap_count_as_other_and_are_not_kept() -> None:
    metrics = Metrics(space_label_cap=2)
    for space in ("a", "b", *(f"s{i}" for i in range(500)), "a"):
        metrics.observe("grpc", "Remember", space, "OK", 0.5)
    assert _count(metrics, "Remember", "a", "OK") == 2
    assert _count(metrics, "Remember", "b", "OK") == 1
    assert _count(metrics, "Remember", OTHER, "OK") == 500
    assert _hist(metrics, "Remember", OTHER) == (500, 250.0)
    assert len(metrics._observers) == 2  # a and b: the 500 others are looked up each time
