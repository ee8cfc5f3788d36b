"""Memory semantics beyond storage: decay, spreading, association, consolidation, completion."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.space import MemorySpace
    from ..service import EngramService


def install(service: EngramService) -> None:
    """Attach per-space cognition state to every space the registry opens."""
    from .api import SpaceCognition

    def attach(space: MemorySpace) -> None:
        cog = SpaceCognition(space, service.settings)
        space.extensions["cognition"] = cog
        space.extensions["stats"] = lambda: cog.introspect().model_dump(mode="json")

    service.registry.on_open.append(attach)
    for space in service.registry.loaded():
        attach(space)
