"""``/mcp`` over Streamable HTTP on a real server, driven by the official MCP client
(``mcp.client.streamable_http``): schemas, remember/recall seen through REST, SPEC §2 space rules
per request, tool errors, and isolation between spaces (a dedicated MCP isolation run over the
isolation matrix's dataset and checks, ``engram.testing.isolation``)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from engram.testing import EngramProcess
from engram.testing.isolation import RestOps, build_dataset, foreign, load, scan
from engram.testing.mcp import http_session, schema_problems, structured, text_of

ISO = ["iso-00", "iso-01", "iso-02"]
SETTINGS = {"consolidation_interval_seconds": 0, "auto_link_threshold": 0.99}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with EngramProcess.start(tmp_path_factory.mktemp("mcp-http"), [*ISO, "alpha", "beta"], SETTINGS) as s:
        data = build_dataset(ISO)
        for sp in ISO:
            ops = RestOps(s.http_url, sp)
            try:
                load(ops, data[sp])
            finally:
                ops.close()
        yield s


def _rest(srv: EngramProcess, path: str, space: str | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(srv.http_url + path, headers={"X-Memory-Space": space} if space else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_tools_have_schemas_an_llm_can_act_on(srv: EngramProcess) -> None:
    async def scenario() -> None:
        async with http_session(srv.http_url, "alpha") as s:
            assert schema_problems((await s.list_tools()).tools) == []

    asyncio.run(scenario())


def test_remember_and_recall_over_mcp_are_seen_through_rest(srv: EngramProcess) -> None:
    async def scenario() -> str:
        async with http_session(srv.http_url, "alpha") as s:
            stored = await s.call_tool("remember", {"content": "the staging cluster lives in Frankfurt",
                                                    "tags": ["infra"], "metadata": {"source": "mcp"}})
            assert not stored.is_error, text_of(stored)
            memory_id = str(structured(stored)["memory_id"])
            found = await s.call_tool("recall", {"query": "where is the staging cluster?", "tags": ["infra"]})
            assert "the staging cluster lives in Frankfurt" in text_of(found)
            assert structured(found)["results"][0]["memory"]["id"] == memory_id
            return memory_id

    memory_id = asyncio.run(scenario())
    status, body = _rest(srv, f"/api/v1/memories/{memory_id}", "alpha")
    assert status == 200 and body["metadata"] == {"source": "mcp"} and body["tags"] == ["infra"]
    assert _rest(srv, f"/api/v1/memories/{memory_id}", "beta")[0] == 404


def test_typed_metadata_and_recall_filter_over_mcp(srv: EngramProcess) -> None:
    """An agent keeps typed facts with a memory and recalls by them, as over REST (SPEC §11)."""
    async def scenario() -> None:
        async with http_session(srv.http_url, "beta") as s:
            for n, (project, priority) in enumerate([("apollo", 1), ("apollo", 3), ("gemini", 3)]):
                stored = await s.call_tool("remember", {
                    "id": f"deploy-{n}", "content": f"deploy note {n}: the release train leaves on Tuesday",
                    "metadata": {"project": project, "priority": priority, "urgent": priority > 2}})
                assert not stored.is_error, text_of(stored)
            found = await s.call_tool("recall", {"query": "release train", "max_results": 10,
                                                 "filter": {"project": "apollo", "priority": {"$gte": 2}}})
            assert not found.is_error, text_of(found)
            hits = structured(found)["results"]
            assert [h["memory"]["id"] for h in hits] == ["deploy-1"]
            assert hits[0]["memory"]["metadata"] == {"project": "apollo", "priority": 3, "urgent": True}
            bad = await s.call_tool("recall", {"query": "release train", "filter": {"priority": {"$gtx": 1}}})
            assert bad.is_error and "$gtx" in text_of(bad)
            nested = await s.call_tool("remember", {"content": "x", "metadata": {"deep": {"no": 1}}})
            assert nested.is_error and "deep" in text_of(nested)

    asyncio.run(scenario())


def test_the_space_follows_the_rest_rules_per_request(srv: EngramProcess) -> None:
    async def scenario() -> None:
        async with http_session(srv.http_url, "alpha") as s:
            conflict = await s.call_tool("recall", {"query": "x", "space": "beta"})
            assert conflict.is_error and structured(conflict)["error"]["code"] == "MEMORY_SPACE_CONFLICT"
            assert "header:X-Memory-Space" in text_of(conflict) and "argument:space" in text_of(conflict)
            agreed = await s.call_tool("remember", {"content": "alpha agrees", "space": "alpha"})
            assert structured(agreed)["memory_space_id"] == "alpha"
        async with http_session(srv.http_url) as s:  # no header: the argument decides
            stored = await s.call_tool("remember", {"content": "only in beta", "space": "beta", "id": "b-1"})
            assert structured(stored)["memory_space_id"] == "beta", text_of(stored)
            fallback = await s.call_tool("list_spaces", {})
            assert "alpha" in text_of(fallback) and not fallback.is_error
            defaulted = await s.call_tool("recall", {"query": "only in beta"})
            assert not defaulted.is_error
            assert "deprecated" in text_of(defaulted) and structured(defaulted)["warning"]
            assert "only in beta" not in json.dumps(structured(defaulted)["results"])
            missing = await s.call_tool("recall", {"query": "x", "space": "no-such-space"})
            error = structured(missing)["error"]
            assert missing.is_error and error["code"] == "MEMORY_SPACE_NOT_FOUND"
            assert "engram space create no-such-space" in error["suggestion"]

    asyncio.run(scenario())
    assert _rest(srv, "/api/v1/memories/b-1", "beta")[1]["content"] == "only in beta"
    with urllib.request.urlopen(srv.http_url + "/metrics", timeout=30) as resp:
        assert 'engram_memory_space_default_fallback_total{operation="mcp recall",transport="mcp"}' in (
            resp.read().decode())


def test_bad_calls_are_errors_and_the_server_keeps_serving(srv: EngramProcess) -> None:
    async def scenario() -> None:
        async with http_session(srv.http_url, "alpha") as s:
            cases: list[tuple[str, dict[str, Any], str]] = [
                ("remember", {}, "INVALID_INPUT"),
                ("remember", {"content": ["not", "text"]}, "INVALID_INPUT"),
                ("associate", {"source_id": "a"}, "INVALID_INPUT"),
                ("associate", {"source_id": "nope-1", "target_id": "nope-2"}, "MEMORY_NOT_FOUND"),
                ("reminisce", {"limit": 0}, "INVALID_INPUT"),
                ("consolidate", {"similarity": 2}, "INVALID_INPUT"),
                ("complete", {"when": "not a time"}, "INVALID_INPUT"),
            ]
            for tool, arguments, code in cases:
                result = await s.call_tool(tool, arguments)
                assert result.is_error, (tool, arguments, text_of(result))
                assert structured(result)["error"]["code"] == code, (tool, arguments, text_of(result))
                assert "Suggestion:" in text_of(result)
            assert not (await s.call_tool("list_spaces", {})).is_error

    asyncio.run(scenario())
    # Not JSON-RPC at all: an HTTP-level refusal, not a crash.
    req = urllib.request.Request(srv.http_url + "/mcp", data=b"{not json", method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Accept": "application/json, text/event-stream"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert 400 <= err.value.code < 500
    # No idle stream to hold open: GET is refused at once (the SDK's stateless mode would hang it).
    get = urllib.request.Request(srv.http_url + "/mcp", headers={"Accept": "text/event-stream"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(get, timeout=10)
    assert err.value.code == 405 and err.value.headers["Allow"] == "POST"
    # DNS-rebinding protection on a loopback listener: a foreign Host header is refused.
    rebound = urllib.request.Request(srv.http_url + "/mcp", method="POST", headers={
        "Host": "attacker.example", "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream"},
        data=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(rebound, timeout=10)
    assert err.value.code == 421
    assert _rest(srv, "/health/alive")[0] == 200


SDK_MODULES = ("mcp", "mcp_types")  # the top-level packages: one line each when first imported


def _sdk_imports(srv: EngramProcess) -> list[str]:
    """The SDK modules the server has imported so far, from its ``-X importtime`` lines on stderr."""
    names = [line.rsplit("|", 1)[1].strip() for line in srv.logs().splitlines()
             if line.startswith("import time:") and line.count("|") == 2]
    return [n for n in names if n in SDK_MODULES]


def test_the_mcp_sdk_loads_on_the_first_post_not_at_start(tmp_path: Any) -> None:
    """A server start does not import the MCP SDK (~1 s of CPU, a third of a start): REST and a GET
    on /mcp never load it; the first POSTs (two sessions at once) load it once and are served."""
    with EngramProcess.start(tmp_path, ["alpha", "beta"], env={"PYTHONPROFILEIMPORTTIME": "1"}) as s:
        assert _rest(s, "/api/v1/memories?limit=1", "alpha")[0] == 200
        get = urllib.request.Request(s.http_url + "/mcp", headers={"Accept": "text/event-stream"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(get, timeout=10)
        assert err.value.code == 405
        assert _sdk_imports(s) == []

        async def one(space: str) -> str:
            async with http_session(s.http_url, space) as session:
                stored = await session.call_tool("remember", {"content": f"lazy {space}"})
                assert not stored.is_error, text_of(stored)
                return str(structured(stored)["memory_space_id"])

        async def both() -> list[str]:
            return list(await asyncio.gather(one("alpha"), one("beta")))

        assert asyncio.run(both()) == ["alpha", "beta"]
        assert sorted(_sdk_imports(s)) == sorted(SDK_MODULES)  # each imported once
        assert [r for r in s.log_records() if r.get("msg") == "MCP endpoint loaded"] != []
        assert _rest(s, "/health/alive")[0] == 200
        # the loaded session manager ends with the app: a graceful stop, exit 0, nothing logged as an error
        assert s.stop() == 0
        assert [r for r in s.log_records() if r.get("level") in ("error", "critical")] == []


async def _isolation_of(srv: EngramProcess, sp: str, data: Any) -> tuple[int, list[str]]:
    """Every MCP read surface of one space, scanned with the isolation matrix's rules."""
    d = data[sp]
    exercised = 0
    bad: list[str] = []

    def check(what: str, payload: Any, must_see: str | None = None) -> None:
        nonlocal exercised
        s = scan(payload)
        exercised += len(s.ids) + len(s.tags)
        bad.extend(f"{sp}/{what}: {v}" for v in foreign(sp, s, d.ids))
        if must_see is not None and must_see not in s.ids:
            bad.append(f"{sp}/{what}: {must_see} not returned (ids {sorted(set(s.ids))})")

    async with http_session(srv.http_url, sp) as s:
        for query, mode in [("orchard note", "similarity"), ("espresso machine third floor", "hybrid"),
                            ("private note orchard", "spreading")]:
            result = await s.call_tool("recall", {"query": query, "mode": mode, "max_results": 50})
            check(f"recall {mode}", structured(result), f"own.{sp}.0")
        for mid in sorted(d.ids):
            check("get_memory", structured(await s.call_tool("get_memory", {"id": mid})), mid)
        for other in data.values():
            if other.space != sp:
                missing = await s.call_tool("get_memory", {"id": f"own.{other.space}.{other.index}"})
                if not (missing.is_error and structured(missing)["error"]["code"] == "MEMORY_NOT_FOUND"):
                    bad.append(f"{sp}/get_memory of {other.space}'s memory answered {text_of(missing)[:120]}")
        reminisced = await s.call_tool("reminisce", {"topic": "payment outage", "limit": 100})
        check("reminisce", structured(reminisced), f"ep-own.{sp}")
        completed = await s.call_tool("complete", {"what": "debugging the payment service"})
        check("complete", structured(completed))
        consolidated = await s.call_tool("consolidate", {"min_cluster": 2, "similarity": 0.8})
        check("consolidate", structured(consolidated), f"ep-own.{sp}")
    return exercised, bad


def test_mcp_sessions_of_different_spaces_never_see_each_other(srv: EngramProcess) -> None:
    data = build_dataset(ISO)

    async def all_spaces() -> list[tuple[int, list[str]]]:
        return list(await asyncio.gather(*(_isolation_of(srv, sp, data) for sp in ISO)))

    results = asyncio.run(all_spaces())
    violations = [v for _, bad in results for v in bad]
    assert not violations, "\n".join(violations[:20])
    assert all(exercised > 20 for exercised, _ in results), results  # every surface returned something
