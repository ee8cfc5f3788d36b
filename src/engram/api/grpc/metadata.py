"""The gRPC metadata keys Engram uses, defined once for the server and the clients."""

from __future__ import annotations

SPACE_KEY = "x-memory-space"  # request: which memory space (like REST's X-Memory-Space header)
SPACE_ECHO_KEY = "engram-memory-space"  # initial metadata of a stream: the space it serves
WARNING_KEY = "engram-warning"  # trailing metadata: a warning (e.g. the default-space fallback)
ERROR_CODE_KEY = "engram-error-code"  # trailing metadata: the EngramError code
ERROR_DETAIL_KEY = "engram-error-bin"  # trailing metadata: the serialized error detail
