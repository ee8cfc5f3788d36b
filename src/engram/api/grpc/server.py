"""gRPC server factory (placeholder until the gRPC adapter lands)."""

from __future__ import annotations

import grpc

from ...service import EngramService


async def create_grpc_server(service: EngramService, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
