"""The space list describes spaces not loaded since a restart from their files, without loading them.

Over REST, gRPC and the CLI against a real server that was stopped and started again: the
last LSN, the dimension (bound by the first embedding, after creation, so the space's
marker does not have it) and the memory count are the ones the space had, and the space is
still not loaded afterwards (listing opened no writer, no index).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from engram.cli.main import cli
from engram.client import GrpcClient
from engram.testing import EngramProcess

API = "/api/v1"


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, dict[str, Any]]]:
    """A server whose spaces were written, then a restart; yields it and the pre-restart list."""
    srv = EngramProcess.start(tmp_path_factory.mktemp("offline"))
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        made = http.post(f"{API}/spaces", json={"id": "vectors", "embedder": {"provider": "none"}})
        assert made.status_code == 201 and made.json()["dimension"] is None, made.text
        hdr = {"X-Memory-Space": "vectors"}
        for i in range(5):
            resp = http.post(f"{API}/memories/remember", headers=hdr,
                             json={"content": f"m{i}", "embedding": [1.0, float(i), 0.5, 0.25]})
            assert resp.status_code == 201, resp.text
        http.request("DELETE", f"{API}/memories/{resp.json()['memory_id']}", headers=hdr,
                     params={"mode": "delete"}).raise_for_status()
        assert http.post(f"{API}/spaces", json={"id": "untouched"}).status_code == 201
        before = {s["id"]: s for s in http.get(f"{API}/spaces").json()["spaces"]}
    assert before["vectors"]["last_lsn"] >= 6 and before["vectors"]["dimension"] == 4
    assert before["vectors"]["memory_count"] == 4
    srv.stop()
    srv = srv.restart()
    yield srv, before
    srv.stop()


def _facts(space: dict[str, Any]) -> tuple[Any, ...]:
    return space["last_lsn"], space["dimension"], space["memory_count"]


def test_rest_list_reads_unloaded_spaces_from_disk(restarted: tuple[EngramProcess, dict[str, Any]]) -> None:
    srv, before = restarted
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        listed = {s["id"]: s for s in http.get(f"{API}/spaces").json()["spaces"]}
        for sid in ("vectors", "untouched"):
            assert listed[sid]["loaded"] is False, listed[sid]
            assert _facts(listed[sid]) == _facts(before[sid]), (listed[sid], before[sid])
        # Listed twice (the second from what the first read): same answer, still not loaded.
        again = {s["id"]: s for s in http.get(f"{API}/spaces").json()["spaces"]}
        assert again["vectors"] == listed["vectors"]


def test_grpc_list_reads_unloaded_spaces_from_disk(restarted: tuple[EngramProcess, dict[str, Any]]) -> None:
    srv, before = restarted
    with GrpcClient(srv.grpc_target) as client:
        listed = {s.id: s for s in client.list_spaces().spaces}
    got = listed["vectors"]
    assert not got.loaded
    assert (got.last_lsn, got.dimension, got.memory_count) == _facts(before["vectors"])


def test_cli_list_reads_unloaded_spaces_from_disk(restarted: tuple[EngramProcess, dict[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    srv, before = restarted
    for key in [k for k in os.environ if k.startswith("ENGRAM_")]:
        monkeypatch.delenv(key)
    for transport in ("rest", "grpc"):
        args = ["space", "list", "--url", srv.http_url, "--grpc-target", srv.grpc_target,
                "--transport", transport, "--json"]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        listed = {s["id"]: s for s in json.loads(result.stdout)["spaces"]}
        assert listed["vectors"]["loaded"] is False
        assert _facts(listed["vectors"]) == _facts(before["vectors"]), transport


def test_listing_did_not_load_and_loading_agrees(restarted: tuple[EngramProcess, dict[str, Any]]) -> None:
    srv, before = restarted
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        listed = {s["id"]: s for s in http.get(f"{API}/spaces").json()["spaces"]}
        assert listed["vectors"]["loaded"] is False
        # Loading it (a read) gives the same facts as the unloaded listing did.
        loaded = http.get(f"{API}/spaces/vectors").json()
        assert loaded["loaded"] is True
        assert _facts(loaded) == _facts(before["vectors"])
        # A write after loading moves the LSN on; the list follows (the cached facts were dropped).
        resp = http.post(f"{API}/memories/remember", headers={"X-Memory-Space": "vectors"},
                         json={"content": "later", "embedding": [0.0, 1.0, 0.0, 0.0]})
        assert resp.status_code == 201
        listed = {s["id"]: s for s in http.get(f"{API}/spaces").json()["spaces"]}
        assert listed["vectors"]["last_lsn"] == resp.json()["lsn"]
