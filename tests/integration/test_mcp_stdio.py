"""``engram mcp`` over stdio, driven by the official MCP client (``mcp.client.stdio``) against real
subprocesses: schemas, remember/recall seen through REST, two sessions in two spaces, tool errors,
stdout hygiene, shutdown on stdin close, and the engine chosen at first use (no start-up race)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from engram.datadir import holder
from engram.testing import EngramProcess
from engram.testing.mcp import schema_problems, stdio_session, structured, text_of

ENV = {"ENGRAM_EMBEDDER": "hash"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with EngramProcess.start(tmp_path_factory.mktemp("mcp-stdio"), spaces=["alpha", "beta"]) as s:
        yield s


def _rest_get(srv: EngramProcess, path: str, space: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(srv.http_url + path, headers={"X-Memory-Space": space})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_schemas_remember_recall_and_errors_through_the_server_holding_the_data_dir(
        srv: EngramProcess) -> None:
    # Only --data-dir: the harness wrote the state file elsewhere, so the data-dir lock is what says a
    # server owns this data dir; the session must use that server, not open the data dir itself.
    args = ["--space", "alpha", "--data-dir", str(srv.data_dir)]

    async def scenario() -> str:
        async with stdio_session(args, ENV) as s:
            tools = (await s.list_tools()).tools
            assert schema_problems(tools) == []
            stored = await s.call_tool("remember", {
                "content": "Alice decided to ship the release on Friday", "when": "2026-01-05T09:00:00Z",
                "who": ["alice", "bob"], "where": "standup", "tags": ["release"]})
            assert not stored.is_error, text_of(stored)
            memory_id = str(structured(stored)["memory_id"])
            assert memory_id in text_of(stored) and structured(stored)["memory_space_id"] == "alpha"
            found = await s.call_tool("recall", {"query": "when do we ship the release?"})
            assert not found.is_error, text_of(found)
            text = text_of(found)
            # Readable for a model: the memory, who, when, and a confidence.
            for part in ("Alice decided to ship the release on Friday", "who: alice, bob",
                         "2026-01-05 09:00 UTC", "confidence", memory_id):
                assert part in text, (part, text)
            top = structured(found)["results"][0]
            assert top["memory"]["id"] == memory_id and top["rank"] == 1
            assert "embedding" not in top["memory"] and 0 <= top["confidence"]["value"] <= 1
            got = await s.call_tool("get_memory", {"id": memory_id})
            assert structured(got)["who"] == ["alice", "bob"]
            # Bad calls are tool errors with the envelope's message and suggestion; the session lives on.
            cases: list[tuple[str, dict[str, Any], str, str]] = [
                ("recall", {}, "INVALID_INPUT", "query: required"),
                ("recall", {"query": "x", "max_results": "lots"}, "INVALID_INPUT", "max_results"),
                ("recall", {"query": "x", "time_start": "yesterday"}, "INVALID_INPUT", "time_start"),
                ("remember", {"content": "x", "colour": "red"}, "INVALID_INPUT", "colour"),
                ("remember", {"content": "x", "who": ["bob"]}, "INVALID_INPUT", "when"),
                ("forget", {"id": "x", "mode": "shred"}, "INVALID_INPUT", "mode"),
                ("get_memory", {"id": "no-such-memory"}, "MEMORY_NOT_FOUND", "no-such-memory"),
                ("recall", {"query": "x", "space": "Not A Space"}, "INVALID_MEMORY_SPACE", "Not A Space"),
            ]
            for tool, arguments, code, mention in cases:
                result = await s.call_tool(tool, arguments)
                assert result.is_error, (tool, arguments, text_of(result))
                error = structured(result)["error"]
                assert error["code"] == code, (tool, arguments, error)
                assert mention in text_of(result) and "Suggestion:" in text_of(result), text_of(result)
            with pytest.raises(MCPError, match="unknown tool 'teleport'"):
                await s.call_tool("teleport", {})
            ok = await s.call_tool("list_spaces", {})
            assert not ok.is_error and "alpha" in text_of(ok)
            return memory_id

    memory_id = asyncio.run(scenario())
    status, body = _rest_get(srv, f"/api/v1/memories/{memory_id}", "alpha")
    assert status == 200 and body["content"] == "Alice decided to ship the release on Friday"
    status, body = _rest_get(srv, f"/api/v1/memories/{memory_id}", "beta")
    assert status == 404 and body["error"]["code"] == "MEMORY_NOT_FOUND"


def test_two_sessions_bound_to_two_spaces_never_see_each_other(srv: EngramProcess) -> None:
    # alpha finds the server through its state file, beta is pointed at it with --url.
    where = {"alpha": ["--state-file", str(srv.root / "state-0.json")], "beta": ["--url", srv.http_url]}

    async def session(space: str, other: str) -> None:
        async with stdio_session(["--space", space, *where[space]], ENV) as s:
            secret = f"the vault code of {space} is 42"
            stored = await s.call_tool("remember", {"id": "twin", "content": secret})
            assert not stored.is_error, text_of(stored)
            await s.call_tool("remember", {"content": f"{space} keeps its notes in the orchard"})
            found = await s.call_tool("recall", {"query": "vault code orchard notes", "max_results": 50,
                                                 "mode": "hybrid"})
            seen = [r["memory"]["content"] for r in structured(found)["results"]]
            assert seen and all(space in c and other not in c for c in seen), seen
            assert other not in text_of(found)
            got = await s.call_tool("get_memory", {"id": "twin"})
            assert structured(got)["content"] == f"the vault code of {space} is 42"
            crossed = await s.call_tool("recall", {"query": "vault", "space": other})
            assert crossed.is_error and structured(crossed)["error"]["code"] == "MEMORY_SPACE_CONFLICT"
            assert other not in json.dumps([r for r in structured(found)["results"]])

    async def both() -> None:
        await asyncio.gather(session("alpha", "beta"), session("beta", "alpha"))

    asyncio.run(both())


def test_stdout_carries_only_json_rpc_and_closing_stdin_exits_0(tmp_path: Path) -> None:
    """A raw client: offline mode (the data dir opened in-process logs plenty), then stdin closed."""
    messages: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "remember", "arguments": {"content": "offline and clean"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "recall", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
         "params": {"name": "recall", "arguments": {"query": "offline"}}},
    ]
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram", "mcp", "--space", "alpha", "--data-dir", str(data),
         "--create-space"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**_base_env(), **ENV})
    assert proc.stdin is not None and proc.stdout is not None
    answers: dict[int, dict[str, Any]] = {}
    lines: list[bytes] = []
    for msg in messages:  # one at a time: each request is answered before the next is sent
        proc.stdin.write(json.dumps(msg).encode() + b"\n")
        proc.stdin.flush()
        while "id" in msg and msg["id"] not in answers:
            line = proc.stdout.readline()
            if not line:
                err_text = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                pytest.fail(f"stdout closed early; stderr: {err_text}")
            lines.append(line)
            decoded = json.loads(line)
            assert decoded.get("jsonrpc") == "2.0", line
            if "id" in decoded:
                answers[decoded["id"]] = decoded
    started = time.monotonic()
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 15, "closing stdin must end the server promptly"
    rest, err = proc.stdout.read(), proc.stderr.read() if proc.stderr else b""
    for line in [*lines, *rest.splitlines()]:
        if line.strip():
            assert json.loads(line)["jsonrpc"] == "2.0", line
    assert b"mcp opened data dir" in err, "the logs went to stderr"
    assert len(answers[2]["result"]["tools"]) == 9
    assert answers[3]["result"]["isError"] is False
    assert answers[4]["result"]["isError"] is True
    assert "offline and clean" in answers[5]["result"]["content"][0]["text"]
    assert holder(data) is None, "the data dir is free once the process exited"


def test_sigterm_with_stdin_still_open_closes_the_data_dir_and_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram", "mcp", "--space", "alpha", "--data-dir", str(data),
         "--create-space"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**_base_env(), **ENV})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for msg in ({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                        "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "0"}}},
                    {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "remember", "arguments": {"content": "before the signal"}}}):
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            proc.stdin.flush()
            if "id" in msg:
                assert json.loads(proc.stdout.readline())["id"] == msg["id"]
        held = holder(data)
        assert held is not None and held.pid == proc.pid
        proc.send_signal(signal.SIGTERM)  # stdin stays open, as a client that hangs would leave it
        assert proc.wait(timeout=20) == 0
        assert holder(data) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_engine_is_chosen_at_first_use_so_a_server_may_start_after_the_session(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def scenario() -> str:
        async with stdio_session(["--space", "alpha", "--data-dir", str(data)], ENV) as s:
            assert len((await s.list_tools()).tools) == 9  # serving, but the data dir is not opened yet
            late = await asyncio.to_thread(EngramProcess.start, tmp_path / "s", ["alpha"], None,
                                           data_dir=data)
            try:
                stored = await s.call_tool("remember", {"content": "arrived after the server started"})
                assert not stored.is_error, text_of(stored)
                memory_id = str(structured(stored)["memory_id"])
                status, body = _rest_get(late, f"/api/v1/memories/{memory_id}", "alpha")
                assert status == 200 and body["content"] == "arrived after the server started"
                return memory_id
            finally:
                await asyncio.to_thread(late.stop)

    asyncio.run(scenario())


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
