"""Embedder specs, the hash embedder and the ``Embedders`` pool (SPEC §9).

The local model and the OpenAI-compatible client have their own modules
(``test_embedding_local.py``, ``test_embedding_openai.py``); nothing here loads torch.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from engram.embedding import LOCAL_MODELS, PROVIDERS, Embedders, EmbedderSpec, l2_normalize
from engram.embedding.hashing import HashEmbedder, bucket, features
from engram.errors import EmbedderUnavailable, InvalidInput, ShuttingDown
from engram.settings import Settings, load_settings


def settings(**overrides: Any) -> Settings:
    return load_settings(overrides=overrides, use_env=False)


def run_python(code: str, *, hash_seed: str = "0") -> str:
    """Run ``code`` in a fresh interpreter (its own PYTHONHASHSEED); return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


# -- EmbedderSpec.resolve -------------------------------------------------------------------


def test_resolve_fills_defaults_from_settings() -> None:
    s = settings(embedder="local", embedder_model="all-MiniLM-L6-v2-int8", hash_dimension=128)
    assert EmbedderSpec.resolve(None, None, s) == EmbedderSpec("local", "all-MiniLM-L6-v2-int8")
    assert EmbedderSpec.resolve("local", "", s) == EmbedderSpec("local", "all-MiniLM-L6-v2-int8")
    # embedder_model belongs to the server's provider: another provider gets its own default.
    assert EmbedderSpec.resolve("hash", None, s) == EmbedderSpec("hash", "hash-128")
    assert EmbedderSpec.resolve("openai", None, s) == EmbedderSpec("openai", "text-embedding-3-small")
    assert EmbedderSpec.resolve("none", None, s) == EmbedderSpec("none", "none")
    assert EmbedderSpec.resolve(" Local ", "all-MiniLM-L6-v2", s).provider == "local"
    assert EmbedderSpec.resolve("openai", "nomic-embed-text", s).model == "nomic-embed-text"
    assert EmbedderSpec.resolve(None, None, settings()) == EmbedderSpec("local", "all-MiniLM-L6-v2-int8")
    assert EmbedderSpec("hash", "hash-64").to_dict() == {"provider": "hash", "model": "hash-64"}


def test_resolve_rejects_unknown_provider_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        EmbedderSpec.resolve("bert", None, settings())
    assert "'bert'" in info.value.message
    assert all(p in info.value.message for p in PROVIDERS)
    with pytest.raises(InvalidInput):  # a bad server setting fails the same way
        EmbedderSpec.resolve(None, None, settings(embedder="word2vec"))


def test_resolve_rejects_unknown_local_model_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        EmbedderSpec.resolve("local", "bge-large", settings())
    assert "'bge-large'" in info.value.message
    assert all(m in info.value.message for m in LOCAL_MODELS)


@pytest.mark.parametrize("model", ["hash", "hash-", "hash-0", "hash-abc", "minilm", "hash-5000"])
def test_resolve_rejects_bad_hash_models(model: str) -> None:
    with pytest.raises(InvalidInput):
        EmbedderSpec.resolve("hash", model, settings(max_embedding_dim=4096))


def test_resolve_rejects_a_model_for_none() -> None:
    with pytest.raises(InvalidInput):
        EmbedderSpec.resolve("none", "all-MiniLM-L6-v2", settings())


# -- hash embedder --------------------------------------------------------------------------

HASH_TEXTS = ["Bob is allergic to peanuts", "the espresso machine is on the third floor", "", "naïve café"]

_PRINT_HASH_VECTORS = f"""
import hashlib, json
from engram.embedding import EmbedderSpec
from engram.embedding.hashing import HashEmbedder
m = HashEmbedder(EmbedderSpec("hash", "hash-384")).embed({HASH_TEXTS!r})
print(json.dumps([hashlib.sha256(row.tobytes()).hexdigest() for row in m]))
"""


def test_hash_is_deterministic_across_processes() -> None:
    here = HashEmbedder(EmbedderSpec("hash", "hash-384")).embed(HASH_TEXTS)
    digests = [hashlib.sha256(row.tobytes()).hexdigest() for row in here]
    # Different hash seeds: a salted hash() anywhere would change the vectors.
    assert json.loads(run_python(_PRINT_HASH_VECTORS, hash_seed="1")) == digests
    assert json.loads(run_python(_PRINT_HASH_VECTORS, hash_seed="2")) == digests


