"""The ``openai`` embedder against a real HTTP server speaking the OpenAI embeddings wire format.

:class:`FakeOpenAI` runs ``http.server`` on port 0 in a thread. It answers with hash-embedder
vectors (so the right answer is known), in reverse ``index`` order (so the client must sort),
checks the bearer key, and follows a plan for its next requests: ``"503"``, ``"429"`` (with
``Retry-After: 0``), ``"400"``, ``"401-echo"`` (echoes the key it got, as some servers do),
``"503-echo"``, ``"short"`` (one embedding fewer than inputs) or ``"hang"`` (no answer until
the test ends). Nothing waits on wall-clock sleeps except the client's own timeout.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from engram.embedding import Embedders, EmbedderSpec
from engram.embedding.hashing import HashEmbedder
from engram.embedding.openai import OpenAIEmbedder
from engram.errors import EmbedderUnavailable
from engram.settings import Settings, load_settings

KEY_ENV = "ENGRAM_TEST_EMBEDDING_KEY"
KEY = "sk-test-4f9c2e7d1b-secret"
MODEL = "fake-embed-1"


@dataclass
class FakeOpenAI:
    dimension: int = 48
    key: str | None = None
    plan: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.vectors = HashEmbedder(EmbedderSpec("hash", f"hash-{self.dimension}"))

    def next_action(self, record: dict[str, Any]) -> str:
        with self.lock:
            self.requests.append(record)
            return self.plan.pop(0) if self.plan else "ok"


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization")
            action = fake.next_action({"path": self.path, "body": body, "auth": auth})
            if action == "hang":
                fake.release.wait(20)
                return
            if action in ("503", "503-echo"):
                echo = f" for key {auth}" if action == "503-echo" else ""
                self._send(503, {"error": {"message": f"model is loading{echo}"}})
                return
            if action == "429":
                self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                return
            if action == "400":
                self._send(400, {"error": {"message": "input must be a list of strings"}})
                return
            if action == "401-echo" or (fake.key is not None and auth != f"Bearer {fake.key}"):
                self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
                return
            if self.path != "/v1/embeddings":
                self._send(404, {"error": {"message": "no such route"}})
                return
            texts = body["input"]
            rows = fake.vectors.embed(texts)
            data = [{"object": "embedding", "index": i, "embedding": rows[i].tolist()}
                    for i in range(len(texts))]
            data.reverse()  # servers may answer out of order: the client sorts by index
            if action == "short":
                data = data[1:]
            self._send(200, {"object": "list", "data": data, "model": body["model"]})

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI(key=KEY)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


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
