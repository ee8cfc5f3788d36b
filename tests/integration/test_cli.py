"""The ``engram`` CLI against a real server process.

Most commands run in-process through click's ``CliRunner`` (fast, and still
over real HTTP to a real ``engram start``); the exit-code, help and discovery
checks run ``python -m engram`` as real subprocesses. One server per module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engram.cli.main import cli
from engram.client import EngramClient
from engram.testing import EngramProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("cli"), spaces=["alpha", "beta"])
    yield srv
    srv.stop()


def clean_env(**extra: str) -> dict[str, str | None]:
    """Unset every ENGRAM_* variable of the test process; then set ``extra``."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    env.update(extra)
    return env


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=clean_env(**(env or {})), input=input,
                              catch_exceptions=False)


def run(*args: str, env: dict[str, str] | None = None,
        input: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m engram ...`` as a real subprocess."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "engram", *args], capture_output=True, text=True, env=full,
                          input=input, timeout=60)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def url(server: EngramProcess) -> str:
    return server.http_url


# ----------------------------------------------------------------------------- help and usage


def test_help_documents_commands_and_exit_codes() -> None:
    out = run("--help")
    assert out.returncode == 0
    for word in ("space", "memory", "status", "start", "stop", "Exit codes", "not found",
                 "cannot reach the server", "ENGRAM_MEMORY_SPACE"):
        assert word in out.stdout
    mem = invoke("memory", "--help")
    for sub in ("remember", "recall", "get", "list", "forget", "import", "export"):
        assert sub in mem.stdout


def test_usage_errors_exit_2(url: str) -> None:
    assert invoke("memory", "get", "--url", url).exit_code == 2  # missing ID
    assert invoke("memory", "recall", "--url", url, "--space", "alpha").exit_code == 2  # nothing to recall by
    bad = invoke("memory", "remember", "x", "--url", url, "--embedding", "not-json")
    assert bad.exit_code == 2 and "--embedding" in bad.stderr
    assert invoke("space", "list", "--no-such-flag").exit_code == 2
    assert run("memory", "forget", "x", "--mode", "shred", "--url", url).returncode == 2


# ----------------------------------------------------------------------------- spaces


def test_space_create_list_get_delete(url: str) -> None:
    made = invoke("space", "create", "cli-sp-1", "--url", url, "--json")
    assert made.exit_code == 0, made.stderr
    body = json.loads(made.stdout)
    assert body["id"] == "cli-sp-1" and body["created"] is True
    again = invoke("space", "create", "cli-sp-1", "--url", url)
    assert again.exit_code == 0 and "already exists" in again.stdout

    listed = json.loads(invoke("space", "list", "--url", url, "--json", "--space", "beta").stdout)
    ids = [s["id"] for s in listed["spaces"]]
    assert ids == sorted(ids) and {"alpha", "beta", "cli-sp-1"} <= set(ids)
    assert listed["active_space"] == "beta"
    table = invoke("space", "list", "--url", url, "--space", "beta")
    assert table.exit_code == 0 and "cli-sp-1" in table.stdout and "active space: beta" in table.stdout

    got = json.loads(invoke("space", "get", "cli-sp-1", "--url", url, "--json").stdout)
    assert got["id"] == "cli-sp-1" and got["memory_count"] == 0
    shown = invoke("space", "get", "--url", url, "--space", "alpha")
    assert shown.exit_code == 0 and "Memory space alpha" in shown.stdout

    gone = invoke("space", "delete", "cli-sp-1", "--yes", "--url", url, "--json")
    assert gone.exit_code == 0 and json.loads(gone.stdout)["deleted"] is True
    missing = invoke("space", "get", "cli-sp-1", "--url", url)
    assert missing.exit_code == 3
    assert "MEMORY_SPACE_NOT_FOUND" in missing.stderr and "engram space create" in missing.stderr
    assert missing.stdout == ""


def test_space_delete_asks_for_confirmation(url: str) -> None:
    invoke("space", "create", "cli-sp-2", "--url", url)
    refused = invoke("space", "delete", "cli-sp-2", "--url", url, input="n\n")
    assert refused.exit_code == 1
    assert invoke("space", "get", "cli-sp-2", "--url", url).exit_code == 0
    assert invoke("space", "delete", "cli-sp-2", "--url", url, input="y\n").exit_code == 0


# ----------------------------------------------------------------------------- memories