def test_hash_rows_are_unit_float32_and_empty_text_is_zero() -> None:
    emb = HashEmbedder(EmbedderSpec("hash", "hash-384"))
    m = emb.embed(["hello world", "", "   ...!?  ", "x"])
    assert m.dtype == np.float32 and m.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), [1.0, 0.0, 0.0, 1.0], atol=1e-6)
    assert emb.embed([]).shape == (0, 384)


def test_hash_dimension_comes_from_the_model_name() -> None:
    emb = Embedders(settings(hash_dimension=384)).get(EmbedderSpec("hash", "hash-64"))
    assert emb is not None and emb.dimension == 64
    assert emb.embed(["a b c"]).shape == (1, 64)


def test_hash_similar_texts_are_closer_than_unrelated() -> None:
    emb = HashEmbedder(EmbedderSpec("hash", "hash-384"))
    q, near, far = emb.embed(["meeting with Alice about the budget", "budget meeting with alice",
                              "the cat sleeps on the warm windowsill"])
    assert cos(q, near) > 0.6 > cos(q, far)
    # character 3-grams: word forms and typos share direction, unrelated words do not
    q, forms, typo, far = emb.embed(["deploy the server on friday coffee", "deploying servers",
                                     "cofee", "lunch with the marketing team"])
    assert cos(q, forms) > cos(q, far) + 0.1
    assert cos(q, typo) > cos(q, far) + 0.1


def test_hash_matches_the_feature_definition_including_repeats() -> None:
    """Reference: sum of sign * weight per bucket over every feature occurrence, normalised."""
    text = "the the the cat sat on the mat"
    ref = np.zeros(96, dtype=np.float64)
    for feature, weight in features(text):
        index, sign = bucket(feature, 96)
        ref[index] += sign * weight
    ref /= np.linalg.norm(ref)
    got = HashEmbedder(EmbedderSpec("hash", "hash-96")).embed([text])[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert ("w:the", 1.0) in features(text) and ("b:the cat", 0.5) in features(text)
    assert ("c:<ca", 0.5) in features(text)


def test_hash_embeds_a_thousand_texts_in_one_batch_as_one_by_one() -> None:
    """A batch is the texts embedded one by one: one unit vector per text, in order.
    (Its speed is bench/embed_hash.py's figure; unit tests time nothing.)"""
    emb = HashEmbedder(EmbedderSpec("hash", "hash-384"))
    texts = [f"note {i}: call supplier {i % 37} about order {i * 7} before friday" for i in range(1000)]
    batch = np.asarray(emb.embed(texts))
    assert batch.shape == (1000, 384)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for i in (0, 1, 36, 37, 500, 999):
        np.testing.assert_allclose(batch[i], np.asarray(emb.embed([texts[i]]))[0], atol=1e-6)
    assert len({row.tobytes() for row in batch}) == 1000


def test_l2_normalize_keeps_zero_rows() -> None:
    m = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, [[0.6, 0.8], [0.0, 0.0]])


# -- Embedders ------------------------------------------------------------------------------


def test_get_builds_one_embedder_per_spec_across_threads() -> None:
    pool = Embedders(settings())
    spec = EmbedderSpec("hash", "hash-32")
    seen: list[object] = []
    gate = threading.Barrier(8)

    def grab() -> None:
        gate.wait()
        seen.append(pool.get(spec))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in seen}) == 1 and seen[0] is not None
    assert pool.get(EmbedderSpec("hash", "hash-48")) is not seen[0]
    assert pool.get(EmbedderSpec("none", "none")) is None


def test_embed_query_caches_per_spec_with_lru_eviction() -> None:
    pool = Embedders(settings(embedding_query_cache=2))
    spec = EmbedderSpec("hash", "hash-64")
    a1 = pool.embed_query(spec, "alpha")
    assert a1.shape == (64,) and a1.dtype == np.float32
    assert abs(float(np.linalg.norm(a1)) - 1.0) < 1e-6
    a1[:] = 0.0  # the caller's copy: the cache must not change with it
    a2 = pool.embed_query(spec, "alpha")
    np.testing.assert_array_equal(a2, pool.get(spec).embed(["alpha"])[0])  # type: ignore[union-attr]
    assert pool.query_cache_stats(spec) == {"size": 1, "capacity": 2, "hits": 1, "misses": 1}
    pool.embed_query(spec, "beta")
    pool.embed_query(spec, "alpha")  # alpha is now the most recent
    pool.embed_query(spec, "gamma")  # evicts beta
    assert pool.query_cache_stats(spec)["size"] == 2
    before = pool.query_cache_stats(spec)
    pool.embed_query(spec, "alpha")
    pool.embed_query(spec, "beta")
    after = pool.query_cache_stats(spec)
    assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (1, 1)
    other = EmbedderSpec("hash", "hash-32")  # caches are per spec
    assert pool.embed_query(other, "alpha").shape == (32,)
    assert pool.query_cache_stats(other)["misses"] == 1


