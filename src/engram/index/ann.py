"""Approximate nearest-neighbour index for large spaces (placeholder: exact only until built)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..settings import Settings
from .vector import VectorSet


class AnnIndex:
    def __init__(self, vectors: VectorSet, space_dir: Path, settings: Settings) -> None:
        self.vectors = vectors
        self.dir = space_dir
        self.settings = settings
        self.ready = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def notify_added(self) -> None:
        pass

    def remove(self, key: int) -> None:
        pass

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        return self.vectors.search_exact(query, k)

    def checkpoint_if_useful(self) -> None:
        pass

    def state(self) -> dict[str, object]:
        return {"kind": "exact", "ready": False}
