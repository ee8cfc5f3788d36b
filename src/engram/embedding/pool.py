"""``Embedders``: the one place a server gets its embedders from (one instance per server).

It builds at most one :class:`Embedder` per :class:`EmbedderSpec`, lazily, and keeps a
small LRU of query vectors per spec, since agents repeat their queries. The default spec is
decided once: ``local`` falls back to ``hash`` (with a warning saying what to install) when
torch, sentence-transformers or the bundled weights are missing, so a bare install still
starts and still finds things by meaning, roughly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from ..errors import EmbedderUnavailable, InvalidInput, ShuttingDown
from ..settings import Settings
from .base import LOCAL_DIMENSION, Embedder, EmbedderSpec, Vectors, hash_model_name
from .hashing import HashEmbedder
from .local import INSTALL_HINT, LocalEmbedder, unavailable_reason

log = logging.getLogger("engram.embedding")


class _QueryCache:
    """A thread-safe LRU of query text -> unit vector for one spec."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> Vectors | None:
        with self._lock:
            vector = self._entries.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(text)
            self.hits += 1
            return vector

    def put(self, text: str, vector: Vectors) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[text] = vector
            self._entries.move_to_end(text)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"size": len(self._entries), "capacity": self.capacity,
                    "hits": self.hits, "misses": self.misses}


QUERY_HOLD_OFF_SECONDS = 10.0


