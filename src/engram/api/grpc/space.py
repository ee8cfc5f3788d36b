"""Which memory space a gRPC call (or one stream message) targets - SPEC §2.

Sources, in order: the request's ``memory_space_id`` field, then the
``x-memory-space`` invocation metadata (the legacy fallback). The rules -
validation, conflict, default-space fallback with its log line and counter,
``require_explicit_space`` - live in ``EngramService.resolve_space``; this
module only gathers the sources and attaches the ``engram-warning`` trailing
metadata when the call fell back to the default space.
"""

from __future__ import annotations

from typing import Any

import grpc

from ...auth.keys import Action, Principal
from ...errors import InvalidMemorySpace, MemorySpaceRequired
from ...service import EngramService, SpaceResolution
from .auth import ACTIONS, SERVICE, current_principal
from .metadata import SPACE_KEY as METADATA_KEY
from .metadata import WARNING_KEY


def metadata_spaces(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, ...]:
    """Every ``x-memory-space`` invocation metadata value, in order (read once per call).

    A key sent twice counts twice (as a header sent twice does on REST), so a client cannot
    slip a second value past one set by a proxy: equal values are accepted, different ones
    are a ``MEMORY_SPACE_CONFLICT``. An empty value is an invalid id, not an absent one.
    """
    return tuple(value if isinstance(value, str) else value.decode("ascii", "replace")
                 for key, value in context.invocation_metadata() or () if key == METADATA_KEY)


class CallSpace:
    """Resolves spaces for one call; remembers a fallback warning for the trailers.

    Streams resolve every message, so the metadata is read once and the
    warning is attached once, however many messages fell back.
    """

    __slots__ = ("_meta", "_metas", "_peer", "context", "rpc", "service", "warning")

    def __init__(self, service: EngramService, context: grpc.aio.ServicerContext[Any, Any], rpc: str) -> None:
        self.service = service
        self.context = context
        self.rpc = rpc
        self._metas = metadata_spaces(context)
        self._meta = self._metas[0] if self._metas else None
        self._peer: str | None = None
        self.warning: str | None = None

    @property
    def metadata_value(self) -> str | None:
        return self._meta

    @property
    def peer(self) -> str:
        if self._peer is None:
            self._peer = self.context.peer() or "unknown"
        return self._peer

    def resolve(self, field_value: str, action: Action | None = None) -> SpaceResolution:
        """The space of this call (or stream message), checked against the caller's key: a space
        outside the key's set is answered as a missing one; ``action`` (default: the RPC's, see
        ``auth.ACTIONS``) must be allowed to the key's role."""
        if "" in self._metas:
            raise InvalidMemorySpace(
                "metadata x-memory-space is empty; an empty value names no valid space (it is not "
                "the same as leaving the key out)",
                example="x-memory-space: agent-7 (or set the memory_space_id field instead)",
            )
        field = ("field:memory_space_id", field_value or None)
        sources = (field, *(("metadata:x-memory-space", value) for value in self._metas)) if self._metas \
            else (field,)
        if not field_value and self._meta is None:
            res = self.service.resolve_space(sources, transport="grpc", operation=self.rpc, peer=self.peer)
        else:
            res = self.service.resolve_space(sources, transport="grpc", operation=self.rpc)
        principal = current_principal()
        if principal is not Principal.ANONYMOUS:
            self.authorize(principal, res, action)
        if res.warning and self.warning is None:
            self.warning = res.warning
            self.context.set_trailing_metadata(((WARNING_KEY, _ascii(res.warning)),))
        return res

    def authorize(self, principal: Principal, res: SpaceResolution, action: Action | None) -> None:
        if res.fell_back and not principal.covers(res.space_id):
            # the default-space fallback is only for keys that cover the default space
            raise MemorySpaceRequired(
                f"{self.rpc} names no space and this API key does not cover the default space; "
                "set memory_space_id",
                suggestion="Name one of this key's spaces in the memory_space_id field.",
                example='memory_space_id: "agent-7"',
            )
        needed = action or ACTIONS.get(f"/{SERVICE}/{self.rpc}", Action.admin)
        self.service.auth.check(principal, res.space_id, needed, peer=self.peer, target=res.space_id)

    def trailing(self) -> tuple[tuple[str, str], ...]:
        """Trailers to repeat when the call is aborted (abort replaces earlier trailers)."""
        return ((WARNING_KEY, _ascii(self.warning)),) if self.warning else ()


def _ascii(text: str) -> str:
    # Non-binary metadata values must be printable ASCII.
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
