"""A real HTTP server speaking the OpenAI embeddings wire format, for tests.

:class:`FakeOpenAI` runs ``http.server`` on port 0 in a thread (``with FakeOpenAI.serve()
as fake``). It answers ``POST /v1/embeddings`` with hash-embedder vectors (so the right
answer is known), in reverse ``index`` order (so a client must sort), checks the bearer
key when one is set, and follows a plan for its next requests: ``"503"``, ``"429"`` (with
``Retry-After: 0``), ``"400"``, ``"401-echo"`` (echoes the key it got, as some servers do),
``"503-echo"``, ``"short"`` (one embedding fewer than inputs) or ``"hang"`` (no answer until
the server stops). ``failing = True`` answers 503 to everything until it is cleared.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..embedding import EmbedderSpec
from ..embedding.hashing import HashEmbedder


@dataclass
class FakeOpenAI:
    dimension: int = 48
    key: str | None = None
    plan: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    failing: bool = False
    url: str = ""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.vectors = HashEmbedder(EmbedderSpec("hash", f"hash-{self.dimension}"))

    def next_action(self, record: dict[str, Any]) -> str:
        with self.lock:
            self.requests.append(record)
            if self.failing:
                return "503"
            return self.plan.pop(0) if self.plan else "ok"

    @classmethod
    @contextmanager
    def serve(cls, **fields: Any) -> Iterator[FakeOpenAI]:
        """Run one on ``127.0.0.1:<free port>``; ``url`` is its base URL (``.../v1``)."""
        state = cls(**fields)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        server.daemon_threads = True
        state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield state
        finally:
            state.release.set()
            server.shutdown()
            server.server_close()


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
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
