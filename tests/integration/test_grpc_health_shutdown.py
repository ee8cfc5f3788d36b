"""gRPC health turns NOT_SERVING as soon as shutdown begins, while the server still answers.

In a real server process the window between ``begin_shutdown()`` and the gRPC server's stop
is too short to hit from outside, so the server is built in-process (the same
``create_grpc_server`` the process uses, on a real port, over a real channel) and the test
stands inside that window: shutdown begun, server still up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engram.api.grpc.server import SERVICE_NAME, create_grpc_server
from engram.testing import make_service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _statuses(target: str) -> list[int]:
    async with grpc.aio.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        return [(await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)).status
                for name in ("", SERVICE_NAME)]


def test_health_is_not_serving_once_shutdown_begins(tmp_path: Path) -> None:
    service = make_service(tmp_path, ["alpha"])

    async def run() -> tuple[list[int], list[int]]:
        server, port = await create_grpc_server(service, "127.0.0.1", 0)
        await server.start()
        try:
            before = await _statuses(f"127.0.0.1:{port}")
            service.begin_shutdown()
            during = await _statuses(f"127.0.0.1:{port}")
        finally:
            await server.stop(None)
        return before, during

    try:
        before, during = asyncio.run(run())
    finally:
        service.close()
    assert before == [SERVING, SERVING]
    assert during == [NOT_SERVING, NOT_SERVING]
