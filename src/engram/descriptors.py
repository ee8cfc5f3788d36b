"""One budget for the process's file descriptors: how ``RLIMIT_NOFILE`` is divided.

Every open space, HTTP connection and stream subscriber costs descriptors, and running out
(``EMFILE``) fails whatever asks next: an accept, a write's ``-wal``, a log file. So the
soft limit seen at start, *N*, is divided once, here, and each consumer is capped by its
share (a setting set to a positive number overrides its derived share):

======================  ===================================  ===========================
share                   derived from N                       setting that overrides it
======================  ===================================  ===========================
sockets                 ``max(64, N / 4)``: HTTP connections,
                        the refusals beyond the cap, gRPC,
                        listeners, logs, models
 - HTTP connections     ``N / 4``, clamped to 16..4096       ``http_max_connections``
   (refusals linger:    ``+ HTTP connections / 4``)
 - stream subscribers   ``N / 4``, clamped to 1..4096        ``max_subscribers``
                        (an SSE subscriber *is* an HTTP
                        connection, a gRPC stream rides on
                        one: a cap on them, not extra fds)
spaces                  ``N - sockets``, divided by          ``max_loaded_spaces``
                        ``FDS_PER_SPACE`` (spaces.budget)
======================  ===================================  ===========================

The shares are a plan, not a guarantee (a burst of readers can take more than
``FDS_PER_SPACE``): :mod:`engram.spaces.budget` also watches the real count and unloads
idle spaces above a high-water mark. docs/security.md shows the split for common limits.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

UNLIMITED = 1 << 20  # what RLIM_INFINITY (or a non-positive limit) is counted as
MAX_HTTP_CONNECTIONS = 4096
MAX_SUBSCRIBERS = 4096
MIN_SOCKETS = 64


def nofile_limit() -> int:
    """The current soft limit on open files of this process."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return UNLIMITED if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


@dataclass(frozen=True)
class DescriptorBudget:
    nofile: int  # N: the soft limit at start
    sockets: int  # descriptors planned for connections, listeners, logs and models
    http_connections: int  # open HTTP connections before 503 TOO_MANY_CONNECTIONS
    http_connections_derived: bool  # False: http_max_connections set it
    subscribers: int  # open stream subscriptions (SSE, gRPC Stream, MemoryFlow) in all
    subscribers_derived: bool  # False: max_subscribers set it

    @property
    def spaces(self) -> int:
        """Descriptors planned for loaded spaces (the rest of N)."""
        return max(0, self.nofile - self.sockets)

    @property
    def http_refusals(self) -> int:
        """Refused connections allowed to linger (reading their 503) at once."""
        return max(4, self.http_connections // 4)

    @classmethod
    def from_settings(cls, settings: Settings, nofile: int | None = None) -> DescriptorBudget:
        n = nofile if nofile is not None else nofile_limit()
        quarter = n // 4
        http = settings.http_max_connections or max(16, min(MAX_HTTP_CONNECTIONS, quarter))
        subs = settings.max_subscribers or max(1, min(MAX_SUBSCRIBERS, quarter))
        return cls(nofile=n, sockets=max(MIN_SOCKETS, quarter), http_connections=http,
                   http_connections_derived=not settings.http_max_connections, subscribers=subs,
                   subscribers_derived=not settings.max_subscribers)

    def describe(self) -> str:
        def how(derived: bool, setting: str) -> str:
            return "derived" if derived else f"set by {setting}"

        http = how(self.http_connections_derived, "http_max_connections")
        subs = how(self.subscribers_derived, "max_subscribers")
        return (f"open-file limit {self.nofile}: {self.sockets} for sockets, logs and models (of them "
                f"{self.http_connections} HTTP connections, {http}; {self.subscribers} stream subscribers, "
                f"{subs}), {self.spaces} for memory spaces")
