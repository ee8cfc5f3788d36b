"""Unknown query parameters are rejected, like unknown body fields.

A body field a route does not take is a 400 (the input models forbid extras); a query
parameter it does not take used to be ignored, so a typo (``?max_result=5``, ``?limt=10``)
silently did something else than asked. :func:`reject_unknown_query` is one app-wide
dependency: it reads the parameters each route declares (FastAPI's ``dependant``, including
its sub-dependencies), so a new route or a new ``Query(...)`` is covered without a list to
keep, and answers anything else with ``400 INVALID_INPUT`` naming the parameter and listing
the accepted ones. ``space`` (SPEC §2, read by :mod:`.space` rather than declared) is
accepted everywhere.
"""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request

from ...errors import InvalidInput

ALWAYS_ACCEPTED = frozenset({"space"})


def declared_query(dependant: Dependant) -> frozenset[str]:
    """The query parameter names a route declares, with those of its dependencies."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        d = stack.pop()
        names.update(p.alias for p in d.query_params)
        stack.extend(d.dependencies)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    if not request.scope.get("query_string"):
        return  # the common case costs one lookup
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    accepted = declared_query(route.dependant) | ALWAYS_ACCEPTED
    unknown = sorted({k for k in request.query_params if k not in accepted})
    if not unknown:
        return
    listed = ", ".join(sorted(accepted))
    names = ", ".join(repr(k) for k in unknown)
    raise InvalidInput(
        f"query.{unknown[0]}: unknown query parameter{'s' if len(unknown) > 1 else ''} {names} for "
        f"{request.method} {route.path_format}; it accepts: {listed}",
        suggestion="Remove the parameter or correct its spelling; the route's parameters are listed in "
        "/openapi.json and /docs.",
        example=f"{route.path_format}?{sorted(accepted - ALWAYS_ACCEPTED or accepted)[0]}=...",
        details={"unknown": unknown, "accepted": sorted(accepted)},
    )
