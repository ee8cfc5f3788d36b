"""The ``openai`` embedder: any server speaking ``POST {base_url}/embeddings``.

OpenAI, Ollama, vLLM, LM Studio and llama.cpp all answer
``{"model": m, "input": [texts]}`` with ``{"data": [{"embedding": [...], "index": i}]}``.
Texts go out in batches of ``embedding_batch_size``. Connect errors, timeouts, 429 and 5xx
are retried ``openai_max_retries`` times (so at most 1 + retries attempts) with exponential
backoff and jitter, or after the server's ``Retry-After`` (capped); any other non-2xx
answer fails at once, since repeating it cannot help.

Every failure becomes :class:`~engram.errors.EmbedderUnavailable`, translated here and only
here, with a message naming the URL (credentials and query stripped) and what happened.

The API key is read from the environment variable named by ``openai_api_key_env`` on every
request (so a rotated key is picked up) and sent as a bearer token. It never goes into a log
line or an error message: text that came from the server is scrubbed of it too, since some
servers echo the key they rejected.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from ..errors import EmbedderUnavailable
from ..settings import Settings
from .base import EmbedderSpec, Vectors, l2_normalize

log = logging.getLogger("engram.embedding")

BACKOFF_SECONDS = 0.5  # first retry waits ~this; doubles per retry
BACKOFF_CAP_SECONDS = 8.0
RETRY_AFTER_CAP_SECONDS = 30.0  # a server asking for longer gets this; the caller retries later
PROBE_TEXT = "dimension probe"
_SNIPPET = 200


def embeddings_url(base_url: str) -> str:
    """``{base_url}/embeddings``, keeping a query string (Azure's ``?api-version=``) at the end."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/embeddings"))


def display_url(url: str) -> str:
    """``url`` without user:password and query string: safe for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible HTTP server; thread-safe (httpx pools connections)."""

    def __init__(
        self,
        spec: EmbedderSpec,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        backoff_seconds: float = BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.url = embeddings_url(settings.openai_base_url)
        self.safe_url = display_url(self.url)
        self._key_env = settings.openai_api_key_env
        self._timeout = settings.openai_timeout_seconds
        self._max_retries = max(0, settings.openai_max_retries)
        self._batch_size = settings.embedding_batch_size
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._dimension: int | None = settings.openai_dimension if settings.openai_dimension > 0 else None
        self._configured_dimension = self._dimension is not None
        self._dimension_lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(self._timeout), transport=transport)

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self.embed([PROBE_TEXT])  # learns it from the answer
        assert self._dimension is not None
        return self._dimension

    @property
    def known_dimension(self) -> int | None:
        """The dimension if configured or already learned; never touches the network."""
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        parts = [self._request(texts[i:i + self._batch_size])
                 for i in range(0, len(texts), self._batch_size)]
        return l2_normalize(np.concatenate(parts, axis=0))

    def close(self) -> None:
        self._client.close()

    # -- one batch ----------------------------------------------------------------------------

    def _request(self, batch: list[str]) -> Vectors:
        key = os.environ.get(self._key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {"model": self.spec.model, "input": batch}
        attempts = 1 + self._max_retries
        for attempt in range(1, attempts + 1):
            wait: float | None = None
            try:
                response = self._client.post(self.url, json=body, headers=headers)
            except httpx.TimeoutException:
                failure = (f"no answer from {self.safe_url} within {self._timeout:g}s, "
                           f"after {_attempts(attempt)}")
            except httpx.ConnectError as exc:
                failure = (f"could not connect to {self.safe_url} after {_attempts(attempt)}: "
                           f"{_reason(exc)}")
            except httpx.TransportError as exc:  # dropped connection, protocol error...
                failure = f"request to {self.safe_url} failed after {_attempts(attempt)}: {_reason(exc)}"
            else:
                status = response.status_code
                if response.is_success:
                    return self._parse(response, len(batch), key)
                what = (f"{self.safe_url} answered {status} {response.reason_phrase}: "
                        f"{_snippet(response.text, key)}")
                if status != 429 and status < 500:
                    hint = (f" (is the key in ${self._key_env} right?)" if status in (401, 403)
                            else "")
                    raise EmbedderUnavailable(f"{what}{hint}")
                failure = f"{what} (after {_attempts(attempt)})"
                wait = _retry_after(response.headers.get("retry-after"))
            if attempt == attempts:
                raise EmbedderUnavailable(_scrub(failure, key))
            if wait is None:
                ceiling = min(BACKOFF_CAP_SECONDS, self._backoff * 2 ** (attempt - 1))
                wait = ceiling * (0.5 + random.random() / 2)  # jitter: spread retrying clients
            log.warning("embedding request failed (%s); retry %d of %d in %.2fs",
                        _scrub(failure, key), attempt, self._max_retries, wait)
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _parse(self, response: httpx.Response, expected: int, key: str) -> Vectors:
        where = self.safe_url
        try:
            payload: Any = response.json()
        except ValueError:
            raise EmbedderUnavailable(
                f"{where} answered with a body that is not JSON: {_snippet(response.text, key)}"
            ) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or not all(
                isinstance(item, dict) and isinstance(item.get("embedding"), list) for item in data):
            raise EmbedderUnavailable(
                f"{where} answered without a 'data' list of {{'embedding': [...]}} objects: "
                f"{_snippet(response.text, key)}")
        if len(data) != expected:
            raise EmbedderUnavailable(f"{where} returned {len(data)} embeddings for {expected} inputs")
        order = [item.get("index", position) for position, item in enumerate(data)]
        if sorted(order) != list(range(expected)):
            raise EmbedderUnavailable(f"{where} returned embedding indexes {sorted(order)[:10]}, "
                                      f"expected 0..{expected - 1}")
        rows = [item["embedding"] for _, item in sorted(zip(order, data, strict=True),
                                                         key=lambda pair: pair[0])]
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise EmbedderUnavailable(f"{where} returned embeddings of different lengths or "
                                      f"non-numeric values") from None
        if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
            raise EmbedderUnavailable(f"{where} returned empty or non-finite embeddings")
        self._check_dimension(matrix.shape[1])
        return matrix

    def _check_dimension(self, got: int) -> None:
        with self._dimension_lock:
            if self._dimension is None:
                self._dimension = got
                log.info("embedder openai (%s at %s): learned dimension %d from the first answer",
                         self.spec.model, self.safe_url, got)
                return
        if got != self._dimension:
            source = ("openai_dimension setting" if self._configured_dimension
                      else "learned from its first answer")
            raise EmbedderUnavailable(
                f"{self.safe_url} returned {got}-d embeddings, expected {self._dimension}-d "
                f"({source}); model {self.spec.model!r} does not match this space")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _snippet(text: str, key: str) -> str:
    text = " ".join(text.split())
    if len(text) > _SNIPPET:
        text = text[:_SNIPPET] + "..."
    return _scrub(text or "(empty body)", key)


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text
