"""Shared set-up for the atheris targets: an in-process service on a throw-away data root.

Targets are run as scripts (``python tests/fuzz/fuzz_x.py [corpus] -atheris_runs=N``), so this
module is imported by path, not as part of the test package.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
from typing import Any

from engram.service import EngramService
from engram.settings import load_settings

SPACES = ("fz-a", "fz-b", "fz-c")


def make_service(**overrides: Any) -> tuple[EngramService, asyncio.AbstractEventLoop]:
    # Under the run's work directory when test_fuzz_short gives one (FUZZ_DATA_ROOT; on tmpfs in the
    # tier, and removed with it even when libFuzzer exits without running atexit, as on a finding);
    # else on tmpfs when there is one: durability is not what a fuzz target checks.
    ram = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = tempfile.mkdtemp(prefix="engram-fuzz-", dir=os.environ.get("FUZZ_DATA_ROOT") or ram)
    settings = load_settings(
        overrides={"embedder": "none",
            "data_dir": root,
            "bootstrap_spaces": ",".join(SPACES),
            "durability": "buffered",
            "log_level": "error",
            "consolidation_interval_seconds": 0,
            **overrides,
        },
        use_env=False,
    )
    logging.disable(logging.CRITICAL)  # the deprecation warnings of every fallback request drown the output
    service = EngramService(settings)
    loop = asyncio.new_event_loop()

    def cleanup() -> None:
        service.close()
        loop.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(cleanup)
    return service, loop
