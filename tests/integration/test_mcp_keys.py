"""MCP with API keys (SPEC §10, §12) on a real server with ``auth = "required"``: ``/mcp`` without a
key is refused, a reader key cannot write through the tools, a key of one space cannot reach
another through the ``space`` argument (answered as a missing space), ``list_spaces`` shows only
the key's spaces, and ``engram mcp --api-key`` over stdio carries the key to the server."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.auth.keys import KeyStore
from engram.testing import EngramProcess
from engram.testing.mcp import http_session, stdio_session, structured, text_of


@pytest.fixture(scope="module")
def admin_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("mcp-keys")
    return root, KeyStore(root / "data").create("mcp-admin", "admin")[1]


@pytest.fixture(scope="module")
def srv(admin_token: tuple[Path, str]) -> Iterator[EngramProcess]:
    with EngramProcess.start(admin_token[0], ["alpha", "beta"],
                             {"auth": "required", "consolidation_interval_seconds": 0}) as s:
        yield s


@pytest.fixture(scope="module")
def keys(srv: EngramProcess, admin_token: tuple[Path, str]) -> dict[str, str]:
    admin = admin_token[1]
    md = (("authorization", f"Bearer {admin}"),)
    out = {"admin": admin}
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = spb_grpc.EngramServiceStub(ch)
        for name, role, spaces in (("reader", "reader", ["alpha"]), ("writer", "writer", ["alpha"])):
            out[name] = stub.CreateKey(spb.CreateKeyRequest(name=name, role=role, spaces=spaces),
                                       timeout=10, metadata=md).token
    return out


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _count(srv: EngramProcess, key: str, space: str = "alpha") -> int:
    req = urllib.request.Request(f"{srv.http_url}/api/v1/memories?limit=1",
                                 headers={**_auth(key), "X-Memory-Space": space})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(json.loads(resp.read())["total"])


def test_mcp_without_a_key_is_refused(srv: EngramProcess) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    req = urllib.request.Request(srv.http_url + "/mcp", data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 401


def test_a_reader_key_reads_but_cannot_write_through_mcp(srv: EngramProcess, keys: dict[str, str]) -> None:
    before = _count(srv, keys["admin"])

    async def scenario() -> None:
        async with http_session(srv.http_url, "alpha", headers=_auth(keys["reader"])) as s:
            for tool, args in (("remember", {"content": "the reader sneaks in"}),
                               ("forget", {"memory_id": "00000000000000000000000000"}),
                               ("consolidate", {})):
                refused = await s.call_tool(tool, args)
                assert refused.is_error, (tool, text_of(refused))
                assert structured(refused)["error"]["code"] == "PERMISSION_DENIED", text_of(refused)
            found = await s.call_tool("recall", {"query": "anything"})
            assert not found.is_error, text_of(found)

    asyncio.run(scenario())
    assert _count(srv, keys["admin"]) == before


def test_a_key_of_one_space_cannot_reach_another_through_the_space_argument(
        srv: EngramProcess, keys: dict[str, str]) -> None:
    async def scenario() -> list[Any]:
        async with http_session(srv.http_url, None, headers=_auth(keys["writer"])) as s:
            answers = []
            for space in ("beta", "zz-missing"):
                r = await s.call_tool("recall", {"query": "x", "space": space})
                assert r.is_error
                err = structured(r)["error"]
                answers.append(json.dumps(err, sort_keys=True).replace(space, "<id>"))
            listed = await s.call_tool("list_spaces", {})
            assert [sp["id"] for sp in structured(listed)["spaces"]] == ["alpha"], text_of(listed)
            stored = await s.call_tool("remember", {"content": "writer writes alpha", "space": "alpha"})
            assert not stored.is_error, text_of(stored)
            return answers

    answers = asyncio.run(scenario())
    assert '"MEMORY_SPACE_NOT_FOUND"' in answers[0]
    assert answers[0] == answers[1]


def test_engram_mcp_over_stdio_sends_its_api_key(srv: EngramProcess, keys: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    args = ["--space", "alpha", "--url", srv.http_url]

    async def scenario() -> tuple[str, str]:
        async with stdio_session(args, {**env, "ENGRAM_API_KEY": keys["reader"]}) as s:
            read = await s.call_tool("recall", {"query": "anything"})
            write = await s.call_tool("remember", {"content": "reader over stdio"})
            assert not read.is_error, text_of(read)
            assert write.is_error
            keyed = structured(write)["error"]["code"]
        async with stdio_session(args, env) as s:
            keyless = await s.call_tool("recall", {"query": "anything"})
            assert keyless.is_error
            return keyed, structured(keyless)["error"]["code"]

    assert asyncio.run(scenario()) == ("PERMISSION_DENIED", "UNAUTHENTICATED")
