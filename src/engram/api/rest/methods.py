"""Every method a path takes: the ``Allow`` header of 405 answers and of ``OPTIONS``.

Starlette answers a wrong method with the methods of the *first* route whose
path matched, but FastAPI registers one route per method, so ``PUT
/api/v1/spaces`` used to say ``Allow: GET`` though POST works too, and
``OPTIONS`` was a 405. Here the routes are grouped by path once, and the
lookup runs only on those two (rare) answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path

ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class RouteMethods:
    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        grouped: dict[str, tuple[re.Pattern[str], set[str]]] = {}
        for route in iter_route_contexts(list(routes)):  # included routers flattened
            path, methods = route.path, route.methods
            if path is not None and methods:
                grouped.setdefault(path, (compile_path(path)[0], set()))[1].update(methods)
        self._paths = [(regex, frozenset(methods)) for regex, methods in grouped.values()]

    def allow(self, path: str) -> str | None:
        """The ``Allow`` value for ``path``, or None when no route has that path.

        A union over every route template the path matches: ``DELETE /api/v1/memories/recall``
        is routed to ``/api/v1/memories/{id}``, so it is allowed there.
        """
        found: set[str] = set()
        for regex, methods in self._paths:
            if regex.match(path):
                found |= methods
        if not found:
            return None
        return ", ".join(m for m in ORDER if m in found or m == "OPTIONS")
