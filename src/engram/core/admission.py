"""Who may open one more stream subscription: caps per client, per space and for the server.

Every subscription surface (SSE, gRPC ``Stream``, each ``MemoryFlow`` subscribe)
takes a slot here before it subscribes, and gives it back when the subscription
is closed, whatever ends it. Beyond a cap the new subscriber is refused with
``TooManySubscribers`` (429 + Retry-After / RESOURCE_EXHAUSTED); subscribers
already open are never touched.

Why three caps: the fan-out of one space costs in proportion to its subscribers
(per space); one client must not take a whole space's or server's share (per
client, lower than per space, so one client can never fill a space alone); and
each SSE subscriber holds a connection, i.e. a file descriptor, so the server's
total stays well inside its open-file limit, leaving room for requests and for
the spaces' own files (``max_subscribers = 0``: the subscribers' share of
RLIMIT_NOFILE, :class:`engram.descriptors.DescriptorBudget`).

A *client* is an opaque key: ``ip:<address>`` today (:func:`client_key`); an API
key id will replace it (``key:<id>``) without changing the counting.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from ..errors import TooManySubscribers

log = logging.getLogger("engram.streams")


def client_key(ip: str | None, key_id: str | None = None) -> str:
    """The identity subscribers are counted under: the API key when there is one, else the peer IP."""
    if key_id:
        return f"key:{key_id}"
    return f"ip:{ip or 'unknown'}"


class StreamAdmission:
    def __init__(self, per_space: int, per_client: int, total: int, *, derived: bool = False) -> None:
        """``total``: the server-wide cap (the descriptor budget's subscribers share, or
        ``max_subscribers``; ``derived`` says which, for the log)."""
        self.per_space = per_space
        self.per_client = per_client
        self.total = total
        self._lock = threading.Lock()
        self._by_space: collections.Counter[str] = collections.Counter()
        self._by_client: collections.Counter[str] = collections.Counter()
        self._open = 0
        log.info("stream subscribers: at most %d per client, %d per space, %d in all%s", per_client,
                 per_space, self.total, " (derived from the open-file limit)" if derived else "")

    def admit(self, space_id: str, client: str) -> Callable[[], None]:
        """Take a slot or raise ``TooManySubscribers``; returns the release function (call it once)."""
        with self._lock:
            if self._by_client[client] >= self.per_client:
                raise TooManySubscribers(
                    f"this client ({client.partition(':')[2]}) already has {self.per_client} open stream "
                    f"subscriptions, the most one client may hold (max_subscribers_per_client)",
                    details={"limit": "max_subscribers_per_client", "value": self.per_client,
                             "retry_after_seconds": TooManySubscribers.retry_after_seconds},
                )
            if self._by_space[space_id] >= self.per_space:
                raise TooManySubscribers(
                    f"memory space {space_id!r} already has {self.per_space} open stream subscriptions, "
                    f"the most one space may have (max_subscribers_per_space)",
                    details={"memory_space_id": space_id, "limit": "max_subscribers_per_space",
                             "value": self.per_space,
                             "retry_after_seconds": TooManySubscribers.retry_after_seconds},
                )
            if self._open >= self.total:
                raise TooManySubscribers(
                    f"the server already has {self.total} open stream subscriptions, its limit "
                    f"(max_subscribers)",
                    details={"limit": "max_subscribers", "value": self.total,
                             "retry_after_seconds": TooManySubscribers.retry_after_seconds},
                )
            self._by_client[client] += 1
            self._by_space[space_id] += 1
            self._open += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._open -= 1
                for counter, key in ((self._by_client, client), (self._by_space, space_id)):
                    counter[key] -= 1
                    if counter[key] <= 0:
                        del counter[key]  # no key is kept for a client or space with no stream

        return release

    def open_count(self, space_id: str | None = None, client: str | None = None) -> int:
        with self._lock:
            if space_id is not None:
                return self._by_space[space_id]
            if client is not None:
                return self._by_client[client]
            return self._open