def test_memory_remember_get_list_recall_forget(url: str) -> None:
    invoke("space", "create", "cli-mem", "--url", url)
    common = ["--url", url, "--space", "cli-mem"]
    stored = invoke("memory", "remember", "the espresso machine is on the third floor", "--id", "coffee",
                    "-t", "office", "--meta", "floor=3", "--confidence", "0.9", *common, "--json")
    assert stored.exit_code == 0, stored.stderr
    receipt = json.loads(stored.stdout)
    assert receipt["memory_id"] == "coffee" and receipt["lsn"] > 0 and receipt["memory_space_id"] == "cli-mem"
    human = invoke("memory", "remember", "the bike shed is behind the parking lot", *common)
    assert human.exit_code == 0 and "in space cli-mem" in human.stdout
    piped = invoke("memory", "remember", "-", "--id", "piped", *common, input="read from stdin\n")
    assert piped.exit_code == 0
    episode = invoke("memory", "remember", "standup with infra", "--when", "2026-01-05T09:00:00Z",
                     "--where", "room 4", "--who", "ana", *common, "--json")
    assert episode.exit_code == 0, episode.stderr

    got = json.loads(invoke("memory", "get", "coffee", *common, "--json").stdout)
    assert got["content"].startswith("the espresso") and got["tags"] == ["office"]
    assert got["metadata"] == {"floor": 3} and got["memory_space_id"] == "cli-mem"
    assert json.loads(invoke("memory", "get", "piped", *common,
                             "--json").stdout)["content"] == "read from stdin"
    table = invoke("memory", "get", "coffee", *common)
    assert "Memory coffee in space cli-mem" in table.stdout

    page = json.loads(invoke("memory", "list", *common, "--json").stdout)
    assert page["total"] == 4 and page["memory_space_id"] == "cli-mem"
    first = json.loads(invoke("memory", "list", "--limit", "1", *common, "--json").stdout)
    assert len(first["memories"]) == 1 and first["next_cursor"]
    listed = invoke("memory", "list", "--limit", "2", *common)
    assert "Memories in space cli-mem" in listed.stdout and "--cursor" in listed.stdout

    found = json.loads(invoke("memory", "recall", "espresso", *common, "--json").stdout)
    hits = [i["memory"]["id"] for i in found["memories"]["vivid"] + found["memories"]["associated"]]
    assert hits[0] == "coffee"
    shown = invoke("memory", "recall", "espresso", *common)
    assert shown.exit_code == 0 and "space cli-mem" in shown.stdout and "coffee" in shown.stdout

    forgot = json.loads(invoke("memory", "forget", "coffee", *common, "--json").stdout)
    assert forgot["mode"] == "suppress"
    assert json.loads(invoke("memory", "list", *common, "--json").stdout)["total"] == 3
    deleted = invoke("memory", "forget", "coffee", "--mode", "delete", *common)
    assert deleted.exit_code == 0 and "deleted coffee" in deleted.stdout
    missing = invoke("memory", "get", "coffee", *common)
    assert missing.exit_code == 3 and "MEMORY_NOT_FOUND" in missing.stderr and missing.stdout == ""


def test_space_precedence_flag_env_config(url: str, tmp_path: Path) -> None:
    for sid in ("prec-flag", "prec-env", "prec-conf"):
        invoke("space", "create", sid, "--url", url)
    config = tmp_path / "engram.toml"
    config.write_text('default_space = "prec-conf"\n')

    def stored_in(*args: str, env: dict[str, str] | None = None) -> str:
        result = invoke("memory", "remember", "where am I", "--url", url, "--json", *args, env=env)
        assert result.exit_code == 0, result.stderr
        return str(json.loads(result.stdout)["memory_space_id"])

    env = {"ENGRAM_MEMORY_SPACE": "prec-env"}
    assert stored_in("--config", str(config)) == "prec-conf"
    assert stored_in("--config", str(config), env=env) == "prec-env"
    assert stored_in("--config", str(config), "--space", "prec-flag", env=env) == "prec-flag"
    assert stored_in(env={"ENGRAM_CONFIG": str(config)}) == "prec-conf"
    with EngramClient(url) as c:
        counts = {sid: c.get_space(sid).memory_count for sid in ("prec-flag", "prec-env", "prec-conf")}
    assert counts == {"prec-flag": 1, "prec-env": 1, "prec-conf": 2}

    status = json.loads(invoke("status", "--url", url, "--json", "--config", str(config), env=env).stdout)
    assert status["active_space"] == "prec-env" and status["space_source"] == "ENGRAM_MEMORY_SPACE"


