"""Issue 11's input edges on every transport, against a real server: booleans in an embedding,
implausible numeric times, a reminisce window that runs backwards, the `complete` that divided by
zero, and deleting the default space (REST, gRPC, CLI). Nothing invalid is stored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from click.testing import CliRunner
from google.protobuf.timestamp_pb2 import Timestamp

from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.cli.main import cli
from engram.testing import EngramProcess

API = "/api/v1"
SPACE = {"X-Memory-Space": "alpha"}


@pytest.fixture(scope="module")
def srv(rest_server: EngramProcess) -> EngramProcess:
    return rest_server


@pytest.fixture(scope="module")
def http(srv: EngramProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, headers=SPACE, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(srv: EngramProcess) -> Iterator[spb_grpc.EngramServiceStub]:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        yield spb_grpc.EngramServiceStub(ch)


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:500]
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == code, err
    assert err["message"] and err["suggestion"], err
    return err


def total(http: httpx.Client, space: str = "alpha") -> int:
    return int(http.get(f"{API}/memories", headers={"X-Memory-Space": space}).json()["total"])


@pytest.mark.parametrize("body", [
    {"content": "bools", "embedding": [True, 0.5, 0.1]},
    {"content": "bools", "embedding": [0.5, False, 0.1]},
    {"content": "strings", "embedding": ["0.5", 0.5, 0.1]},
])
def test_rest_rejects_non_numeric_embedding_components(http: httpx.Client, body: dict[str, Any]) -> None:
    before = total(http)
    err = error(http.post(f"{API}/memories/remember", json=body), 400, "INVALID_INPUT")
    assert "embedding" in err["message"]
    error(http.post(f"{API}/memories/recall", json={"embedding": body["embedding"]}), 400, "INVALID_INPUT")
    assert total(http) == before


@pytest.mark.parametrize("when", [-1, 0, 0.5, 99_999_999_999_999, "-1", True])
def test_rest_rejects_implausible_numeric_times(http: httpx.Client, when: Any) -> None:
    before = total(http)
    resp = http.post(f"{API}/episodes/remember", json={"what": "when?", "when": when})
    err = error(resp, 400, "INVALID_INPUT")
    assert "when" in err["message"] and ("Unix seconds" in err["message"] or "boolean" in err["message"])
    # the same rule in a query string and in the other time fields
    error(http.get(f"{API}/episodes/reminisce", params={"time_start": str(when).lower()}), 400,
          "INVALID_INPUT")
    error(http.get(f"{API}/memories/recall", params={"query": "x", "time_end": str(when).lower()}), 400,
          "INVALID_INPUT")
    error(http.post(f"{API}/complete", json={"what": "x", "when": when}), 400, "INVALID_INPUT")
    assert total(http) == before


def test_rest_takes_plausible_unix_seconds(http: httpx.Client) -> None:
    resp = http.post(f"{API}/episodes/remember", json={"what": "unix time", "when": 1_700_000_000.25})
    assert resp.status_code == 201, resp.text
    got = http.get(f"{API}/memories/{resp.json()['memory_id']}").json()
    assert got["when"].startswith("2023-11-14T22:13:20.25")


def test_reminisce_window_backwards_is_invalid_on_rest_and_grpc(http: httpx.Client,
                                                               stub: spb_grpc.EngramServiceStub) -> None:
    window = {"time_start": "2026-02-01T00:00:00Z", "time_end": "2026-01-01T00:00:00Z"}
    for resp in (http.get(f"{API}/episodes/reminisce", params=window),
                 http.post(f"{API}/episodes/reminisce", json=window)):
        err = error(resp, 400, "INVALID_INPUT")
        assert "time_start must not be after time_end" in err["message"]
    start, end = Timestamp(seconds=1_769_904_000), Timestamp(seconds=1_767_225_600)
    with pytest.raises(grpc.RpcError) as ei:
        stub.Reminisce(spb.ReminisceRequest(time_start=start, time_end=end, memory_space_id="alpha"),
                       timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "time_start must not be after time_end" in str(ei.value.details())


def test_the_complete_that_divided_by_zero_answers_on_rest_and_grpc(http: httpx.Client,
                                                                   stub: spb_grpc.EngramServiceStub) -> None:
    space = {"X-Memory-Space": "beta"}
    for ep in ({"what": "x", "when": "2026-11-01T00:00:00Z"},
               {"what": "other", "where_location": "office", "when": "2020-01-01T00:00:00Z"}):
        assert http.post(f"{API}/episodes/remember", json=ep, headers=space).status_code == 201
    resp = http.post(f"{API}/complete", json={"what": "x", "when": "2030-01-01T00:00:00Z"}, headers=space)
    assert resp.status_code == 200, resp.text
    best = resp.json()["best"]
    assert best["episode"]["what"] == "x" and 0.0 <= best["confidence"]["value"] <= 1.0
    got = stub.Complete(spb.CompleteRequest(what="x", when=Timestamp(seconds=1_893_456_000),
                                            memory_space_id="beta"), timeout=10)
    assert {f.field: f.value for f in got.fields}["what"] == "x"
    assert 0.0 <= got.confidence.value <= 1.0


def test_the_default_space_cannot_be_deleted_over_rest_or_the_cli(http: httpx.Client,
                                                                  srv: EngramProcess) -> None:
    err = error(http.delete(f"{API}/spaces/default"), 409, "DEFAULT_SPACE_PROTECTED")
    assert "default memory space" in err["message"] and "forget" in err["suggestion"].lower()
    env = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    result = CliRunner().invoke(cli, ["space", "delete", "default", "--yes", "--url", srv.http_url], env=env)
    assert result.exit_code != 0
    assert "DEFAULT_SPACE_PROTECTED" in result.output or "DEFAULT_SPACE_PROTECTED" in (result.stderr or "")
    assert http.get(f"{API}/spaces/default").status_code == 200
    # an unnamed request still has its space
    resp = httpx.post(f"{srv.http_url}{API}/memories/remember", json={"content": "unnamed"}, timeout=30)
    assert resp.status_code == 201 and resp.json()["memory_space_id"] == "default"
    # any other space can still be deleted
    assert http.post(f"{API}/spaces", json={"id": "scratch"}).status_code == 201
    assert http.delete(f"{API}/spaces/scratch").status_code == 200
