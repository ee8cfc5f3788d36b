"""The ``local`` embedder: all-MiniLM-L6-v2 (fp32 and int8) from the bundled weights, offline.

Loading takes seconds, so one ``Embedders`` pool (warmed in the background, as a server does)
serves the whole module. Skipped when the ``engram[local]`` extra is not installed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from engram.embedding import Embedders, EmbedderSpec
from engram.embedding.local import LocalEmbedder
from engram.errors import EmbedderUnavailable
from engram.settings import load_settings

# The project's test environment installs the local model (run.py: extras local,test): these
# tests fail, rather than skip, if it is missing.
FP32 = EmbedderSpec("local", "all-MiniLM-L6-v2")
INT8 = EmbedderSpec("local", "all-MiniLM-L6-v2-int8")
FACTS = ["the espresso machine is on the third floor", "Bob is allergic to peanuts",
         "the quarterly report is due on Friday"]


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def load_log() -> Iterator[_Keep]:
    keep = _Keep()
    logger = logging.getLogger("engram.embedding")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(keep)
    yield keep
    logger.removeHandler(keep)
    logger.setLevel(old_level)


@pytest.fixture(scope="module")
def pool(load_log: _Keep) -> Iterator[Embedders]:
    # The fp32 model as the default here: warm() loads the default, which the tests then race.
    embedders = Embedders(load_settings(use_env=False, overrides={
        "embedder": "local", "embedder_model": FP32.model}))
    embedders.warm()  # background load, as at server start; first use below waits for it
    yield embedders
    embedders.close()


def _loads(log: _Keep, model: str) -> int:
    return sum(1 for m in log.messages if m.startswith(f"local embedder {model} loaded"))


def test_warm_then_concurrent_first_use_loads_once(pool: Embedders, load_log: _Keep) -> None:
    assert pool.describe() in ("embedder local (all-MiniLM-L6-v2, 384-d, loading in background)",
                               "embedder local (all-MiniLM-L6-v2, 384-d, loaded)")
    embedder = pool.get(FP32)
    assert isinstance(embedder, LocalEmbedder)
    texts = [f"note number {i} about the espresso machine" for i in range(8)]
    results: dict[int, np.ndarray] = {}
    gate = threading.Barrier(4)

    def use(i: int) -> None:
        gate.wait()
        results[i] = embedder.embed(texts[i::4])

    threads = [threading.Thread(target=use, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _loads(load_log, FP32.model) == 1
    assert pool.describe() == "embedder local (all-MiniLM-L6-v2, 384-d, loaded)"
    sequential = embedder.embed(texts)
    for i in range(4):  # concurrent calls give the same vectors as one sequential call
        np.testing.assert_allclose(results[i], sequential[i::4], atol=1e-5)


@pytest.mark.parametrize("spec", [FP32, INT8], ids=["fp32", "int8"])
def test_local_vectors_carry_meaning(pool: Embedders, spec: EmbedderSpec) -> None:
    embedder = pool.get(spec)
    assert embedder is not None and embedder.dimension == 384
    facts = embedder.embed(FACTS)
    assert facts.dtype == np.float32 and facts.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(facts, axis=1), 1.0, atol=1e-5)
    coffee = pool.embed_query(spec, "coffee")
    allergies = pool.embed_query(spec, "food allergies")
    assert float(coffee @ facts[0]) > float(coffee @ facts[1]) + 0.05
    assert int(np.argmax(facts @ allergies)) == 1
    assert embedder.embed([]).shape == (0, 384)


def test_int8_stays_close_to_fp32(pool: Embedders) -> None:
    fp32, int8 = pool.get(FP32), pool.get(INT8)
    assert fp32 is not None and int8 is not None
    a, b = fp32.embed(FACTS), int8.embed(FACTS)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() > 0.85 and not np.allclose(a, b, atol=1e-3)  # quantised, still similar


def test_warm_loads_without_any_request() -> None:
    pool = Embedders(load_settings(use_env=False, overrides={
        "embedder": "local", "embedder_model": INT8.model}))
    try:
        assert pool.wait_warm(0) is True  # nothing started yet
        pool.warm()
        pool.warm()  # idempotent
        assert pool.wait_warm(120) is True
        embedder = pool.get(INT8)
        assert isinstance(embedder, LocalEmbedder) and embedder.loaded
        assert pool.describe() == "embedder local (all-MiniLM-L6-v2-int8, 384-d, loaded)"
    finally:
        pool.close()


_OFFLINE = """
import json, os, socket, sys
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(name, None)
attempts = []
def refuse(self, address, *args):
    attempts.append(repr(address))
    raise OSError("network disabled by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from engram.embedding import EmbedderSpec
from engram.errors import EmbedderUnavailable
from engram.embedding.local import LocalEmbedder
from engram.settings import load_settings
e = LocalEmbedder(EmbedderSpec("local", "all-MiniLM-L6-v2-int8"), load_settings(use_env=False))
v = e.embed(["offline please"])
print(json.dumps({"attempts": attempts, "norm": float((v[0] ** 2).sum()),
                  "offline": [os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")]}))
"""


def test_loading_never_touches_the_network() -> None:
    done = subprocess.run([sys.executable, "-c", _OFFLINE], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["attempts"] == []
    assert abs(out["norm"] - 1.0) < 1e-4
    assert out["offline"] == ["1", "1"]
    assert "Loading weights" not in done.stderr  # no tqdm bar in the server's log stream


def test_closed_embedder_refuses() -> None:
    alone = LocalEmbedder(INT8, load_settings(use_env=False))
    alone.close()
    with pytest.raises(EmbedderUnavailable, match="closed"):
        alone.embed(["x"])


def test_a_recall_does_not_wait_for_a_model_still_loading(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In the seconds after start the model loads in the background: a text recall answers by
    words at once (saying why) unless it asks to wait for embeddings; once loaded, by meaning."""
    from engram.cognition.recall import recall
    from engram.core.models import Cue, MemoryInput
    from engram.testing import make_service

    svc = make_service(tmp_path, ["warming"], embedder="local", embedder_model=INT8.model,
                       embedding_wait_seconds=120)  # the load may take long on a busy machine
    try:
        svc.embedders.warm()
        space = svc.space("warming")
        space.remember(MemoryInput(id="m", content="the espresso machine is on the third floor"))
        assert svc.embedders.wait_warm(0) is False, "the model loaded before the test could look"
        quick = recall(space, Cue(query="espresso machine", max_results=3))
        assert [i.memory.id for i in quick.memories.vivid + quick.memories.associated] == ["m"]  # by words
        assert "still loading" in json.dumps(quick.metadata, default=str)
        waited = recall(space, Cue(query="where is the coffee maker", max_results=3,
                                   wait_for_embeddings=True))
        assert waited.metadata.get("query_vector") == "embedder"  # by meaning, once loaded
        assert [i.memory.id for i in waited.memories.vivid + waited.memories.associated] == ["m"]
        assert svc.embedders.wait_warm(0) is True
    finally:
        svc.close()
