"""Python clients for Engram.

``EngramClient`` / ``AsyncEngramClient`` speak REST (``engram.client.http``);
``EngramGrpcClient`` / ``AsyncEngramGrpcClient`` speak gRPC and are imported
lazily, so the HTTP clients work even where the gRPC module or grpcio is absent.
"""

from __future__ import annotations

from typing import Any

from .http import AsyncEngramClient, CreatedSpace, EngramClient, EngramConnectionError, ServerEvent

__all__ = [
    "AsyncEngramClient",
    "AsyncEngramGrpcClient",
    "CreatedSpace",
    "EngramClient",
    "EngramConnectionError",
    "EngramGrpcClient",
    "ServerEvent",
]

_GRPC_NAMES = ("EngramGrpcClient", "AsyncEngramGrpcClient")


def __getattr__(name: str) -> Any:
    if name in _GRPC_NAMES:
        try:
            from . import grpc as _grpc
        except ImportError as exc:
            raise ImportError(
                f"{name} needs the gRPC client module (engram.client.grpc) and grpcio: {exc}"
            ) from exc
        return getattr(_grpc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
