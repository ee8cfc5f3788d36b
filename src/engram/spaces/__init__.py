"""Memory spaces: ids and the registry that owns every loaded space."""

from .ids import MemorySpaceId

__all__ = ["MemorySpaceId"]
