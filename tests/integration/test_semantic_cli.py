"""The CLI's side of SPEC §9 against a real server: ``space create --embedder/--model``, the
embedder and backlog in ``space get/list``, ``memory recall --rank/--wait`` and its "why" column,
over REST and gRPC (``--transport grpc``), in-process through click's runner and once as a real
``python -m engram`` subprocess.

The server is started with ``engram start --embedder hash``; its ``openai`` provider points at a
closed port, so a space created with ``--embedder openai`` keeps a backlog that never drains.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engram.cli.main import cli
from engram.cli.memories import why
from engram.testing import EngramProcess

NOTES = [
    "the espresso machine is on the third floor",
    "the espresso beans are kept in the kitchen cupboard",
    "the third floor kitchen has a new espresso grinder",
    "the parking garage closes at midnight",
]
TRANSPORTS = ["rest", "grpc"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    settings = {"openai_base_url": f"http://127.0.0.1:{_closed_port()}/v1", "openai_dimension": 8,
                "openai_max_retries": 0, "openai_timeout_seconds": 1, "embedding_wait_seconds": 0.2,
                "embedder": "none"}
    srv = EngramProcess.start(tmp_path_factory.mktemp("semantic-cli"), ["alpha"], settings,
                              extra_args=["--embedder", "hash"])
    yield srv
    srv.stop()


def engram(server: EngramProcess, transport: str, *args: str) -> Result:
    """``engram ARGS`` in-process, every ENGRAM_* variable unset, a wide terminal for tables."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    env["COLUMNS"] = "220"
    where = ["--url", server.http_url]
    if transport == "grpc":
        where += ["--transport", "grpc", "--grpc-target", server.grpc_target]
    return CliRunner().invoke(cli, [*args, *where], env=env, catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_space_create_with_embedder_and_model(server: EngramProcess, transport: str) -> None:
    sid = f"cli-hash-{transport}"
    made = as_json(engram(server, transport, "space", "create", sid, "--embedder", "hash", "--json"))
    assert made["created"] is True and made["dimension"] == 384
    assert made["embedder"] == {"provider": "hash", "model": "hash-384", "dimension": 384}
    assert made["embedding_backlog"] == 0

    small = engram(server, transport, "space", "create", f"{sid}-64", "--embedder", "HASH",
                   "--model", "hash-64")
    assert small.exit_code == 0, small.stderr
    assert f"created space {sid}-64" in small.stdout and "hash/hash-64 (64-d)" in small.stdout

    default = as_json(engram(server, transport, "space", "create", f"{sid}-dflt", "--json"))
    assert default["embedder"]["provider"] == "hash"  # engram start --embedder hash


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_space_create_rejects_bad_embedders(server: EngramProcess, transport: str) -> None:
    unknown = engram(server, transport, "space", "create", "cli-bad", "--embedder", "word2vec")
    assert unknown.exit_code == 2 and "word2vec" in unknown.stderr
    lonely = engram(server, transport, "space", "create", "cli-bad", "--model", "hash-8")
    assert lonely.exit_code == 2 and "--model needs --embedder" in lonely.stderr
    model = engram(server, transport, "space", "create", "cli-bad", "--embedder", "local", "--model", "gpt-9")
    assert model.exit_code == 2 and "gpt-9" in model.stderr  # the server's 400 / INVALID_ARGUMENT
    assert engram(server, transport, "space", "get", "cli-bad").exit_code == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_space_get_and_list_show_embedder_and_backlog(server: EngramProcess, transport: str) -> None:
    sid = f"cli-stuck-{transport}"
    assert engram(server, transport, "space", "create", sid, "--embedder", "openai").exit_code == 0
    for text in ("order more coffee", "water the plants"):
        assert engram(server, transport, "memory", "remember", text, "--space", sid).exit_code == 0

    got = as_json(engram(server, transport, "space", "get", sid, "--json"))
    assert got["embedder"] == {"provider": "openai", "model": "text-embedding-3-small", "dimension": 8}
    assert got["embedding_backlog"] == 2
    table = engram(server, transport, "space", "get", sid)
    assert table.exit_code == 0
    assert "openai/text-embedding-3-small (8-d)" in table.stdout
    assert re.search(r"embedding backlog\s*│\s*2\s*│", table.stdout), table.stdout

    listed = as_json(engram(server, transport, "space", "list", "--json", "--limit", "1000"))
    row = next(s for s in listed["spaces"] if s["id"] == sid)
    assert row["embedding_backlog"] == 2 and row["embedder"]["provider"] == "openai"
    shown = engram(server, transport, "space", "list", "--limit", "1000")
    assert shown.exit_code == 0 and "embedder" in shown.stdout and "backlog" in shown.stdout
    line = next(line for line in shown.stdout.splitlines() if sid in line)
    assert re.search(r"│\s*openai\s*│\s*2\s*│", line), line

    recalled = engram(server, transport, "memory", "recall", "coffee", "--space", sid, "--wait")
    assert recalled.exit_code == 0
    caption = " ".join(recalled.stdout.split())  # the caption wraps at the table's width
    assert "2 memories still not embedded after waiting" in caption and "query not embedded" in caption


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_memory_recall_rank_similarity_and_why(server: EngramProcess, transport: str) -> None:
    sid = f"cli-recall-{transport}"
    assert engram(server, transport, "space", "create", sid, "--embedder", "hash").exit_code == 0
    for note in NOTES:
        assert engram(server, transport, "memory", "remember", note, "--space", sid).exit_code == 0
    args = ("memory", "recall", "espresso third floor", "--space", sid, "--limit", "10")

    sim = as_json(engram(server, transport, *args, "--rank", "similarity", "--wait", "--json"))
    items = [*sim["memories"]["vivid"], *sim["memories"]["associated"]]
    assert sim["metadata"]["rank"] == "similarity" and "embedding_wait_ms" in sim["metadata"]
    scores = [i["score"] for i in items]
    assert len(items) >= 3 and scores == sorted(scores, reverse=True)
    for item in items:
        assert item["score"] == pytest.approx(max(0.0, item["signals"]["vector"]), abs=1e-6)

    fused = as_json(engram(server, transport, *args, "--json"))
    assert fused["metadata"]["rank"] == "cognitive" and "embedding_wait_ms" not in fused["metadata"]
    assert all(i["signals"] for b in fused["memories"].values() for i in b)

    table = engram(server, transport, *args, "--rank", "similarity", "--wait")
    assert table.exit_code == 0, table.stderr
    assert "why" in table.stdout and "rank similarity" in " ".join(table.stdout.split())
    top = items[0]
    line = next(line for line in table.stdout.splitlines() if top["memory"]["id"] in line)
    assert why(top["signals"]) in line  # e.g. "text .73 · meaning .52"

    wrong = engram(server, transport, *args, "--rank", "loudest")
    assert wrong.exit_code == 2 and "cognitive" in wrong.stderr and "similarity" in wrong.stderr


def test_why_column_text() -> None:
    assert why({"text": 0.62, "vector": 0.71, "spread": 0.2, "activation": 0.7}) == \
        "text .62 · meaning .71 · spread .20"
    assert why({"vector": 1.0, "context": 0.5}) == "meaning 1.00 · context .50"
    assert why({"vector": -0.05}) == "meaning -.05"
    assert why({"activation": 0.4, "recency": 1.0}) == "activation .40"
    assert why({}) == "-"


def test_real_cli_process_create_and_recall(server: EngramProcess) -> None:
    """The same through ``python -m engram`` (entry point, option parsing, exit code, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update(ENGRAM_URL=server.http_url, ENGRAM_MEMORY_SPACE="cli-proc", COLUMNS="220")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engram", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    made = run("space", "create", "cli-proc", "--embedder", "hash", "--model", "hash-128", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["embedder"] == {"provider": "hash", "model": "hash-128", "dimension": 128}
    for note in NOTES:
        assert run("memory", "remember", note).returncode == 0
    out = run("memory", "recall", "espresso grinder", "--rank", "similarity", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    items = [*body["memories"]["vivid"], *body["memories"]["associated"]]
    assert body["metadata"]["rank"] == "similarity" and items
    assert items[0]["memory"]["content"] == "the third floor kitchen has a new espresso grinder"
    assert all(i["score"] == pytest.approx(max(0.0, i["signals"]["vector"]), abs=1e-6) for i in items)
    table = run("memory", "recall", "espresso grinder", "--rank", "similarity")
    assert table.returncode == 0 and "meaning" in table.stdout and "why" in table.stdout
