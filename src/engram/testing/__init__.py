"""Test helpers shipped with Engram: real server processes for tests and scripts, and in-process
helpers (a fake clock, a service factory)."""

from .harness import EngramProcess, HarnessError
from .inprocess import FakeClock, make_service, scratch_dir

__all__ = ["EngramProcess", "FakeClock", "HarnessError", "make_service", "scratch_dir"]
