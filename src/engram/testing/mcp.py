"""Test helpers for Engram's MCP surfaces, driven with the official client of the ``mcp`` package.

    async with http_session(srv.http_url, space="alpha") as s:      # /mcp, X-Memory-Space: alpha
        result = await s.call_tool("recall", {"query": "tea"})
    async with stdio_session(["--space", "alpha", "--data-dir", d], env) as s:   # `python -m engram mcp`
        ...

:func:`schema_problems` lists what is wrong with a ``tools/list`` answer (no
assert inside, so a test can show every problem at once).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOL_NAMES = ("remember", "recall", "get_memory", "forget", "associate", "reminisce", "consolidate",
              "complete", "list_spaces")
REQUIRED = {"remember": ["content"], "recall": ["query"], "get_memory": ["id"], "forget": ["id"],
            "associate": ["source_id", "target_id"]}
JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


@asynccontextmanager
async def http_session(base_url: str, space: str | None = None,
                       headers: Mapping[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """An initialized session with ``/mcp``; ``space`` is sent as ``X-Memory-Space`` on every request."""
    all_headers = dict(headers or {})
    if space is not None:
        all_headers["X-Memory-Space"] = space
    async with (
        httpx2.AsyncClient(headers=all_headers, timeout=60.0) as http,
        streamable_http_client(base_url.rstrip("/") + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(args: Sequence[str], env: Mapping[str, str],
                        errlog: TextIO | None = None) -> AsyncIterator[ClientSession]:
    """An initialized session with a real ``python -m engram mcp ARGS`` subprocess."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "engram", "mcp", *args], env=dict(env))
    async with (
        stdio_client(params, errlog=errlog or sys.stderr) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def structured(result: types.CallToolResult) -> dict[str, Any]:
    data = result.structured_content
    return data if isinstance(data, dict) else {}


def schema_problems(tools: Sequence[types.Tool]) -> list[str]:
    """Everything that keeps an LLM from calling these tools right: names, descriptions, schemas."""
    problems: list[str] = []
    by_name = {t.name: t for t in tools}
    if sorted(by_name) != sorted(TOOL_NAMES):
        problems.append(f"tools {sorted(by_name)} != {sorted(TOOL_NAMES)}")
    for name, tool in by_name.items():
        if len(tool.description or "") < 80:
            problems.append(f"{name}: description too short to act on: {tool.description!r}")
        schema = tool.input_schema
        if schema.get("type") != "object":
            problems.append(f"{name}: input schema type {schema.get('type')!r}, expected 'object'")
        if schema.get("additionalProperties") is not False:
            problems.append(f"{name}: input schema accepts unknown arguments")
        props = schema.get("properties", {})
        required = sorted(schema.get("required", []))
        if required != sorted(REQUIRED.get(name, [])):
            problems.append(f"{name}: required {required}, expected {sorted(REQUIRED.get(name, []))}")
        for field in required:
            if field not in props:
                problems.append(f"{name}: required field {field!r} has no schema")
        for field, prop in props.items():
            if prop.get("type") not in JSON_TYPES:
                problems.append(f"{name}.{field}: no JSON type ({prop})")
            if len(prop.get("description", "")) < 10:
                problems.append(f"{name}.{field}: no description")
            if prop.get("type") == "array" and prop.get("items", {}).get("type") not in JSON_TYPES:
                problems.append(f"{name}.{field}: array items have no type")
        if name != "list_spaces" and "space" not in props:
            problems.append(f"{name}: no optional `space` argument")
    return problems
