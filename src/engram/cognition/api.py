"""``SpaceCognition``: the cognitive operations of one memory space.

One instance per loaded space (``space.extensions["cognition"]``). Every method
reads and writes only its own space's store and vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

from ..core.models import (
    Association,
    AssociateInput,
    Belief,
    BeliefPage,
    CompleteInput,
    Completion,
    ConsolidateInput,
    ConsolidationReport,
    DreamStep,
    Recognition,
    RecognizeInput,
    Reminiscence,
    ReminisceQuery,
    SpaceStats,
)
from ..settings import Settings

if TYPE_CHECKING:
    from ..core.space import MemorySpace


class SpaceCognition:
    def __init__(self, space: "MemorySpace", settings: Settings) -> None:
        self.space = space
        self.settings = settings

    def associate(self, item: AssociateInput) -> Association:
        raise NotImplementedError

    def recognize(self, item: RecognizeInput) -> Recognition:
        raise NotImplementedError

    def reminisce(self, query: ReminisceQuery) -> Reminiscence:
        raise NotImplementedError

    def consolidate(self, item: ConsolidateInput) -> ConsolidationReport:
        raise NotImplementedError

    def dream(self, item: ConsolidateInput) -> Iterator[DreamStep]:
        raise NotImplementedError

    def list_beliefs(self, cursor: Optional[str] = None, limit: int = 50) -> BeliefPage:
        raise NotImplementedError

    def get_belief(self, belief_id: str) -> Belief:
        raise NotImplementedError

    def complete(self, item: CompleteInput) -> Completion:
        raise NotImplementedError

    def introspect(self) -> SpaceStats:
        raise NotImplementedError

    def close(self) -> None:
        pass
