"""The ``openai`` embedder against a real HTTP server speaking the OpenAI embeddings wire format.

:class:`~engram.testing.openai_fake.FakeOpenAI` runs ``http.server`` on port 0 in a thread
(see its docstring for the plan of failures it can act out). Nothing waits on wall-clock
sleeps except the client's own timeout.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from engram.embedding import Embedders, EmbedderSpec
from engram.embedding.openai import OpenAIEmbedder
from engram.errors import EmbedderUnavailable
from engram.settings import Settings, load_settings
from engram.testing.openai_fake import FakeOpenAI

KEY_ENV = "ENGRAM_TEST_EMBEDDING_KEY"
KEY = "sk-test-4f9c2e7d1b-secret"
MODEL = "fake-embed-1"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.serve(key=KEY) as state:
        yield state


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


Make = Callable[..., OpenAIEmbedder]


@pytest.fixture
def make() -> Iterator[Make]:
    """``make(url, sleeps=None, **settings)``: an embedder whose backoff sleeps are recorded."""
    made: list[OpenAIEmbedder] = []

    def build(url: str, *, sleeps: list[float] | None = None, **overrides: Any) -> OpenAIEmbedder:
        values: dict[str, Any] = {"embedder": "openai", "openai_base_url": url,
                                  "openai_api_key_env": KEY_ENV, "openai_timeout_seconds": 5.0,
                                  "openai_max_retries": 3, "embedding_batch_size": 64}
        values.update(overrides)
        s: Settings = load_settings(use_env=False, overrides=values)
        record = sleeps if sleeps is not None else []
        embedder = OpenAIEmbedder(EmbedderSpec("openai", MODEL), s, backoff_seconds=0.01,
                                  sleep=record.append)
        made.append(embedder)
        return embedder

    yield build
    for embedder in made:
        embedder.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_batches_sorts_by_index_and_sends_the_key(fake: FakeOpenAI, make: Make) -> None:
    texts = [f"memory number {i} about topic {i % 7}" for i in range(150)]
    got = make(fake.url).embed(texts)
    assert [len(r["body"]["input"]) for r in fake.requests] == [64, 64, 22]
    assert {r["body"]["model"] for r in fake.requests} == {MODEL}
    assert {r["auth"] for r in fake.requests} == {f"Bearer {KEY}"}
    assert {r["path"] for r in fake.requests} == {"/v1/embeddings"}
    assert got.dtype == np.float32 and got.shape == (150, 48)
    np.testing.assert_allclose(got, fake.vectors.embed(texts), atol=1e-6)


def test_no_key_means_no_authorization_header(
        fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, make: Make) -> None:
    monkeypatch.delenv(KEY_ENV)
    fake.key = None
    make(fake.url).embed(["x"])
    assert fake.requests[0]["auth"] is None


def test_transient_failures_are_retried_with_growing_backoff(fake: FakeOpenAI, make: Make) -> None:
    fake.plan = ["503", "503", "429"]
    sleeps: list[float] = []
    got = make(fake.url, sleeps=sleeps, openai_max_retries=3).embed(["a", "b"])
    assert len(fake.requests) == 4 and got.shape == (2, 48)
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # 0.01 * 2**n, jittered
    assert sleeps[2] == 0.0  # Retry-After: 0 wins over the backoff


def test_retries_give_up_after_max_retries(fake: FakeOpenAI, make: Make) -> None:
    fake.plan = ["503"] * 10
    with pytest.raises(EmbedderUnavailable) as info:
        make(fake.url, openai_max_retries=2).embed(["a"])
    assert len(fake.requests) == 3
    assert info.value.message.startswith(f"{fake.url}/embeddings answered 503 Service Unavailable")
    assert "after 3 attempts" in info.value.message and "model is loading" in info.value.message


def test_a_client_error_fails_at_once(fake: FakeOpenAI, make: Make) -> None:
    fake.plan = ["400"]
    sleeps: list[float] = []
    with pytest.raises(EmbedderUnavailable, match=r"answered 400 Bad Request.*must be a list"):
        make(fake.url, sleeps=sleeps).embed(["a"])
    assert len(fake.requests) == 1 and sleeps == []


def test_unreachable_server_names_the_url_without_credentials(make: Make) -> None:
    port = closed_port()
    sleeps: list[float] = []
    embedder = make(f"http://user:hunter2@127.0.0.1:{port}/v1", sleeps=sleeps, openai_max_retries=2)
    with pytest.raises(EmbedderUnavailable) as info:
        embedder.embed(["a"])
    message = info.value.message
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    assert message.startswith(f"could not connect to {url} after 3 attempts: ")
    assert "refused" in message.lower()
    assert "hunter2" not in message and len(sleeps) == 2


def test_timeout_is_honoured(fake: FakeOpenAI, make: Make) -> None:
    fake.plan = ["hang", "hang"]
    embedder = make(fake.url, openai_timeout_seconds=0.3, openai_max_retries=1)
    started = time.perf_counter()
    with pytest.raises(EmbedderUnavailable) as info:
        embedder.embed(["a"])
    elapsed = time.perf_counter() - started
    assert 0.6 <= elapsed < 5.0  # two attempts of 0.3 s, far below the server's 20 s hang
    assert info.value.message == f"no answer from {fake.url}/embeddings within 0.3s, after 2 attempts"
    assert len(fake.requests) == 2


def test_the_key_never_reaches_errors_or_logs(
        fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, make: Make) -> None:
    caplog.set_level(logging.DEBUG)
    fake.plan = ["503-echo", "503-echo", "401-echo"]
    with pytest.raises(EmbedderUnavailable) as info:
        make(fake.url).embed(["a"])
    assert fake.requests[0]["auth"] == f"Bearer {KEY}"  # it was sent...
    assert len(fake.requests) == 3
    text = " ".join([info.value.message, info.value.suggestion, str(info.value), repr(info.value),
                     caplog.text])
    assert "answered 401 Unauthorized" in info.value.message and f"${KEY_ENV}" in info.value.message
    assert "Incorrect API key provided: Bearer ***" in info.value.message
    assert "retry 2 of 3" in caplog.text
    assert KEY not in text  # ...and echoed back by the server, but never repeated by Engram


def test_dimension_is_learned_from_the_first_answer(fake: FakeOpenAI, make: Make) -> None:
    embedder = make(fake.url)
    assert embedder.known_dimension is None
    assert embedder.dimension == 48
    assert len(fake.requests) == 1 and fake.requests[0]["body"]["input"] == ["dimension probe"]
    assert embedder.dimension == 48 and len(fake.requests) == 1


def test_a_wrong_dimension_or_count_is_an_error(fake: FakeOpenAI, make: Make) -> None:
    configured = make(fake.url, openai_dimension=32)
    assert configured.dimension == 32 and fake.requests == []  # configured: no probe
    with pytest.raises(EmbedderUnavailable, match=r"returned 48-d embeddings, expected 32-d \(openai_dim"):
        configured.embed(["a"])
    fake.plan = ["short"]
    with pytest.raises(EmbedderUnavailable, match="returned 2 embeddings for 3 inputs"):
        make(fake.url).embed(["a", "b", "c"])


def test_embedders_pool_uses_the_settings(fake: FakeOpenAI) -> None:
    s = load_settings(use_env=False, overrides={"embedder": "openai", "openai_base_url": fake.url,
                                                "openai_api_key_env": KEY_ENV, "embedder_model": MODEL})
    pool = Embedders(s)
    spec = pool.default_spec()
    assert spec == EmbedderSpec("openai", MODEL)
    vector = pool.embed_query(spec, "coffee")
    np.testing.assert_allclose(vector, fake.vectors.embed(["coffee"])[0], atol=1e-6)
    pool.embed_query(spec, "coffee")
    assert len(fake.requests) == 1  # the second one came from the query cache
    pool.close()


def test_a_failed_query_embedding_is_not_retried_at_once(fake: FakeOpenAI) -> None:
    """Recall answers by words while the server is down, instead of each recall waiting out
    the retries: after one failure, query embeddings fail fast for a hold-off."""
    s = load_settings(use_env=False, overrides={"embedder": "openai", "openai_base_url": fake.url,
                                                "openai_api_key_env": KEY_ENV, "embedder_model": MODEL,
                                                "openai_max_retries": 0})
    pool = Embedders(s)
    spec = pool.default_spec()
    fake.failing = True
    with pytest.raises(EmbedderUnavailable):
        pool.embed_query(spec, "coffee")
    assert len(fake.requests) == 1
    with pytest.raises(EmbedderUnavailable, match="not retried"):
        pool.embed_query(spec, "tea")
    assert len(fake.requests) == 1  # failed fast: nothing sent
    pool.close()
