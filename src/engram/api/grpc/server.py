"""The gRPC server factory: EngramService + grpc.health.v1 + server reflection.

    server, port = await create_grpc_server(service, "127.0.0.1", 0)  # credentials=... for TLS
    await server.start()

Limits (all settings, logged once at start, see :func:`server_options`):

* message size: ``grpc_max_message_bytes`` in and out (gRPC itself answers an
  oversized message with RESOURCE_EXHAUSTED);
* ``grpc_max_concurrent_rpcs`` calls at once in the whole server, streams
  included; one more is answered RESOURCE_EXHAUSTED by grpcio before any
  handler runs (health checks count too, so keep headroom above the streams
  you expect);
* ``grpc_max_concurrent_streams`` per HTTP/2 connection (SETTINGS frame): a
  client that opens more waits for one to finish instead of piling up work;
* keepalive enforcement: client pings closer than
  ``grpc_min_ping_interval_seconds``, or sent while the connection has no call
  (``keepalive_permit_without_calls`` is off), are strikes; after
  ``grpc_max_ping_strikes`` the server sends GOAWAY ``too_many_pings``. The
  server itself pings a connection with calls after
  ``grpc_keepalive_time_seconds`` of quiet and drops it when no answer comes
  within ``grpc_keepalive_timeout_seconds``, so a vanished client's streams end;
* connection lifetime: GOAWAY after ``grpc_max_connection_idle_seconds``
  without a call; ``grpc_max_connection_age_seconds`` (off by default: event
  streams are meant to stay open) bounds a connection's life, with
  ``grpc_max_connection_age_grace_seconds`` for its calls to finish.

Undecodable request bytes are answered INVALID_ARGUMENT (``decoding.DecodeGuard``).

The health service reports SERVING for ``""`` and ``engram.v1.EngramService``
until ``service.begin_shutdown()``, then NOT_SERVING, so load balancers drain
the server while in-flight calls finish.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ...service import EngramService
from ...settings import Settings
from .auth import AuthGuard
from .decoding import DecodeGuard
from .flow import FlowHandlers
from .gen import service_pb2, service_pb2_grpc
from .unary import UnaryHandlers

log = logging.getLogger("engram.grpc")

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


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """The grpcio channel arguments of the server (names from grpc_types.h)."""
    opts = [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        ("grpc.keepalive_time_ms", _ms(settings.grpc_keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(settings.grpc_keepalive_timeout_seconds)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(settings.grpc_min_ping_interval_seconds)),
        ("grpc.http2.max_ping_strikes", settings.grpc_max_ping_strikes),
    ]
    if settings.grpc_max_connection_idle_seconds > 0:
        opts.append(("grpc.max_connection_idle_ms", _ms(settings.grpc_max_connection_idle_seconds)))
    if settings.grpc_max_connection_age_seconds > 0:
        opts.append(("grpc.max_connection_age_ms", _ms(settings.grpc_max_connection_age_seconds)))
        opts.append(("grpc.max_connection_age_grace_ms", _ms(settings.grpc_max_connection_age_grace_seconds)))
    return opts


async def create_grpc_server(
    service: EngramService, host: str, port: int, credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The server, bound (TLS when ``credentials`` are given, see :mod:`engram.tls`), not started."""
    settings = service.settings
    options = server_options(settings)
    server = grpc.aio.server(
        options=options,
        # AuthGuard first (outermost): an unauthenticated caller learns nothing, not even decoding errors
        interceptors=(AuthGuard(service), DecodeGuard(service.metrics)),
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs or None,
    )
    log.info("grpc limits", extra={
        "grpc_max_concurrent_rpcs": settings.grpc_max_concurrent_rpcs or "unlimited",
        **{name.replace(".", "_"): value for name, value in options if name != "grpc.so_reuseport"},
    })
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
    address = f"{host}:{port}"
    if credentials is not None:
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
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
