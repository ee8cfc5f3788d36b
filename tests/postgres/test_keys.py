"""API keys shared by every server on one PostgreSQL database (issue 17 item 3; auth.pg_keys).

Two real ``engram start --backend postgres`` processes with ``auth = "required"`` on one fresh
database: the first bootstraps the only admin key (the second finds it in the table), a key made
through one server works on the other at once, a key revoked on one is refused on the other within
a second (and its open SSE and gRPC streams there end), a key of one space reads no other space on either
server, the table holds only token hashes, and ``engram key`` with the postgres backend acts on
the database itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.cli.main import cli
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers, start_pg_server

#: The bound docs/scale-out.md promises for a revocation made elsewhere (the poll is 0.25 s).
REVOKE_BOUND = 1.0


@pytest.fixture(scope="module")
def dsn(pg: PgCluster) -> str:
    return fresh_database(pg, "keys")


@pytest.fixture(scope="module")
def servers(dsn: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    with pg_servers(dsn, tmp_path_factory, auth="required") as pair:  # after A: A's admin exists
        yield pair


def _bearer(token: str, space: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **({"X-Memory-Space": space} if space else {})}


def _admin(srv: EngramProcess) -> str:
    return (srv.data_dir / "_system" / "admin.key").read_text().strip()


def _space(srv: EngramProcess, admin: str) -> str:
    sid = f"k-{uuid.uuid4().hex[:10]}"
    r = httpx.post(srv.http_url + "/api/v1/spaces", json={"id": sid, "dimension": 4}, headers=_bearer(admin),
                   timeout=30)
    assert r.status_code == 201, r.text
    return sid


def _key(srv: EngramProcess, admin: str, role: str, spaces: list[str] | None) -> dict[str, str]:
    r = httpx.post(srv.http_url + "/api/v1/keys", json={"name": "t", "role": role, "spaces": spaces},
                   headers=_bearer(admin), timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def _list_status(srv: EngramProcess, token: str, space: str) -> int:
    return httpx.get(srv.http_url + "/api/v1/memories", headers=_bearer(token, space), timeout=30).status_code


def _refused_within(srv: EngramProcess, token: str, space: str, bound: float) -> float:
    """Seconds until ``srv`` answers 401 to ``token``; fails if it still accepts after ``bound``."""
    t0 = time.monotonic()
    while True:
        status = _list_status(srv, token, space)
        waited = time.monotonic() - t0
        if status == 401:
            return waited
        assert status == 200 and waited < bound, f"still {status} after {waited:.2f} s"
        time.sleep(0.02)


def _engram(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The ``engram`` CLI in-process, every ENGRAM_* of this process unset first."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    clean.update(env)
    res = CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def test_one_bootstrap_admin_for_all_servers(servers: tuple[EngramProcess, EngramProcess]) -> None:
    a, b = servers
    assert (a.data_dir / "_system" / "admin.key").exists()
    # B started on a database that already had a usable admin key: it made none of its own.
    assert not (b.data_dir / "_system" / "admin.key").exists()
    listed = httpx.get(b.http_url + "/api/v1/keys", headers=_bearer(_admin(a)), timeout=30)
    assert listed.status_code == 200, listed.text
    assert [k["name"] for k in listed.json()["keys"] if k["role"] == "admin"] == ["bootstrap admin"]
    assert httpx.get(b.http_url + "/api/v1/keys", timeout=30).status_code == 401


def test_a_key_made_on_one_server_works_on_the_other_and_revocation_reaches_both(
        servers: tuple[EngramProcess, EngramProcess]) -> None:
    a, b = servers
    admin = _admin(a)
    sid = _space(a, admin)
    made = _key(a, admin, "writer", [sid])
    token = made["key"]
    # Made on A a moment ago, used on B at once (an unknown token is looked up before a 401).
    r = httpx.post(b.http_url + "/api/v1/memories/remember",
                   json={"content": "kept", "embedding": [1, 0, 0, 0]}, headers=_bearer(token, sid),
                   timeout=30)
    assert r.status_code == 201, r.text
    assert _list_status(a, token, sid) == 200
    with httpx.Client(base_url=a.http_url, timeout=10) as http, \
            http.stream("GET", "/api/v1/stream/memories", headers=_bearer(token, sid)) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith(": subscribed")
        gone = httpx.delete(f"{b.http_url}/api/v1/keys/{made['key_id']}", headers=_bearer(admin), timeout=30)
        assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
        assert _list_status(b, token, sid) == 401  # where it was revoked: at once
        waited = _refused_within(a, token, sid, REVOKE_BOUND)
        # A's open stream of the key ends by itself (a read waiting 10 s would fail the test).
        got: list[str] = []
        for line in lines:
            got.append(line)
            if '"reason"' in line:
                break
    reason = [json.loads(line[5:])["reason"] for line in got if line.startswith("data:") and "reason" in line]
    assert "event: end" in got and reason and "revoked" in reason[-1], got
    assert waited < REVOKE_BOUND
    body = httpx.get(a.http_url + "/api/v1/memories", headers=_bearer(token, sid), timeout=30).json()
    assert body["error"]["code"] == "UNAUTHENTICATED" and "revoked" in body["error"]["message"]


def test_an_open_grpc_stream_ends_when_its_key_is_revoked_on_the_other_server(
        servers: tuple[EngramProcess, EngramProcess]) -> None:
    a, b = servers
    admin = _admin(a)
    sid = _space(a, admin)
    made = _key(a, admin, "reader", [sid])
    got: queue.Queue[object] = queue.Queue()
    with grpc.insecure_channel(b.grpc_target) as channel:
        stream = spb_grpc.EngramServiceStub(channel).Stream(
            spb.StreamRequest(memory_space_id=sid), timeout=30,
            metadata=(("authorization", f"Bearer {made['key']}"),))

        def read() -> None:
            try:
                for _ in stream:
                    pass
                got.put("ended OK")
            except grpc.RpcError as err:
                got.put(err)

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.5)
        assert got.empty(), "the stream ended before the key was revoked"
        t0 = time.monotonic()
        gone = httpx.delete(f"{a.http_url}/api/v1/keys/{made['key_id']}", headers=_bearer(admin), timeout=30)
        assert gone.status_code == 200
        ended = got.get(timeout=10)
        waited = time.monotonic() - t0
    assert isinstance(ended, grpc.RpcError) and ended.code() == grpc.StatusCode.UNAUTHENTICATED, ended
    assert waited < REVOKE_BOUND, f"B's stream ended {waited:.2f} s after the revocation on A"


def test_a_key_of_one_space_reads_no_other_space_on_either_server(
        servers: tuple[EngramProcess, EngramProcess]) -> None:
    a, b = servers
    admin = _admin(a)
    x, y = _space(a, admin), _space(b, admin)
    reader = _key(b, admin, "reader", [x])["key"]
    for srv in (a, b):
        assert _list_status(srv, reader, x) == 200
        assert _list_status(srv, reader, y) == 404  # exactly a missing space's answer
        write = httpx.post(srv.http_url + "/api/v1/memories/remember", json={"content": "no"},
                           headers=_bearer(reader, x), timeout=30)
        assert write.status_code == 403
        keys = httpx.get(srv.http_url + "/api/v1/keys", headers=_bearer(reader), timeout=30)
        assert keys.status_code == 403


def test_only_token_hashes_are_stored(servers: tuple[EngramProcess, EngramProcess], dsn: str) -> None:
    a, _ = servers
    made = _key(a, _admin(a), "reader", None)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT * FROM engram.api_keys").fetchall()
        digest = conn.execute("SELECT token_sha256 FROM engram.api_keys WHERE key_id = %s",
                              (made["key_id"],)).fetchone()
    assert digest == (hashlib.sha256(made["key"].encode()).hexdigest(),)
    assert made["key"] not in repr(rows)


def test_engram_key_cli_acts_on_the_database(servers: tuple[EngramProcess, EngramProcess], dsn: str,
                                             tmp_path: Path) -> None:
    a, b = servers
    env = {"ENGRAM_BACKEND": "postgres", "ENGRAM_POSTGRES_DSN": dsn, "ENGRAM_DATA_DIR": str(tmp_path / "cli")}
    sid = _space(a, _admin(a))
    code, out, err = _engram("key", "create", "--role", "reader", "--space", sid, "--json", env=env)
    assert code == 0, err
    made = json.loads(out)
    for srv in (a, b):
        assert _list_status(srv, made["key"], sid) == 200
    code, out, err = _engram("key", "list", "--json", env=env)
    assert code == 0, err
    ids = {k["key_id"] for k in json.loads(out)["keys"]}
    assert made["key_id"] in ids and len(ids) >= 2 and made["key"] not in out  # the server-made ones too
    code, out, err = _engram("key", "revoke", made["key_id"], "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["revoked_at"] is not None
    for srv in (a, b):
        assert _refused_within(srv, made["key"], sid, REVOKE_BOUND) < REVOKE_BOUND
    assert not (tmp_path / "cli" / "_system" / "keys.json").exists()  # nothing went to a data dir
    code, _, err = _engram("key", "list", env={**env, "ENGRAM_POSTGRES_DSN": ""})
    assert code != 0 and "postgres_dsn" in err


def _bootstrap(store: Any, gate: threading.Barrier, made: queue.Queue[object]) -> None:
    gate.wait()
    made.put(store.create_first_admin("bootstrap admin"))


def _start(root: Path, dsn: str, started: list[EngramProcess], failed: list[BaseException]) -> None:
    try:
        started.append(start_pg_server(root, dsn, auth="required"))
    except BaseException as exc:  # reported by the test
        failed.append(exc)


def test_stores_racing_to_bootstrap_make_one_admin_key(pg: PgCluster, tmp_path: Path) -> None:
    """Many key stores (as many servers) ask at the same moment for the first admin key: one gets it."""
    from engram.auth.pg_keys import PgKeyStore

    dsn = fresh_database(pg, "firstadmin")
    stores = [PgKeyStore(tmp_path / f"s{i}", lambda: psycopg.connect(dsn), poll_seconds=None)
              for i in range(6)]
    try:
        for round_ in range(4):
            gate = threading.Barrier(len(stores))
            made: queue.Queue[object] = queue.Queue()
            threads = [threading.Thread(target=_bootstrap, args=(s, gate, made)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            got = [made.get_nowait() for _ in stores]
            winners = [m for m in got if m is not None]
            assert len(winners) == 1, f"round {round_}: {len(winners)} admin keys made"
            with psycopg.connect(dsn) as conn:
                admins = conn.execute("SELECT key_id FROM engram.api_keys WHERE role = 'admin' "
                                      "AND revoked_at IS NULL").fetchall()
                assert [r[0] for r in admins] == [winners[0][0].key_id]  # type: ignore[index]
            assert all(s.has_active_admin() for s in stores)  # each store reads the winner's key
            stores[0].revoke(winners[0][0].key_id)  # type: ignore[index]  # the next round starts with none
    finally:
        for s in stores:
            s.close()


def test_servers_starting_at_once_make_one_admin_key(pg: PgCluster, tmp_path: Path) -> None:
    for round_ in range(3):
        dsn = fresh_database(pg, "bootrace")
        started: list[EngramProcess] = []
        failed: list[BaseException] = []
        threads = [threading.Thread(target=_start, args=(tmp_path / f"{round_}{n}", dsn, started, failed))
                   for n in "ab"]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not failed and len(started) == 2
            with psycopg.connect(dsn) as conn:
                admins = conn.execute("SELECT key_id FROM engram.api_keys WHERE role = 'admin'").fetchall()
            assert len(admins) == 1, f"round {round_}: {len(admins)} admin keys"
            files = [s.data_dir / "_system" / "admin.key" for s in started]
            assert sum(f.exists() for f in files) == 1  # the winner's token, in its own data dir
            token = next(f for f in files if f.exists()).read_text().strip()
            for s in started:  # the one key works on both servers
                r = httpx.get(s.http_url + "/api/v1/keys", headers=_bearer(token), timeout=30)
                assert r.status_code == 200, r.text
        finally:
            for s in started:
                s.stop()


def test_unknown_tokens_are_looked_up_one_row_at_a_time_and_a_flood_is_bounded(
        pg: PgCluster, tmp_path: Path) -> None:
    """A token not in memory is looked up by its hash (a key made on another server works on its
    first request), but at most UNKNOWN_LOOKUPS times per poll interval: a flood of made-up
    tokens costs the database (and the event loop) a fixed number of queries."""
    from engram.auth.pg_keys import UNKNOWN_LOOKUPS, PgKeyStore
    from engram.errors import Unauthenticated

    dsn = fresh_database(pg, "unknowntokens")
    opened: list[int] = []

    def connect() -> psycopg.Connection[Any]:
        opened.append(1)
        return psycopg.connect(dsn)

    here = PgKeyStore(tmp_path / "here", connect, poll_seconds=30.0)  # a long window, no poll meanwhile
    there = PgKeyStore(tmp_path / "there", lambda: psycopg.connect(dsn), poll_seconds=None)
    try:
        rec, token = there.create("made-there", "reader", ["alpha"])
        before = len(opened)
        assert here.authenticate(token).key_id == rec.key_id  # one look-up, found
        assert len(opened) == before + 1
        flood = [f"egk_{secrets.token_urlsafe(32)}" for _ in range(UNKNOWN_LOOKUPS * 4)]
        for bogus in flood:
            with pytest.raises(Unauthenticated):
                here.authenticate(bogus)
        assert len(opened) == before + UNKNOWN_LOOKUPS, "every unknown token queried the database"
        assert here.authenticate(token).key_id == rec.key_id  # known now: no query
        assert len(opened) == before + UNKNOWN_LOOKUPS
    finally:
        here.close()
        there.close()


def test_after_the_window_an_unknown_token_is_looked_up_again(pg: PgCluster, tmp_path: Path) -> None:
    from engram.auth.pg_keys import UNKNOWN_LOOKUPS, PgKeyStore
    from engram.errors import Unauthenticated

    dsn = fresh_database(pg, "unknownwindow")
    here = PgKeyStore(tmp_path / "here", lambda: psycopg.connect(dsn), poll_seconds=None)  # window 0.25 s
    there = PgKeyStore(tmp_path / "there", lambda: psycopg.connect(dsn), poll_seconds=None)
    try:
        for _ in range(UNKNOWN_LOOKUPS):
            with pytest.raises(Unauthenticated):
                here.authenticate(f"egk_{secrets.token_urlsafe(32)}")
        rec, token = there.create("made-during-the-flood", "reader", ["alpha"])
        with pytest.raises(Unauthenticated):  # the window's look-ups are spent
            here.authenticate(token)
        time.sleep(0.3)
        assert here.authenticate(token).key_id == rec.key_id
    finally:
        here.close()
        there.close()
