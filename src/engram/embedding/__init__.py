"""Understanding text (SPEC §9): embedders turn memory and query text into unit vectors.

    EmbedderSpec      which embedder a space uses: provider + resolved model (persisted)
    Embedder          the protocol: dimension, embed(texts) -> unit rows, close()
    Embedders         one per server: one Embedder per spec, query cache, warm-up, fallback

Providers: ``local`` (all-MiniLM-L6-v2 on CPU torch, offline; :mod:`.local`), ``openai``
(any OpenAI-compatible ``/embeddings`` server; :mod:`.openai`), ``hash`` (feature hashing, no
model; :mod:`.hashing`) and ``none`` (vectors come from clients only).

Importing this package is cheap: torch and sentence-transformers load when a local model
does, httpx when an openai embedder is first built.
"""

from __future__ import annotations

from .base import (
    LOCAL_DIMENSION,
    LOCAL_MODELS,
    PROVIDERS,
    Embedder,
    EmbedderSpec,
    Vectors,
    l2_normalize,
)
from .pool import Embedders

__all__ = [
    "LOCAL_DIMENSION",
    "LOCAL_MODELS",
    "PROVIDERS",
    "Embedder",
    "EmbedderSpec",
    "Embedders",
    "Vectors",
    "l2_normalize",
]
