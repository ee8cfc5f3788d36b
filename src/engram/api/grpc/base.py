"""What every RPC handler shares: space resolution, timing, metrics, error mapping, logs.

Handlers stay thin: decode, call one ``EngramService`` method, encode. The
wrapper here resolves the space, records ``service.metrics.observe("grpc",
rpc, space, status, seconds)`` exactly once per call (per message inside the
bidirectional streams), maps every exception through ``errors.map_error`` and
logs failures with the space id, the RPC and the peer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Optional, TypeVar

import grpc

from ...errors import MemorySpaceRequired
from ...service import EngramService
from ...spaces.ids import MemorySpaceId
from .errors import MappedError, map_error
from .space import CallSpace

log = logging.getLogger("engram.grpc")

T = TypeVar("T")


class Adapter:
    """Base of the servicer: holds the service and the per-call plumbing."""

    def __init__(self, service: EngramService) -> None:
        self.service = service
        self.settings = service.settings
        self.metrics = service.metrics

    def observe(self, rpc: str, space: Optional[str], status: str, t0: float) -> None:
        self.metrics.observe("grpc", rpc, space, status, time.perf_counter() - t0)

    def log_failure(self, rpc: str, space: Optional[str], mapped: MappedError, peer: str,
                    requested: Optional[str] = None) -> None:
        """One line per failed call (or stream message), always naming the space.

        When the space itself was the problem (invalid id, conflict) ``memory_space`` is null
        and ``requested_space`` carries what the client sent, truncated.
        """
        level = logging.ERROR if mapped.status == grpc.StatusCode.INTERNAL else logging.INFO
        extra = {"memory_space": space, "rpc": rpc, "transport": "grpc", "status": mapped.status.name,
                 "code": mapped.error.code, "peer": peer}
        if space is None and requested:
            extra["requested_space"] = requested[:80]
        log.log(level, "%s failed: %s %s", rpc, mapped.status.name, mapped.message, extra=extra)

    async def abort(self, context: grpc.aio.ServicerContext, mapped: MappedError,
                    extra: tuple[tuple[str, Any], ...] = ()) -> None:
        await context.abort(mapped.status, mapped.message, mapped.trailing_metadata() + extra)

    async def unary(self, rpc: str, request: Any, context: grpc.aio.ServicerContext,
                    fn: Callable[[str], Awaitable[T]]) -> T:
        """A data-plane unary call: resolve the space (§2), run ``fn(space)``, account for it."""
        t0 = time.perf_counter()
        calls = CallSpace(self.service, context, rpc)
        space: Optional[str] = None
        status = "OK"
        try:
            space = calls.resolve(request.memory_space_id).space_id
            return await fn(space)
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as exc:  # mapped to a status, never UNKNOWN
            mapped = map_error(exc, rpc=rpc, space=space)
            status = mapped.status.name
            self.log_failure(rpc, space, mapped, calls.peer, request.memory_space_id or calls.metadata_value)
            await self.abort(context, mapped, calls.trailing())
            raise AssertionError("unreachable: abort raises") from exc  # pragma: no cover
        finally:
            self.observe(rpc, space, status, t0)

    async def admin(self, rpc: str, request: Any, context: grpc.aio.ServicerContext,
                    fn: Callable[[Optional[str]], Awaitable[T]], *, needs_space: bool = True) -> T:
        """A space-administration call: the id is required, there is no fallback or metadata."""
        t0 = time.perf_counter()
        space: Optional[str] = None
        status = "OK"
        try:
            if needs_space:
                if not request.memory_space_id:
                    raise MemorySpaceRequired(
                        f"{rpc} needs memory_space_id: the space to act on (there is no default here)",
                        example='memory_space_id: "agent-7"',
                    )
                space = MemorySpaceId(request.memory_space_id)
            return await fn(space)
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as exc:
            mapped = map_error(exc, rpc=rpc, space=space)
            status = mapped.status.name
            self.log_failure(rpc, space, mapped, context.peer() or "unknown",
                             getattr(request, "memory_space_id", None) or None)
            await self.abort(context, mapped)
            raise AssertionError("unreachable: abort raises") from exc  # pragma: no cover
        finally:
            self.observe(rpc, space, status, t0)
