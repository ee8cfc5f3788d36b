"""Python clients for Engram.

``EngramClient`` / ``AsyncEngramClient`` speak REST (``engram.client.http``).
The gRPC clients (``engram.client.grpc``: ``GrpcClient`` / ``AsyncGrpcClient``,
also reachable here as ``EngramGrpcClient`` / ``AsyncEngramGrpcClient``) are
imported lazily, on first access, so the HTTP clients work even where the gRPC
module or grpcio is absent.
"""

from __future__ import annotations

from typing import Any

from .http import AsyncEngramClient, CreatedSpace, EngramClient, EngramConnectionError, ServerEvent

__all__ = [
    "AsyncEngramClient",
    "AsyncEngramGrpcClient",
    "AsyncGrpcClient",
    "CreatedSpace",
    "EngramClient",
    "EngramConnectionError",
    "EngramGrpcClient",
    "GrpcClient",
    "ServerEvent",
]

#: public name here -> candidate names in engram.client.grpc (first one present wins)
_GRPC_NAMES = {
    "EngramGrpcClient": ("EngramGrpcClient", "GrpcClient"),
    "AsyncEngramGrpcClient": ("AsyncEngramGrpcClient", "AsyncGrpcClient"),
    "GrpcClient": ("GrpcClient", "EngramGrpcClient"),
    "AsyncGrpcClient": ("AsyncGrpcClient", "AsyncEngramGrpcClient"),
}


def __getattr__(name: str) -> Any:
    if name not in _GRPC_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from . import grpc as _grpc
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the gRPC client module (engram.client.grpc) and grpcio: {exc}"
        ) from exc
    for candidate in _GRPC_NAMES[name]:
        if hasattr(_grpc, candidate):
            return getattr(_grpc, candidate)
    raise AttributeError(f"engram.client.grpc defines none of {_GRPC_NAMES[name]}")
