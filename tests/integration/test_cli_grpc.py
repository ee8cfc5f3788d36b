"""The ``engram`` CLI over gRPC (``--transport grpc``) against a real server process.

Commands run in-process through click's ``CliRunner`` but talk real gRPC to a
real ``engram start`` (one per module). The REST client and a raw gRPC client
check what the CLI did from the outside.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engram.cli.main import cli
from engram.client import EngramClient
from engram.client.grpc import GrpcClient
from engram.testing import EngramProcess

FALLBACK = "request named no memory space; using default space (deprecated)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("cli-grpc"), spaces=["alpha", "beta"])
    yield srv
    srv.stop()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``engram ARGS`` with every ENGRAM_* variable of the test process unset, then ``env``."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    clean.update(env or {})
    return CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)


def grpc(server: EngramProcess, *args: str, env: dict[str, str] | None = None) -> Result:
    return invoke(*args, "--transport", "grpc", "--grpc-target", server.grpc_target, env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def fallbacks(server: EngramProcess) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("msg") == FALLBACK and r.get("transport") == "grpc"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- spaces


def test_space_commands_over_grpc(server: EngramProcess) -> None:
    made = grpc(server, "space", "create", "gamma", "--dimension", "3")
    assert made.exit_code == 0, made.stderr
    assert f"created space gamma at grpc://{server.grpc_target}" in made.stdout
    again = as_json(grpc(server, "space", "create", "gamma", "--json"))
    assert again["id"] == "gamma" and again["created"] is False and again["dimension"] == 3

    listed = as_json(grpc(server, "space", "list", "--space", "beta", "--json"))
    assert {"alpha", "beta", "gamma"} <= {s["id"] for s in listed["spaces"]}
    assert listed["active_space"] == "beta"
    table = grpc(server, "space", "list", "--space", "beta")
    assert "active space: beta (--space)" in table.stdout and "gamma" in table.stdout

    desc = as_json(grpc(server, "space", "get", "gamma", "--json"))
    assert desc["id"] == "gamma" and desc["memory_count"] == 0 and desc["healthy"] is True
    assert grpc(server, "space", "get", "gamma").stdout.startswith("Memory space gamma")

    gone = as_json(grpc(server, "space", "delete", "gamma", "--yes", "--json"))
    assert gone["id"] == "gamma" and gone["deleted"] is True
    missing = grpc(server, "space", "get", "gamma")
    assert missing.exit_code == 3 and "MEMORY_SPACE_NOT_FOUND" in missing.stderr


# ----------------------------------------------------------------------------- memories


def test_memory_commands_over_grpc(server: EngramProcess) -> None:
    stored = as_json(
        grpc(
            server,
            "memory",
            "remember",
            "--space",
            "alpha",
            "the espresso machine is on floor 3",
            "--id",
            "coffee",
            "-t",
            "office",
            "--meta",
            "floor=3",
            "--json",
        )
    )
    assert stored["memory_id"] == "coffee" and stored["memory_space_id"] == "alpha"
    assert stored["durability"] == "fsync" and stored["storage_confidence"]["category"] == "high"
    episode = grpc(server, "memory", "remember", "--space", "alpha", "standup with the infra team",
                   "--id", "standup-1", "--when", "2026-01-05T09:00:00Z", "--where", "room 4", "--who", "ana")
    assert episode.exit_code == 0, episode.stderr
    assert "stored standup-1 in space alpha" in episode.stdout

    recalled = as_json(grpc(server, "memory", "recall", "--space", "alpha", "espresso", "--json"))
    ids = [i["memory"]["id"] for bucket in recalled["memories"].values() for i in bucket]
    assert ids and ids[0] == "coffee" and recalled["memory_space_id"] == "alpha"
    table = grpc(server, "memory", "recall", "--space", "alpha", "espresso")
    assert "Recall 'espresso' in space alpha" in table.stdout and "coffee" in table.stdout

    mem = as_json(grpc(server, "memory", "get", "--space", "alpha", "coffee", "--json"))
    assert mem["content"] == "the espresso machine is on floor 3" and mem["tags"] == ["office"]
    assert mem["metadata"] == {"floor": 3} and mem["memory_type"] == "semantic"
    ep = as_json(grpc(server, "memory", "get", "--space", "alpha", "standup-1", "--json"))
    assert ep["memory_type"] == "episodic" and ep["where_location"] == "room 4" and ep["who"] == ["ana"]
    assert ep["when"].startswith("2026-01-05T09:00:00")

    page = as_json(grpc(server, "memory", "list", "--space", "alpha", "--limit", "1", "--json"))
    assert page["total"] == 2 and len(page["memories"]) == 1 and page["next_cursor"]
    rest = as_json(
        grpc(server, "memory", "list", "--space", "alpha", "--cursor", page["next_cursor"], "--json")
    )
    assert [m["id"] for m in page["memories"] + rest["memories"]] == ["coffee", "standup-1"]
    assert "Memories in space alpha" in grpc(server, "memory", "list", "--space", "alpha").stdout

    hidden = grpc(server, "memory", "forget", "--space", "alpha", "standup-1")
    assert hidden.exit_code == 0 and "suppressed standup-1 in space alpha" in hidden.stdout
    erased = as_json(grpc(server, "memory", "forget", "--space", "alpha", "standup-1", "--mode", "delete",
                          "--json"))
    assert erased["mode"] == "delete" and erased["memory_space_id"] == "alpha"
    gone = grpc(server, "memory", "get", "--space", "alpha", "standup-1")
    assert gone.exit_code == 3 and "MEMORY_NOT_FOUND" in gone.stderr


def test_json_shapes_match_rest(server: EngramProcess) -> None:
    """One rendering path: the same command prints the same keys over either transport."""
    rest = ("--url", server.http_url)
    for transport, mid in (("rest", "shape-rest"), ("grpc", "shape-grpc")):
        args = rest if transport == "rest" else ("--transport", "grpc", "--grpc-target", server.grpc_target)
        as_json(invoke("memory", "remember", "--space", "beta", "shape check", "--id", mid, "--json", *args))
    cases = [("memory", "remember", "shape check three", "--json"), ("memory", "get", "shape-rest", "--json"),
             ("memory", "list", "--json"), ("memory", "recall", "shape", "--json"),
             ("space", "get", "beta", "--json"), ("space", "list", "--json")]
    for case in cases:
        by_rest = as_json(invoke(*case, "--space", "beta", *rest))
        by_grpc = as_json(grpc(server, *case, "--space", "beta"))
        assert set(by_grpc) == set(by_rest), case
        if case[1] in ("get", "list") and case[0] == "memory":
            one = by_grpc if case[1] == "get" else by_grpc["memories"][0]
            other = by_rest if case[1] == "get" else by_rest["memories"][0]
            assert set(one) == set(other) and one["id"] == other["id"], case


# ----------------------------------------------------------------------------- choosing the space


def test_space_flag_beats_env_beats_config_over_grpc(server: EngramProcess, tmp_path: Any) -> None:
    config = tmp_path / "engram.toml"
    config.write_text('default_space = "beta"\n')
    by_flag = as_json(grpc(server, "memory", "remember", "flag wins", "--id", "p-flag", "--space", "alpha",
                           "--config", str(config), "--json", env={"ENGRAM_MEMORY_SPACE": "beta"}))
    by_env = as_json(grpc(server, "memory", "remember", "env wins", "--id", "p-env", "--config", str(config),
                          "--json", env={"ENGRAM_MEMORY_SPACE": "alpha"}))
    by_config = as_json(grpc(server, "memory", "remember", "config", "--id", "p-cfg", "--config", str(config),
                             "--json"))
    assert (by_flag["memory_space_id"], by_env["memory_space_id"], by_config["memory_space_id"]) == \
        ("alpha", "alpha", "beta")
    with (
        EngramClient(server.http_url, space="alpha") as alpha,
        EngramClient(server.http_url, space="beta") as beta,
    ):
        assert alpha.get("p-flag").content == "flag wins" and alpha.get("p-env").content == "env wins"
        assert beta.get("p-cfg").content == "config"
        assert {m.id for m in beta.iter_memories()}.isdisjoint({"p-flag", "p-env"})
    listed = as_json(grpc(server, "space", "list", "--json", env={"ENGRAM_MEMORY_SPACE": "alpha"}))
    assert listed["active_space"] == "alpha"


def test_same_id_in_two_spaces_stays_apart_over_grpc(server: EngramProcess) -> None:
    for space in ("alpha", "beta"):
        as_json(
            grpc(server, "memory", "remember", f"twin in {space}", "--id", "twin", "--space", space, "--json")
        )
    for space in ("alpha", "beta"):
        mem = as_json(grpc(server, "memory", "get", "twin", "--space", space, "--json"))
        assert mem["content"] == f"twin in {space}" and mem["memory_space_id"] == space
    as_json(grpc(server, "memory", "forget", "twin", "--space", "alpha", "--mode", "delete", "--json"))
    assert grpc(server, "memory", "get", "twin", "--space", "alpha").exit_code == 3
    assert (
        as_json(grpc(server, "memory", "get", "twin", "--space", "beta", "--json"))["content"]
        == "twin in beta"
    )


# ----------------------------------------------------------------------------- discovery and env


def test_transport_and_target_from_env_and_state_file(server: EngramProcess) -> None:
    env = {"ENGRAM_TRANSPORT": "grpc", "ENGRAM_GRPC_TARGET": server.grpc_target, "ENGRAM_URL": "http://127.0.0.1:9"}
    listed = invoke("memory", "list", "--space", "alpha", "--json", env=env)
    assert as_json(listed)["memory_space_id"] == "alpha"  # ENGRAM_URL points nowhere: gRPC was used
    state = str(server.root / f"state-{server.generation}.json")
    found = invoke("space", "list", "--transport", "grpc", "--state-file", state)
    assert found.exit_code == 0, found.stderr
    assert f"Memory spaces at grpc://127.0.0.1:{server.grpc_port}" in found.stdout
    bad = invoke("space", "list", env={"ENGRAM_TRANSPORT": "carrier-pigeon"})
    assert bad.exit_code == 2 and "ENGRAM_TRANSPORT" in bad.stderr


# ----------------------------------------------------------------------------- exit codes


def test_error_exit_codes_over_grpc(server: EngramProcess) -> None:
    missing_memory = grpc(server, "memory", "get", "no-such-id", "--space", "alpha")
    assert missing_memory.exit_code == 3 and "MEMORY_NOT_FOUND" in missing_memory.stderr
    missing_space = grpc(server, "memory", "list", "--space", "nobody-here", "--json")
    assert missing_space.exit_code == 3 and missing_space.stdout == ""
    envelope = json.loads(missing_space.stderr)
    assert envelope["error"]["code"] == "MEMORY_SPACE_NOT_FOUND" and envelope["error"]["exit_code"] == 3
    invalid = grpc(server, "memory", "list", "--space", "Bad Space")
    assert invalid.exit_code == 2 and "INVALID_MEMORY_SPACE" in invalid.stderr
    bad_when = grpc(server, "memory", "remember", "x", "--when", "next tuesday", "--space", "alpha")
    assert bad_when.exit_code == 2 and "when" in bad_when.stderr


def test_unreachable_grpc_target_exits_4() -> None:
    target = f"127.0.0.1:{closed_port()}"
    result = invoke("memory", "list", "--space", "alpha", "--transport", "grpc", "--grpc-target", target,
                    "--json", "--timeout", "5")
    assert result.exit_code == 4, result.stderr
    envelope = json.loads(result.stderr)["error"]
    assert envelope["code"] == "SERVER_UNREACHABLE" and target in envelope["message"]
    table = invoke("space", "list", "--transport", "grpc", "--grpc-target", target, "--timeout", "5")
    assert table.exit_code == 4 and "--grpc-target" in table.stderr


# ----------------------------------------------------------------------------- the field is set


def test_grpc_commands_never_use_the_default_space_fallback(server: EngramProcess) -> None:
    """Every CLI call above named its space in ``memory_space_id``: the server logged no fallback."""
    before = fallbacks(server)
    assert as_json(grpc(server, "memory", "recall", "espresso", "--space", "alpha", "--json"))
    assert as_json(grpc(server, "memory", "list", "--json"))["memory_space_id"] == "default"
    assert fallbacks(server) == before == []
    # Control: the same server does log the fallback for a gRPC request without the field.
    with GrpcClient(server.grpc_target) as raw:
        raw.list_memories()
    assert [r["route"] for r in fallbacks(server)] == ["ListMemories"]
