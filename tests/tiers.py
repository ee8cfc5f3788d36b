"""The test tiers chosen by file, in one place: ``tests/conftest.py`` marks their tests and times
them, and ``python3 run.py test --tier NAME`` collects only these files (standard library only:
run.py reads this file before the virtual environment exists).

The multi-tenant validation tier (issue 6; budget issue 16): the isolation matrix with its leak
demonstrations, the differential replay, the server crash cycles, the multi-space property machine,
the short fuzz runs and the short load run. Only the tests of these files that are not ``slow``
belong to it.
"""

from __future__ import annotations

MULTITENANT_FILES = (
    "tests/integration/test_isolation_matrix.py",
    "tests/integration/test_differential.py",
    "tests/crash/test_server_crash.py",
    "tests/property/test_multispace_state.py",
    "tests/fuzz/test_fuzz_short.py",
    "tests/integration/test_load_short.py",
)

#: tier name (its pytest marker) -> the files it collects
TIERS = {"multitenant": MULTITENANT_FILES}

#: pytest plugins a tier run does not load (none of the tier's tests use them; schemathesis alone
#: is ~1 s of start-up)
TIER_DISABLED_PLUGINS = ("schemathesis",)

TIER_BUDGET_SECONDS = 60.0


def lower_priority() -> None:
    """``preexec_fn`` of a background run's subprocess (nice 10): the tier's other tests, which
    the runs overlap, go first when the cores are busy."""
    import os

    os.nice(10)
