"""What every embedder shares: the spec naming it, the protocol it follows, normalisation.

An :class:`EmbedderSpec` is the persistent identity of an embedder (a space stores it and
reopens with it), so resolving one validates everything a later load depends on: the
provider, and for ``local`` and ``hash`` the model name. Nothing here imports torch,
sentence-transformers or httpx.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput
from ..settings import Settings

PROVIDERS = ("local", "openai", "hash", "none")

Vectors = npt.NDArray[np.float32]

# The local models this build can load: name -> apply dynamic int8 quantisation.
LOCAL_MODELS: dict[str, bool] = {"all-MiniLM-L6-v2": False, "all-MiniLM-L6-v2-int8": True}
# The int8 variant by default: on the quality benchmark 0.839 recall@10 against 0.851 for
# fp32 (docs/benchmarks.md), at ~2.3x the speed (a short query ~5 ms instead of ~12 ms; it
# keeps up with 100 remembers/s on 2 cores, where fp32 does not).
LOCAL_DEFAULT_MODEL = "all-MiniLM-L6-v2-int8"
LOCAL_DIMENSION = 384
OPENAI_DEFAULT_MODEL = "text-embedding-3-small"
NONE_MODEL = "none"

_HASH_MODEL = re.compile(r"hash-([1-9][0-9]{0,5})")


def hash_model_name(dimension: int) -> str:
    return f"hash-{dimension}"


def hash_dimension_of(model: str) -> int:
    """The dimension a ``hash-<n>`` model name encodes (validated by :meth:`EmbedderSpec.resolve`)."""
    match = _HASH_MODEL.fullmatch(model)
    if match is None:
        raise InvalidInput(f"hash embedder model must look like 'hash-<dimension>', got {model!r}",
                           example="hash-384")
    return int(match.group(1))


def default_model(provider: str, settings: Settings) -> str:
    if provider == "local":
        return LOCAL_DEFAULT_MODEL
    if provider == "openai":
        return OPENAI_DEFAULT_MODEL
    if provider == "hash":
        return hash_model_name(settings.hash_dimension)
    return NONE_MODEL


@dataclass(frozen=True)
class EmbedderSpec:
    """Which embedder a space uses: ``provider`` and a resolved, never empty, ``model``."""

    provider: str
    model: str

    @classmethod
    def resolve(cls, provider: str | None, model: str | None, settings: Settings) -> EmbedderSpec:
        """Fill defaults from ``settings`` and validate.

        ``provider`` None means ``settings.embedder``. ``model`` None or "" means
        ``settings.embedder_model`` when the provider is the server's default one (the model
        setting belongs to that provider), else the provider's own default.
        """
        chosen = (settings.embedder if provider is None else provider).strip().lower()
        if chosen not in PROVIDERS:
            raise InvalidInput(
                f"embedder provider must be one of {', '.join(PROVIDERS)}; got {chosen!r}",
                example='{"provider": "local", "model": "all-MiniLM-L6-v2"}',
            )
        name = (model or "").strip()
        if not name and chosen == settings.embedder.strip().lower():
            name = settings.embedder_model.strip()
        if not name:
            name = default_model(chosen, settings)
        if chosen == "local" and name not in LOCAL_MODELS:
            raise InvalidInput(
                f"local embedder model must be one of {', '.join(LOCAL_MODELS)}; got {name!r}",
                suggestion="Pick a bundled model, or serve another one over the OpenAI wire "
                           "format and use provider 'openai'.",
                example='{"provider": "local", "model": "all-MiniLM-L6-v2-int8"}',
            )
        if chosen == "hash":
            dimension = hash_dimension_of(name)
            if dimension > settings.max_embedding_dim:
                raise InvalidInput(
                    f"hash embedder dimension {dimension} exceeds max_embedding_dim "
                    f"{settings.max_embedding_dim}", example="hash-384")
        if chosen == "none" and name != NONE_MODEL:
            raise InvalidInput(f"embedder provider 'none' takes no model (or 'none'); got {name!r}",
                               example='{"provider": "none"}')
        return cls(chosen, name)

    def to_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


class Embedder(Protocol):
    """Turns texts into unit vectors. Implementations are thread-safe."""

    spec: EmbedderSpec

    @property
    def dimension(self) -> int:
        """Vector length; may load the model or probe the server once."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """float32 of shape (len(texts), dimension), rows L2-normalised (zero rows stay zero).

        Raises :class:`~engram.errors.EmbedderUnavailable` when it cannot embed now.
        """
        ...

    def close(self) -> None: ...


def l2_normalize(matrix: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length, as float32; an all-zero row stays all zero."""
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {m.shape}")
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    out = np.zeros_like(m)
    np.divide(m, norms, out=out, where=norms > 0)
    return out
