"""``engram space reembed`` (SPEC §9) against real server processes: REST
``POST/GET /api/v1/spaces/{id}/reembed``, the ReembedSpace / GetReembedStatus RPCs, the Python
clients, the CLI (progress bar, ``--no-wait``, Ctrl-C) and resumption after a kill -9.

The servers embed with ``hash`` (fast, no model). Their ``openai`` provider points at a
:class:`~engram.testing.openai_fake.FakeOpenAI`: one that fails every request keeps a
re-embedding running for as long as a test needs, without racing the background worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from click.testing import CliRunner, Result

from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.cli.main import cli
from engram.client import AsyncEngramClient, EngramClient
from engram.client.grpc import GrpcClient
from engram.errors import InvalidInput
from engram.testing import EngramProcess
from engram.testing.openai_fake import FakeOpenAI

API = "/api/v1"
COLOURS = ["red", "green", "blue", "amber", "violet", "white", "black"]
ANIMALS = ["fox", "heron", "otter", "badger", "lynx"]
PLACES = ["the bridge", "the orchard", "the harbour", "the station", "the old mill", "the market"]
NOTES = [f"note {i}: the {COLOURS[i % 7]} {ANIMALS[i % 5]} crossed {PLACES[i % 6]} at {i} o'clock"
         for i in range(50)]
OPENAI = {"openai_max_retries": 0, "openai_timeout_seconds": 5}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """An OpenAI-compatible server that answers 503 to everything: re-embeddings with it never end."""
    with FakeOpenAI.serve(failing=True) as f:
        yield f


@pytest.fixture(scope="module")
def server(module_server_factory: Callable[..., EngramProcess], fake: FakeOpenAI) -> EngramProcess:
    return module_server_factory(settings={"openai_base_url": fake.url, **OPENAI}, name="reembed")


@pytest.fixture(scope="module")
def http(server: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def _space(http: httpx.Client, space_id: str, notes: list[str] = NOTES) -> str:
    made = http.post(f"{API}/spaces", json={"id": space_id})
    assert made.status_code == 201, made.text
    assert made.json()["embedder"] == {"provider": "hash", "model": "hash-384", "dimension": 384}
    for note in notes:
        stored = http.post(f"{API}/memories/remember", json={"content": note},
                           headers={"X-Memory-Space": space_id})
        assert stored.status_code == 201, stored.text
    return space_id


def _until_idle(status: Callable[[], Any], state: Callable[[Any], str], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        current = status()
        if state(current) == "idle":
            return current
        assert time.monotonic() < deadline, f"re-embedding still running after {timeout} s: {current}"
        time.sleep(0.02)


def _rest_idle(http: httpx.Client, space_id: str) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        resp = http.get(f"{API}/spaces/{space_id}/reembed")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    return dict(_until_idle(get, lambda s: str(s["state"])))


def _first(http: httpx.Client, space_id: str, query: str) -> dict[str, Any]:
    resp = http.post(f"{API}/memories/recall", json={"query": query, "rank": "similarity", "max_results": 5},
                     headers={"X-Memory-Space": space_id})
    assert resp.status_code == 200, resp.text
    mem = resp.json()["memories"]
    items = [*mem["vivid"], *mem["associated"], *mem["reconstructed"]]
    assert items, resp.text
    return dict(items[0])


def _envelope(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "suggestion", "example"} <= set(body["error"])
    return dict(body["error"])


# ----------------------------------------------------------------------------- REST


def test_rest_reembed_switches_model_and_dimension(http: httpx.Client) -> None:
    sid = _space(http, "re-rest")
    started = http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "hash", "model": "hash-96"})
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["memory_space_id"] == sid and body["state"] == "running" and body["total"] == 50
    assert body["target"] == {"provider": "hash", "model": "hash-96", "dimension": 96}
    assert body["embedder"]["model"] == "hash-384"  # the old one until the switch

    done = _rest_idle(http, sid)
    assert done["target"] is None and done["done"] == done["total"] == 50
    assert done["embedder"] == {"provider": "hash", "model": "hash-96", "dimension": 96}
    desc = http.get(f"{API}/spaces/{sid}").json()
    assert desc["embedder"] == {"provider": "hash", "model": "hash-96", "dimension": 96}
    assert desc["dimension"] == 96 and desc["embedding_backlog"] == 0
    assert desc["stats"]["embedder"]["model"] == "hash-96"
    stats = http.get(f"{API}/system/introspect", headers={"X-Memory-Space": sid}).json()
    assert stats["embedder"] == {"provider": "hash", "model": "hash-96", "dimension": 96}
    assert stats["embedding_backlog"] == 0 and stats["dimension"] == 96
    top = _first(http, sid, NOTES[17])
    assert top["memory"]["content"] == NOTES[17] and top["score"] == pytest.approx(1.0, abs=1e-5)
    # The new size is the only one the space takes now.
    old = http.post(f"{API}/memories/remember", json={"content": "x", "embedding": [0.5] * 384},
                    headers={"X-Memory-Space": sid})
    assert _envelope(old, 400)["code"] == "EMBEDDING_DIMENSION_MISMATCH"


def test_rest_reembed_of_an_unknown_space_is_404(http: httpx.Client) -> None:
    for resp in (http.post(f"{API}/spaces/re-nobody/reembed", json={"provider": "hash"}),
                 http.get(f"{API}/spaces/re-nobody/reembed")):
        err = _envelope(resp, 404)
        assert err["code"] == "MEMORY_SPACE_NOT_FOUND" and "re-nobody" in err["message"]


def test_rest_reembed_rejects_bad_bodies(http: httpx.Client) -> None:
    sid = _space(http, "re-bad", NOTES[:3])
    none = _envelope(http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "none"}), 400)
    assert none["code"] == "INVALID_INPUT" and "needs an embedder" in none["message"]
    extra = _envelope(http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "hash", "size": 3}), 400)
    assert "size" in extra["message"] and "/api/v1/spaces/agent-7/reembed" in extra["example"]
    unknown = _envelope(http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "word2vec"}), 400)
    assert "word2vec" in unknown["message"]
    idle = http.get(f"{API}/spaces/{sid}/reembed").json()
    assert idle["state"] == "idle" and idle["embedder"]["model"] == "hash-384"  # nothing started


def test_rest_another_target_while_running_is_400_and_the_same_resumes(server: EngramProcess,
                                                                      http: httpx.Client) -> None:
    sid = _space(http, "re-busy", NOTES[:10])
    started = http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "openai"})
    assert started.status_code == 202, started.text
    assert started.json()["target"]["provider"] == "openai"
    other = http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "hash", "model": "hash-64"})
    err = _envelope(other, 400)
    assert err["code"] == "INVALID_INPUT" and "already being re-embedded" in err["message"]
    again = http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "OpenAI"})  # same target: resumes
    assert again.status_code == 202 and again.json()["state"] == "running", again.text
    status = http.get(f"{API}/spaces/{sid}/reembed").json()
    assert status["state"] == "running" and status["target"]["model"] == "text-embedding-3-small"
    assert status["embedder"]["model"] == "hash-384" and status["total"] == 10
    # The Python clients see the same, as the engine's own exception.
    with EngramClient(server.http_url, space=sid) as client:
        assert client.reembed_status().target is not None
        assert client.reembed(provider="openai").state == "running"
        with pytest.raises(InvalidInput, match="already being re-embedded"):
            client.reembed(provider="hash", model="hash-64")

    async def run() -> str:
        async with AsyncEngramClient(server.http_url, space=sid) as client:
            return (await client.reembed_status(sid)).state

    assert asyncio.run(run()) == "running"


# ----------------------------------------------------------------------------- gRPC


def test_grpc_reembed_switches_model_and_dimension(server: EngramProcess, http: httpx.Client) -> None:
    sid = _space(http, "re-grpc")
    with GrpcClient(server.grpc_target, space=sid) as client:
        started = client.reembed(provider="hash", model="hash-96")
        assert started.state == spb.REEMBED_STATE_RUNNING and started.total == 50
        target = started.target
        assert (target.provider, target.model, target.dimension) == ("hash", "hash-96", 96)
        assert started.embedder.model == "hash-384" and started.memory_space_id == sid

        done = _until_idle(client.reembed_status,
                           lambda s: "idle" if s.state == spb.REEMBED_STATE_IDLE else "running")
        assert not done.HasField("target") and done.done == done.total == 50
        now = done.embedder
        assert (now.provider, now.model, now.dimension) == ("hash", "hash-96", 96)
        desc = client.get_space()
        assert desc.dimension == 96 and desc.embedder.model == "hash-96" and desc.embedding_backlog == 0
        intro = client.introspect().space
        assert intro.embedder.model == "hash-96" and intro.embedder.dimension == 96
        result = client.recall(NOTES[33], rank="similarity", max_results=5)
        items = [*result.memories.vivid, *result.memories.associated]
        assert items and items[0].memory.content == NOTES[33]


def test_grpc_reembed_errors(server: EngramProcess, http: httpx.Client) -> None:
    sid = _space(http, "re-grpc-busy", NOTES[:5])
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = spb_grpc.EngramServiceStub(channel)
        openai = spb.EmbedderChoice(provider="openai")
        started = stub.ReembedSpace(spb.ReembedSpaceRequest(memory_space_id=sid, embedder=openai))
        assert started.status.state == spb.REEMBED_STATE_RUNNING
        other = spb.ReembedSpaceRequest(memory_space_id=sid, embedder=spb.EmbedderChoice(provider="hash"))
        with pytest.raises(grpc.RpcError) as busy:
            stub.ReembedSpace(other)
        assert busy.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "already being re-embedded" in (busy.value.details() or "")
        status = stub.GetReembedStatus(spb.GetReembedStatusRequest(memory_space_id=sid)).status
        assert status.state == spb.REEMBED_STATE_RUNNING and status.target.provider == "openai"
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetReembedStatus(spb.GetReembedStatusRequest(memory_space_id="re-nobody"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as unnamed:
            stub.ReembedSpace(spb.ReembedSpaceRequest())
        assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(unnamed.value.trailing_metadata())["engram-error-code"] == "MEMORY_SPACE_REQUIRED"


# ----------------------------------------------------------------------------- CLI


def engram(server: EngramProcess, transport: str, *args: str) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    env["COLUMNS"] = "200"
    where = ["--url", server.http_url]
    if transport == "grpc":
        where += ["--transport", "grpc", "--grpc-target", server.grpc_target]
    return CliRunner().invoke(cli, [*args, *where], env=env, catch_exceptions=False)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_reembed_shows_progress_and_ends_with_the_new_embedder(
        server: EngramProcess, http: httpx.Client, transport: str) -> None:
    sid = _space(http, f"re-cli-{transport}", NOTES[:30])
    res = engram(server, transport, "space", "reembed", sid, "--provider", "hash", "--model", "hash-64",
                 "--interval", "0.05")
    assert res.exit_code == 0, res.stderr
    assert f"re-embedding space {sid}" in res.stdout and "with hash/hash-64 (64-d)" in res.stdout
    assert f"re-embedding {sid}" in res.stderr and "30/30" in res.stderr  # the progress bar
    assert res.stdout.rstrip().endswith(f"re-embedded space {sid}: now hash/hash-64 (64-d), 30 memories")
    desc = http.get(f"{API}/spaces/{sid}").json()
    assert desc["embedder"] == {"provider": "hash", "model": "hash-64", "dimension": 64}
    shown = engram(server, transport, "space", "get", sid)  # the stats' embedder is not listed twice
    assert shown.exit_code == 0 and "hash/hash-64 (64-d)" in shown.stdout
    assert shown.stdout.count("embedder") == 1 and shown.stdout.count("backlog") == 1

    as_json = engram(server, transport, "space", "reembed", sid, "--provider", "hash", "--model", "hash-32",
                     "--interval", "0.05", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    final = json.loads(as_json.stdout)
    assert final["state"] == "idle" and final["done"] == final["total"] == 30
    assert final["embedder"] == {"provider": "hash", "model": "hash-32", "dimension": 32}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_reembed_no_wait_resume_and_conflict(server: EngramProcess, http: httpx.Client,
                                                 transport: str) -> None:
    sid = _space(http, f"re-cli-busy-{transport}", NOTES[:4])
    started = engram(server, transport, "space", "reembed", sid, "--provider", "openai", "--no-wait",
                     "--json")
    assert started.exit_code == 0, started.stderr
    status = json.loads(started.stdout)
    assert status["state"] == "running" and status["target"]["provider"] == "openai"
    resumed = engram(server, transport, "space", "reembed", sid, "--provider", "openai", "--no-wait")
    assert resumed.exit_code == 0, resumed.stderr
    assert "0/4 done" in resumed.stdout and "running on the server" in resumed.stdout
    other = engram(server, transport, "space", "reembed", sid, "--provider", "hash")
    assert other.exit_code == 2 and "already being re-embedded" in other.stderr
    lonely = engram(server, transport, "space", "reembed", sid, "--model", "hash-8")
    assert lonely.exit_code == 2 and "--model needs --provider" in lonely.stderr
    missing = engram(server, transport, "space", "reembed", "re-nobody", "--provider", "hash")
    assert missing.exit_code == 3 and "re-nobody" in missing.stderr


def test_cli_ctrl_c_leaves_it_running_on_the_server(server: EngramProcess, http: httpx.Client) -> None:
    """A real ``python -m engram`` process, interrupted with SIGINT while it follows the progress."""
    sid = _space(http, "re-cli-sigint", NOTES[:6])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update(ENGRAM_URL=server.http_url, PYTHONUNBUFFERED="1", COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "engram", "space", "reembed", sid, "--provider", "openai",
                             "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the server has started it
        assert f"re-embedding space {sid}" in first, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "keeps running on the server" in err and f"engram space reembed {sid} --provider openai" in err
    status = http.get(f"{API}/spaces/{sid}/reembed").json()
    assert status["state"] == "running" and status["target"]["provider"] == "openai"


# ----------------------------------------------------------------------------- restart


def test_reembed_resumes_after_kill_9(engram_server_factory: Callable[..., EngramProcess]) -> None:
    """Two batches done, the third in flight: kill -9; the restarted server embeds only the rest."""
    with FakeOpenAI.serve(plan=["ok", "ok", "hang"]) as fake:
        settings = {"openai_base_url": fake.url, "embedding_batch_size": 8, **OPENAI}
        srv = engram_server_factory(settings=settings)
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:
            sid = _space(http, "re-crash", NOTES[:40])
            started = http.post(f"{API}/spaces/{sid}/reembed", json={"provider": "openai"})
            assert started.status_code == 202, started.text

            def progress() -> dict[str, Any]:
                return dict(http.get(f"{API}/spaces/{sid}/reembed").json())

            deadline = time.monotonic() + 30
            while progress()["done"] < 16:  # the third batch hangs in the fake: done stays at 16
                assert time.monotonic() < deadline, progress()
                time.sleep(0.02)
            status = progress()
            assert status["done"] == 16 and status["state"] == "running", status
            # The third batch in flight (hanging in the fake) before the kill: else the restarted
            # server's first batch would take the plan's "hang", time out and be sent twice.
            while len(fake.requests) < 3:
                assert time.monotonic() < deadline, len(fake.requests)
                time.sleep(0.02)
        fake.failing = True
        srv.kill()
        sent_before = len(fake.requests)
        fake.failing = False
        srv = srv.restart()
        try:
            with httpx.Client(base_url=srv.http_url, timeout=30) as http:
                done = _rest_idle(http, sid)
                assert done["done"] == done["total"] == 40
                expected = {"provider": "openai", "model": "text-embedding-3-small", "dimension": 48}
                assert done["embedder"] == expected
                desc = http.get(f"{API}/spaces/{sid}").json()
                assert desc["embedder"] == expected and desc["dimension"] == 48
                # Resumed, not restarted: only the 24 memories without a new vector were sent again.
                texts = [t for r in fake.requests[sent_before:] for t in r["body"]["input"]]
                assert len(texts) == 24 and set(texts) <= set(NOTES[16:40]), texts
                top = _first(http, sid, NOTES[29])
                assert top["memory"]["content"] == NOTES[29]
        finally:
            srv.kill()
