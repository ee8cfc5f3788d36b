"""The gRPC server factory: EngramService + grpc.health.v1 + server reflection.

    server, port = await create_grpc_server(service, "127.0.0.1", 0)
    await server.start()

Message size limits come from ``settings.grpc_max_message_bytes`` (an
oversized message is rejected by gRPC itself with RESOURCE_EXHAUSTED). The
health service reports SERVING for ``""`` and ``engram.v1.EngramService``
until ``service.begin_shutdown()``, then NOT_SERVING, so load balancers drain
the server while in-flight calls finish.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ...service import EngramService
from .flow import FlowHandlers
from .gen import service_pb2, service_pb2_grpc
from .unary import UnaryHandlers

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["EngramService"].full_name


class EngramServicer(UnaryHandlers, FlowHandlers, service_pb2_grpc.EngramServiceServicer):
    """Every RPC of engram.v1.EngramService, as thin adapters over ``EngramService``."""


class _Health(health.aio.HealthServicer):
    """Standard health service that turns NOT_SERVING as soon as shutdown begins."""

    def __init__(self, service: EngramService) -> None:
        super().__init__()
        self._engram = service

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> health_pb2.HealthCheckResponse:
        if self._engram.shutting_down:
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
        return await super().Check(request, context)


async def create_grpc_server(service: EngramService, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    limit = service.settings.grpc_max_message_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ])
    servicer = EngramServicer(service)
    service_pb2_grpc.add_EngramServiceServicer_to_server(servicer, server)
    health_servicer = _Health(service)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    _drain_flows_on_stop(server, servicer)
    return server, bound


def _drain_flows_on_stop(server: grpc.aio.Server, servicer: EngramServicer) -> None:
    """Make ``server.stop(grace)`` first end every MemoryFlow (answering what is in flight).

    Streams end on their own when ``service.begin_shutdown()`` closes their subscriptions;
    a MemoryFlow may have none, and would otherwise hold the server for the whole grace period.
    """
    stop = server.stop

    async def stop_draining(grace: float | None) -> None:
        servicer.end_flows()
        await stop(grace)

    server.stop = stop_draining  # type: ignore[method-assign]
