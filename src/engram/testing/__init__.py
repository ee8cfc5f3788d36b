"""Test helpers shipped with Engram: real server processes for tests and scripts."""

from .harness import EngramProcess, HarnessError

__all__ = ["EngramProcess", "HarnessError"]
