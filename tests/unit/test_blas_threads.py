"""The ``blas_threads`` setting reaches numpy's BLAS through threadpoolctl (no mocks: the real
library's own report, ``threadpool_info()``); tests/integration/test_server_blas.py checks a
started server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from engram.server import limit_blas
from engram.settings import Settings


def blas_threads() -> list[int]:
    return [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]


@pytest.fixture
def restored_blas() -> Any:
    np.ones((4, 4)) @ np.ones(4)  # BLAS loaded
    before = threadpool_limits(limits=None)  # records the current limits
    yield
    before.restore_original_limits()


@pytest.mark.usefixtures("restored_blas")
def test_the_setting_sets_blas_threads_and_zero_leaves_them() -> None:
    assert Settings().blas_threads == 1
    assert blas_threads(), "numpy's BLAS is visible to threadpoolctl"
    report = limit_blas(1)
    assert blas_threads() and set(blas_threads()) == {1}
    assert [int(i["num_threads"]) for i in report] == blas_threads()
    limit_blas(2)
    assert set(blas_threads()) == {2}
    limit_blas(0)  # "leave the library's default": nothing changes
    assert set(blas_threads()) == {2}
