"""The ``hash`` embedder: deterministic feature hashing, no model.

Features of a text are its lowercased words (``\\w+``), its word bigrams and the character
3-grams of each word (padded with ``<``/``>`` so prefixes and suffixes count), the last two
weighted lower. Each feature is hashed with BLAKE2b (stable across processes, unlike the
salted built-in ``hash``) into an index and a sign, added up, and the row L2-normalised.
Texts sharing words or word pieces therefore point in similar directions: good enough for
tests, tiny installs and typo-tolerant lookups, with no download and no warm-up.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from collections.abc import Sequence

import numpy as np

from .base import EmbedderSpec, Vectors, hash_dimension_of, l2_normalize

_WORD = re.compile(r"\w+")

UNIGRAM_WEIGHT = 1.0
BIGRAM_WEIGHT = 0.5
TRIGRAM_WEIGHT = 0.5

# Feature -> (bucket, sign) memo per embedder. Bounded: cleared wholesale when full, which
# costs one re-hash of the live vocabulary and keeps memory flat on unbounded input.
_MEMO_LIMIT = 200_000


def features(text: str) -> list[tuple[str, float]]:
    """The weighted features of ``text`` (empty for text without word characters)."""
    words = _WORD.findall(text.lower())
    out: list[tuple[str, float]] = [("w:" + w, UNIGRAM_WEIGHT) for w in words]
    out.extend((f"b:{a} {b}", BIGRAM_WEIGHT) for a, b in itertools.pairwise(words))
    for w in words:
        padded = f"<{w}>"
        out.extend(("c:" + padded[i:i + 3], TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return out


def bucket(feature: str, dimension: int) -> tuple[int, float]:
    """Stable (index, sign) of a feature: 8 bytes of BLAKE2b, sign from the top bit."""
    h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return h % dimension, (-1.0 if h >> 63 else 1.0)


class HashEmbedder:
    """Feature-hashing embedder; its dimension is the ``n`` of its ``hash-<n>`` model name."""

    def __init__(self, spec: EmbedderSpec) -> None:
        self.spec = spec
        self._dimension = hash_dimension_of(spec.model)
        self._memo: dict[str, tuple[int, float]] = {}
        self._memo_lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        memo = self._memo
        dim = self._dimension
        for row, text in enumerate(texts):
            for feature, weight in features(text):
                hit = memo.get(feature)
                if hit is None:
                    hit = bucket(feature, dim)
                    self._remember(feature, hit)
                rows.append(row)
                cols.append(hit[0])
                vals.append(hit[1] * weight)
        matrix = np.zeros((len(texts), dim), dtype=np.float32)
        # add.at, not fancy-index assignment: colliding features in one row must add up.
        np.add.at(matrix, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)),
                  np.asarray(vals, dtype=np.float32))
        return l2_normalize(matrix)

    def _remember(self, feature: str, hit: tuple[int, float]) -> None:
        with self._memo_lock:
            if len(self._memo) >= _MEMO_LIMIT:
                # Replace, don't clear in place: a reader in embed() holds the old dict.
                self._memo = {}
            self._memo[feature] = hit

    def close(self) -> None:
        self._memo = {}