def test_embed_query_cache_of_zero_caches_nothing() -> None:
    pool = Embedders(settings(embedding_query_cache=0))
    spec = EmbedderSpec("hash", "hash-64")
    pool.embed_query(spec, "alpha")
    pool.embed_query(spec, "alpha")
    assert pool.query_cache_stats(spec) == {"size": 0, "capacity": 0, "hits": 0, "misses": 2}


def test_embed_query_for_none_says_to_send_a_vector() -> None:
    with pytest.raises(InvalidInput, match="send the query's embedding"):
        Embedders(settings()).embed_query(EmbedderSpec("none", "none"), "coffee")


def test_default_spec_is_the_setting_when_local_is_installed() -> None:
    pool = Embedders(settings(embedder="local", embedder_model="all-MiniLM-L6-v2-int8"))
    assert pool.default_spec() == EmbedderSpec("local", "all-MiniLM-L6-v2-int8")
    assert pool.fallback_reason is None
    assert pool.describe() == "embedder local (all-MiniLM-L6-v2-int8, 384-d, loads on first use)"
    assert Embedders(settings(embedder="hash")).describe() == "embedder hash (hash-384, 384-d)"
    assert Embedders(settings(embedder="none")).describe().startswith("embedder none")
    line = Embedders(settings(embedder="openai", openai_base_url="http://u:secret@h:8000/v1?k=1",
                              openai_dimension=768)).describe()
    assert line == "embedder openai (text-embedding-3-small at http://h:8000/v1/embeddings, 768-d)"


_FALLBACK = """
import json, logging, sys
sys.modules["sentence_transformers"] = None  # as if the package were not installed
records = []
class Keep(logging.Handler):
    def emit(self, record): records.append((record.levelname, record.getMessage()))
logging.getLogger("engram").addHandler(Keep())
logging.getLogger("engram").setLevel(logging.INFO)
from engram.embedding import Embedders, EmbedderSpec
from engram.errors import EmbedderUnavailable
from engram.settings import load_settings
pool = Embedders(load_settings(use_env=False, overrides={"embedder": "local", "hash_dimension": 256}))
spec = pool.default_spec()
assert pool.default_spec() is spec  # computed once
pool.warm()  # nothing to warm for hash
try:
    pool.get(EmbedderSpec("local", "all-MiniLM-L6-v2"))
    local_error = None
except EmbedderUnavailable as exc:
    local_error = exc.message
print(json.dumps({"spec": spec.to_dict(), "describe": pool.describe(), "logs": records,
                  "local_error": local_error, "vector": pool.embed_query(spec, "x").shape[0],
                  "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def test_default_spec_falls_back_to_hash_when_local_cannot_import() -> None:
    out = json.loads(run_python(_FALLBACK))
    assert out["spec"] == {"provider": "hash", "model": "hash-256"}
    assert out["vector"] == 256
    assert out["describe"].startswith(
        "embedder hash (hash-256, 256-d): fallback, local model not installed: ")
    assert "sentence_transformers" in out["describe"]
    warnings = [msg for level, msg in out["logs"] if level == "WARNING"]
    assert len(warnings) == 1
    assert "sentence_transformers" in warnings[0] and "pip install 'engram[local]'" in warnings[0]
    assert "sentence_transformers" in out["local_error"]
    assert out["heavy"] == []


def test_get_local_raises_unavailable_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    pool = Embedders(settings())
    with pytest.raises(EmbedderUnavailable, match="torch is not installed") as info:
        pool.get(EmbedderSpec("local", "all-MiniLM-L6-v2"))
    assert "pip install 'engram[local]'" in info.value.suggestion


def test_importing_the_package_loads_no_model_library() -> None:
    code = """
import sys
from engram.embedding import Embedders
from engram.settings import load_settings
pool = Embedders(load_settings(use_env=False))
print(pool.default_spec().provider, pool.describe())
print(sorted(m for m in ("torch", "sentence_transformers", "transformers", "httpx") if m in sys.modules))
"""
    first, heavy = run_python(code).splitlines()
    assert first.split()[0] in ("local", "hash")  # hash: the extra is not installed here
    assert heavy == "[]"


def test_closed_pool_refuses_new_work() -> None:
    pool = Embedders(settings())
    pool.get(EmbedderSpec("hash", "hash-16"))
    pool.close()
    with pytest.raises(ShuttingDown):
        pool.get(EmbedderSpec("hash", "hash-16"))
