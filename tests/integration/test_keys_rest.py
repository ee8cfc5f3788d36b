"""API keys over REST, SSE and the CLI (SPEC §10), against real server processes.

The access matrix itself is tests/hostile/test_auth_matrix_rest.py; here: key management,
a revoked or expiring key's open SSE stream ending, rate limits, quotas, the admin.key
bootstrap and the CLI (offline and through the server).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from engram.cli.main import cli
from engram.client import EngramClient
from engram.errors import QuotaExceeded
from engram.testing import EngramProcess


def _admin(srv: EngramProcess) -> str:
    return (srv.data_dir / "_system" / "admin.key").read_text().strip()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _engram(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The ``engram`` CLI in-process (click's runner; real HTTP, real files), every ENGRAM_* unset first."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    clean.update(env or {})
    res = CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)
    return Ran(res.exit_code, res.stdout, res.stderr)


def _engram_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "engram", *args], capture_output=True, text=True, env=full,
                          timeout=60)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    s = EngramProcess.start(tmp_path_factory.mktemp("keys"), spaces=["alpha", "beta"],
                            settings={"auth": "required", "max_memories": 3,
                                      "rate_limit_per_second": 2, "rate_limit_burst": 50})
    yield s
    s.kill()


def _sse_lines(lines: Iterator[str], until: str, timeout: float = 15.0) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + timeout
    for line in lines:
        out.append(line)
        if until in line or time.monotonic() > deadline:
            break
    return out


def test_key_management_roundtrip_and_listing_never_shows_tokens(srv: EngramProcess) -> None:
    admin = _admin(srv)
    with httpx.Client(base_url=srv.http_url, headers=_bearer(admin)) as http:
        made = http.post("/api/v1/keys", json={"name": "ci", "role": "writer", "spaces": ["alpha"],
                                               "expires_in_seconds": 3600})
        assert made.status_code == 201
        body = made.json()
        assert body["key"].startswith("egk_") and body["spaces"] == ["alpha"] and body["role"] == "writer"
        assert body["expires_at"] - body["created_at"] == pytest.approx(3600, abs=1)
        listing = http.get("/api/v1/keys")
        assert listing.status_code == 200 and body["key"] not in listing.text
        assert body["key_id"] in listing.text
        bad = http.post("/api/v1/keys", json={"role": "root"})
        assert bad.status_code == 400
        bad = http.post("/api/v1/keys", json={"role": "reader", "spaces": ["Bad Space"]})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_MEMORY_SPACE"
        assert http.delete("/api/v1/keys/key_nope").status_code == 404
        gone = http.delete(f"/api/v1/keys/{body['key_id']}")
        assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    resp = httpx.get(srv.http_url + "/api/v1/memories",
                     headers={**_bearer(body["key"]), "X-Memory-Space": "alpha"})
    assert resp.status_code == 401 and "revoked" in resp.json()["error"]["message"]
    assert body["key"] not in srv.logs()


def test_client_api_key_and_x_api_key_header(srv: EngramProcess) -> None:
    with EngramClient(srv.http_url, space="alpha", api_key=_admin(srv)) as c:
        assert c.create_key("reader", spaces=["alpha"])["role"] == "reader"
    key = EngramClient(srv.http_url, api_key=_admin(srv)).create_key("reader", spaces=["beta"])["key"]
    resp = httpx.get(srv.http_url + "/api/v1/memories", headers={"X-API-Key": key, "X-Memory-Space": "beta"})
    assert resp.status_code == 200


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_open_sse_stream_of_a_revoked_or_expired_key_ends(srv: EngramProcess, how: str) -> None:
    admin = _admin(srv)
    # The stream must end by itself: a read that waits 10 s (longer than the key lives) fails the test.
    with httpx.Client(base_url=srv.http_url, timeout=10) as http:
        made = http.post("/api/v1/keys", headers=_bearer(admin),
                         json={"role": "reader", "spaces": ["alpha"],
                               "expires_in_seconds": 1.5 if how == "expired" else None}).json()
        with http.stream("GET", "/api/v1/stream/memories",
                         headers={**_bearer(made["key"]), "X-Memory-Space": "alpha"}) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            assert next(lines).startswith(": subscribed")
            if how == "revoked":
                gone = http.delete(f"/api/v1/keys/{made['key_id']}", headers=_bearer(admin))
                assert gone.status_code == 200
            got = _sse_lines(lines, until='"reason"')
            rest = list(lines)  # the server completes the response after `end`
        assert all(not line.startswith("data:") for line in rest), rest
        ended = [line for line in got if line.startswith("data:") and "reason" in line]
        assert ended and how in json.loads(ended[-1][5:])["reason"], got
        assert "event: end" in got


def test_rate_limit_per_key(srv: EngramProcess) -> None:
    admin = _admin(srv)
    with httpx.Client(base_url=srv.http_url) as http:
        limited = http.post("/api/v1/keys", headers=_bearer(admin), json={"role": "reader"}).json()["key"]
        statuses = [http.get("/api/v1/spaces", headers=_bearer(limited)) for _ in range(60)]
        refused = [r for r in statuses if r.status_code == 429]
        assert refused, [r.status_code for r in statuses]
        assert refused[0].json()["error"]["code"] == "RATE_LIMITED"
        assert int(refused[0].headers["retry-after"]) >= 1
        # another key has its own bucket
        other = http.post("/api/v1/keys", headers=_bearer(admin), json={"role": "reader"}).json()["key"]
        assert http.get("/api/v1/spaces", headers=_bearer(other)).status_code == 200


def test_quota_refuses_the_write_and_stores_nothing(srv: EngramProcess) -> None:
    with EngramClient(srv.http_url, space="beta", api_key=_admin(srv)) as c:
        for i in range(3):
            c.remember(f"memory {i}")
        with pytest.raises(QuotaExceeded) as info:
            c.remember("one too many")
        assert info.value.http_status == 403
        assert c.get_space("beta").memory_count == 3
        listed = c.list_memories(limit=10)
        assert all(m.content != "one too many" for m in listed.memories)


def test_max_space_bytes_and_disabled_auth_is_logged(tmp_path: Path) -> None:
    s = EngramProcess.start(tmp_path, spaces=["alpha"], settings={"max_space_bytes": 400_000})
    try:
        # loopback, no auth setting: auth is off, said at start, and no _system dir is made for it
        assert "auth is disabled" in s.logs()
        assert not (s.data_dir / "_system").exists()
        with EngramClient(s.http_url, space="alpha") as c:
            stored = 0
            with pytest.raises(QuotaExceeded):
                for _ in range(100):
                    c.remember("x" * 60_000)
                    stored += 1
            assert c.get_space("alpha").memory_count == stored
    finally:
        s.kill()


def test_bootstrap_admin_key_file_and_cli_pickup(tmp_path: Path) -> None:
    s = EngramProcess.start(tmp_path, spaces=["alpha"], settings={"auth": "required"})
    try:
        path = s.data_dir / "_system" / "admin.key"
        assert (path.stat().st_mode & 0o777) == 0o600
        assert str(path) in s.stdout() or "admin.key" in s.stdout()
        assert path.read_text().strip() not in s.logs() + s.stdout()
        env = {"ENGRAM_URL": s.http_url, "ENGRAM_DATA_DIR": str(s.data_dir)}
        ok = _engram("space", "list", "--json", env=env)  # finds admin.key in the data dir
        assert ok.returncode == 0, ok.stderr
        assert "alpha" in ok.stdout
        refused = _engram("space", "list", "--json", env={"ENGRAM_URL": s.http_url,
                                                          "ENGRAM_DATA_DIR": str(tmp_path / "elsewhere")})
        assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr
        # through the server with the admin key: create, list, revoke
        made = _engram("key", "create", "--role", "reader", "--space", "alpha", "--json", env=env)
        assert made.returncode == 0, made.stderr
        rec = json.loads(made.stdout)
        listed = _engram("key", "list", "--json", env=env)
        assert rec["key_id"] in listed.stdout and rec["key"] not in listed.stdout
        as_reader = _engram("memory", "list", "--space", "alpha", "--json", "--api-key", rec["key"],
                            env=env)
        assert as_reader.returncode == 0, as_reader.stderr
        revoked = _engram("key", "revoke", rec["key_id"], "--json", env=env)
        assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
        after = _engram("memory", "list", "--space", "alpha", "--json",
                        env={**env, "ENGRAM_API_KEY": rec["key"]})
        assert after.returncode != 0 and "UNAUTHENTICATED" in after.stderr
    finally:
        s.kill()


def test_cli_offline_keys_are_honoured_by_the_next_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"ENGRAM_DATA_DIR": str(data)}
    made = _engram("key", "create", "--role", "writer", "--space", "alpha", "--expires", "30d", "--json",
                   env=env)
    assert made.returncode == 0, made.stderr
    rec: dict[str, Any] = json.loads(made.stdout)
    assert rec["expires_at"] - rec["created_at"] == pytest.approx(30 * 86400, abs=5)
    keys_file = data / "_system" / "keys.json"
    assert (keys_file.stat().st_mode & 0o777) == 0o600 and rec["key"] not in keys_file.read_text()
    doomed = json.loads(_engram("key", "create", "--role", "reader", "--json", env=env).stdout)
    assert _engram("key", "revoke", doomed["key_id"], env=env).returncode == 0
    listed = _engram("key", "list", env=env)
    assert listed.returncode == 0 and "revoked" in listed.stdout and rec["key_id"] in listed.stdout
    s = EngramProcess.start(tmp_path, spaces=["alpha"], settings={"auth": "required"}, data_dir=data)
    try:
        ok = httpx.post(s.http_url + "/api/v1/memories/remember", json={"content": "hi"},
                        headers={**_bearer(rec["key"]), "X-Memory-Space": "alpha"})
        assert ok.status_code == 201
        refused = httpx.get(s.http_url + "/api/v1/spaces", headers=_bearer(doomed["key"]))
        assert refused.status_code == 401
        # no admin key existed: start made one
        assert (data / "_system" / "admin.key").exists()
        # while the server holds the data dir, `engram key` goes through it
        via = _engram("key", "list", "--json", env=env)
        assert via.returncode == 0, via.stderr
        assert rec["key_id"] in via.stdout
    finally:
        s.kill()


def test_non_loopback_listener_without_auth_refuses_to_start(tmp_path: Path) -> None:
    out = _engram_process("start", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--http-port", "0",
                  "--grpc-port", "0", env={"ENGRAM_AUTH": "disabled"})
    assert out.returncode == 2
    assert "allow_insecure" in out.stderr and not (tmp_path / "d").exists()