class Embedders:
    """One per server (no globals): caches one Embedder per spec, thread-safe, lazy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._embedders: dict[EmbedderSpec, Embedder] = {}
        self._caches: dict[EmbedderSpec, _QueryCache] = {}
        self._default: EmbedderSpec | None = None
        self._fallback_reason: str | None = None
        self._warm_thread: threading.Thread | None = None
        self._closed = False
        # spec -> (monotonic time of its last failed query embedding, the error): recalls in
        # the next QUERY_HOLD_OFF_SECONDS answer by words at once instead of each waiting
        # out the retries of an unreachable server.
        self._query_down: dict[EmbedderSpec, tuple[float, EmbedderUnavailable]] = {}

    def default_spec(self) -> EmbedderSpec:
        """``settings.embedder`` resolved; ``local`` -> ``hash`` when it cannot load here."""
        with self._lock:
            if self._default is None:
                spec = EmbedderSpec.resolve(None, None, self.settings)
                if spec.provider == "local":
                    reason = unavailable_reason()
                    if reason is not None:
                        fallback = EmbedderSpec("hash", hash_model_name(self.settings.hash_dimension))
                        log.warning(
                            "local embedder %s unavailable (%s); falling back to %s. Semantic "
                            "recall will be much weaker: %s", spec.model, reason, fallback.model,
                            INSTALL_HINT)
                        self._fallback_reason = reason
                        spec = fallback
                self._default = spec
            return self._default

    @property
    def fallback_reason(self) -> str | None:
        """Why the default fell back from ``local`` to ``hash`` (None if it did not)."""
        self.default_spec()
        return self._fallback_reason

    def get(self, spec: EmbedderSpec) -> Embedder | None:
        """The embedder for ``spec`` (None for provider ``none``); built once, not loaded."""
        if spec.provider == "none":
            return None
        with self._lock:
            if self._closed:
                raise ShuttingDown("the embedders are closed: the server is shutting down")
            embedder = self._embedders.get(spec)
            if embedder is None:
                embedder = self._build(spec)
                self._embedders[spec] = embedder
            return embedder

    def _build(self, spec: EmbedderSpec) -> Embedder:
        if spec.provider == "hash":
            return HashEmbedder(spec)
        if spec.provider == "local":
            reason = unavailable_reason()
            if reason is not None:
                raise EmbedderUnavailable(
                    f"local embedder {spec.model} unavailable: {reason}",
                    suggestion=f"On the server, {INSTALL_HINT}; or re-embed the space with "
                               "another provider (engram space reembed ID --provider hash).")
            return LocalEmbedder(spec, self.settings)
        if spec.provider == "openai":
            from .openai import OpenAIEmbedder  # httpx only when a space uses it

            return OpenAIEmbedder(spec, self.settings)
        raise InvalidInput(f"unknown embedder provider {spec.provider!r}")

    def embed_query(self, spec: EmbedderSpec, text: str, *, wait: bool = True) -> Vectors:
        """A 1-D float32 unit vector for ``text`` (a fresh copy; cached by text per spec).

        ``wait=False``: while the local model is still loading in the background (the first
        seconds after start), raise EmbedderUnavailable at once instead of waiting for it, so
        a recall answers by words now rather than stalling for the whole load.
        """
        cache = self._cache(spec)
        vector = cache.get(text)
        if vector is None:
            embedder = self.get(spec)
            if embedder is None:
                raise InvalidInput(
                    "this memory space has no embedder (provider 'none'): send the query's "
                    "embedding with it", example='{"query": "coffee", "embedding": [0.1, ...]}')
            if not wait and self.loading(embedder):
                raise EmbedderUnavailable(
                    f"local embedder {spec.model} is still loading",
                    suggestion="Retry in a few seconds, or pass wait_for_embeddings to wait for it.")
            # Computed outside the cache lock: two threads may embed the same new query at
            # once (same answer), but a slow model never blocks cache hits of other queries.
            down = self._query_down.get(spec)
            if down is not None and time.monotonic() - down[0] < QUERY_HOLD_OFF_SECONDS:
                raise EmbedderUnavailable(f"{down[1].message} (not retried for "
                                          f"{QUERY_HOLD_OFF_SECONDS:.0f} s after a failure)")
            try:
                vector = embedder.embed([text])[0]
            except EmbedderUnavailable as exc:
                self._query_down[spec] = (time.monotonic(), exc)
                raise
            self._query_down.pop(spec, None)
            vector.flags.writeable = False
            cache.put(text, vector)
        return np.array(vector, dtype=np.float32, copy=True)

    def _cache(self, spec: EmbedderSpec) -> _QueryCache:
        with self._lock:
            cache = self._caches.get(spec)
            if cache is None:
                cache = self._caches[spec] = _QueryCache(self.settings.embedding_query_cache)
            return cache

    def query_cache_stats(self, spec: EmbedderSpec) -> dict[str, int]:
        """``size``, ``capacity``, ``hits`` and ``misses`` of the query cache of ``spec``."""
        return self._cache(spec).stats()

    def describe(self) -> str:
        """One start-up log line naming the default embedder and its state."""
        spec = self.default_spec()
        if spec.provider == "none":
            return "embedder none (vectors come from clients only)"
        embedder = self._embedders.get(spec)
        if spec.provider == "local":
            if isinstance(embedder, LocalEmbedder) and embedder.loaded:
                state = ", loaded"
            elif self._warm_thread is not None:
                state = ", loading in background"
            else:
                state = ", loads on first use"
            return f"embedder local ({spec.model}, {LOCAL_DIMENSION}-d{state})"
        if spec.provider == "hash":
            line = f"embedder hash ({spec.model}, {HashEmbedder(spec).dimension}-d)"
            if self._fallback_reason is not None:
                line += f": fallback, local model not installed: {self._fallback_reason}"
            return line
        from .openai import display_url, embeddings_url

        known = self.settings.openai_dimension
        dim = f"{known}-d" if known > 0 else "dimension learned from its first answer"
        url = display_url(embeddings_url(self.settings.openai_base_url))
        return f"embedder openai ({spec.model} at {url}, {dim})"

    def warm(self) -> None:
        """Start loading the default local model in a daemon thread (once); else nothing."""
        spec = self.default_spec()
        if spec.provider != "local":
            return
        embedder = self.get(spec)
        assert isinstance(embedder, LocalEmbedder)
        with self._lock:
            if self._warm_thread is not None:
                return
            thread = threading.Thread(
                target=self._warm, args=(embedder,), name="engram-embedder-warm", daemon=True)
            thread.start()  # before publishing it: wait_warm() must never join an unstarted thread
            self._warm_thread = thread

    def loading(self, embedder: Embedder) -> bool:
        """Whether ``embedder`` is the local model the warm-up is still loading."""
        thread = self._warm_thread
        return (isinstance(embedder, LocalEmbedder) and not embedder.loaded
                and thread is not None and thread.is_alive())

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Wait for the warm-up load to end (loaded or failed); False if still loading.

        True at once when no warm-up was started. For readiness probes and tests.
        """
        thread = self._warm_thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @staticmethod
    def _warm(embedder: LocalEmbedder) -> None:
        try:
            embedder.load()
        except EmbedderUnavailable as exc:  # remembered by the embedder; each use re-raises it
            if not embedder.closed:  # a shutdown during warm-up is not worth a warning
                log.warning("warming the local embedder failed: %s", exc.message)

    def close(self) -> None:
        """Close every embedder; does not wait for a warm-up load (it sees the close)."""
        with self._lock:
            self._closed = True
            embedders = list(self._embedders.values())
            self._embedders.clear()
            self._caches.clear()
        for embedder in embedders:
            embedder.close()