def test_exit_codes_from_real_processes(url: str) -> None:
    unknown = run("memory", "list", "--url", url, "--space", "no-such-space")
    assert unknown.returncode == 3
    assert "MEMORY_SPACE_NOT_FOUND" in unknown.stderr and "hint:" in unknown.stderr
    invalid = run("memory", "list", "--url", url, "--space", "Not Valid!")
    assert invalid.returncode == 2 and "INVALID_MEMORY_SPACE" in invalid.stderr
    dead = run("memory", "list", "--url", closed_port_url(), "--space", "alpha")
    assert dead.returncode == 4 and "cannot reach" in dead.stderr and dead.stdout == ""
    rejected = run("memory", "remember", "x", "--url", url, "--space", "alpha", "--json",
                   "--embedding", "[0, 0, 0]")
    assert rejected.returncode == 2 and rejected.stdout == ""
    envelope = json.loads(rejected.stderr)
    assert envelope["error"]["code"] and envelope["error"]["exit_code"] == 2


def test_server_found_through_env_and_state_file(server: EngramProcess) -> None:
    by_env = run("status", "--json", env={"ENGRAM_URL": server.http_url, "ENGRAM_MEMORY_SPACE": "alpha"})
    report = json.loads(by_env.stdout)
    assert by_env.returncode == 0 and report["reachable"] and report["url_source"] == "ENGRAM_URL"
    assert report["space"]["id"] == "alpha"

    state_file = server.root / f"state-{server.generation}.json"
    by_state = run("status", "--state-file", str(state_file), "--json")
    report = json.loads(by_state.stdout)
    assert by_state.returncode == 0 and report["url"] == server.http_url
    assert report["url_source"].startswith("state file") and report["pid"] == server.pid
    table = run("status", "--state-file", str(state_file), "--space", "beta")
    assert table.returncode == 0 and "beta" in table.stdout and str(server.pid) in table.stdout


def test_status_exit_codes(url: str, tmp_path: Path) -> None:
    assert invoke("status", "--url", url, "--space", "no-such-space").exit_code == 3
    dead = invoke("status", "--url", closed_port_url(), "--json")
    assert dead.exit_code == 4
    assert json.loads(dead.stdout)["reachable"] is False

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = tmp_path / "engram.state.json"
    stale.write_text(json.dumps({"pid": finished.pid, "host": "127.0.0.1", "http_url": closed_port_url()}))
    result = invoke("status", "--data-dir", str(tmp_path))
    assert result.exit_code == 4 and "stale" in result.stderr


# ----------------------------------------------------------------------------- import / export


def test_import_export_round_trip(url: str, tmp_path: Path) -> None:
    with EngramClient(url) as c:
        c.create_space("cli-src")
        c.create_space("cli-dst")
        src = c.with_space("cli-src")
        for i in range(60):
            src.remember(f"fact number {i} [with brackets]", id=f"f-{i}", embedding=[1.0, float(i), 0.25],
                         tags=["bulk", f"n{i % 3}"], metadata={"i": str(i)})
        src.experience("2026-03-01T10:00:00Z", "an episode", id="ep-1", where_location="lab", who=["ana"],
                       embedding=[0.5, 0.5, 0.5])
        src.forget("f-7")  # suppressed

    dump = tmp_path / "src.jsonl"
    exported = invoke("memory", "export", str(dump), "--include-suppressed", "--url", url, "--space",
                      "cli-src",
                      "--json")
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["exported"] == 61
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(lines) == 61 and lines[0]["embedding"] == [1.0, 0.0, 0.25]

    imported = invoke("memory", "import", str(dump), "--url", url, "--space", "cli-dst", "--json")
    assert imported.exit_code == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary == {**summary, "imported": 61, "failed": 0, "suppressed": 1, "memory_space_id": "cli-dst"}

    back = invoke("memory", "export", "--include-suppressed", "--url", url, "--space", "cli-dst")
    assert back.exit_code == 0
    again = {m["id"]: m for m in map(json.loads, back.stdout.splitlines())}
    keep = ("content", "embedding", "tags", "metadata", "memory_type", "confidence", "suppressed", "when",
            "where_location", "who")
    assert {m["id"]: {k: m[k] for k in keep} for m in lines} == {i: {k: m[k] for k in keep}
                                                               for i, m in again.items()}

    human = invoke("memory", "import", str(dump), "--url", url, "--space", "cli-src")
    assert human.exit_code == 1, "every id already exists (409 MEMORY_EXISTS): the server rejects each line"
    assert "imported 0 memories" in human.stdout and "line 1:" in human.stderr


def test_import_rejects_bad_lines_and_unknown_space(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "fine"}\nnot json\n')
    result = invoke("memory", "import", str(bad), "--url", url, "--space", "alpha")
    assert result.exit_code == 2 and "line 2" in result.stderr
    good = tmp_path / "good.jsonl"
    good.write_text('{"content": "fine"}\n')
    assert invoke("memory", "import", str(good), "--url", url, "--space", "nowhere").exit_code == 3
    piped = run("memory", "import", "-", "--url", url, "--space", "beta", "--json", "--no-progress")
    assert piped.returncode == 0 and json.loads(piped.stdout)["imported"] == 0
