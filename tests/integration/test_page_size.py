"""The page-size limit: one check in the service, driven by max_page_size, the same on REST and gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess

MAX = 7  # not the default (1000), so the limit visibly comes from the setting


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    with EngramProcess.start(tmp_path_factory.mktemp("pages"), spaces=["alpha"],
                             settings={"max_page_size": MAX}) as proc:
        yield proc


@pytest.mark.parametrize("path", ["/api/v1/memories", "/api/v1/spaces", "/api/v1/consolidations"])
def test_rest_listings_take_their_limit_from_max_page_size(srv: EngramProcess, path: str) -> None:
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "alpha"}, timeout=30) as http:
        assert http.get(path, params={"limit": MAX}).status_code == 200
        assert http.get(path).status_code == 200  # the default page
        for bad in (MAX + 1, 0, -1):
            r = http.get(path, params={"limit": bad})
            assert r.status_code == 400, (path, bad, r.text)
            err = r.json()["error"]
            assert err["code"] == "INVALID_INPUT"
            assert str(MAX) in err["message"] and "max_page_size" in err["message"]


def test_grpc_listings_take_their_limit_from_max_page_size(srv: EngramProcess) -> None:
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = spb_grpc.EngramServiceStub(ch)
        stub.ListMemories(spb.ListMemoriesRequest(memory_space_id="alpha", page_size=MAX), timeout=30)
        stub.ListSpaces(spb.ListSpacesRequest(page_size=MAX), timeout=30)
        stub.ListSpaces(spb.ListSpacesRequest(), timeout=30)  # unset: the default page
        calls = [
            lambda: stub.ListMemories(spb.ListMemoriesRequest(memory_space_id="alpha", page_size=MAX + 1),
                                      timeout=30),
            lambda: stub.ListSpaces(spb.ListSpacesRequest(page_size=MAX + 1), timeout=30),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = info.value.details() or ""
            assert str(MAX) in details and "max_page_size" in details
