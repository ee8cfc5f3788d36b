"""Who may call which REST route: ONE table, keyed by (method, route template) (SPEC §10).

Every route of the app must have a row; :func:`check_table` runs in
``create_app``, so a route added without a classification stops the server
from being built (and every test with it). Each row says the
:class:`~engram.auth.keys.Action` the route needs and where its space comes
from:

* ``OPEN``     no key needed (liveness, the API description);
* ``NONE``     no space: the action is checked by role alone (keys, /metrics, creating spaces...);
* ``PATH``     the ``{space_id}`` path parameter names the space (describe, delete, backup...);
* ``RESOLVED`` the space is resolved from header/query/body (SPEC §2) by :class:`.space.SpaceResolver`,
  which calls :func:`authorize` with it: the data plane and the SSE streams;
* ``LIST``     the space listing, filtered to the key's spaces by the route.

The middleware authenticates every request but ``OPEN`` ones (401 with
``WWW-Authenticate: Bearer``; also for unknown paths, so routes are not
revealed to strangers) and checks ``NONE`` and ``PATH`` rows before the route
runs; ``RESOLVED`` rows are checked the moment the space is known. All of it is
skipped when auth is disabled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path

from ...auth.keys import Action, Principal

SCOPE_PRINCIPAL = "engram.principal"
SCOPE_RULE = "engram.rule"

OPEN, NONE, PATH, RESOLVED, LIST = "open", "none", "path", "resolved", "list"


@dataclass(frozen=True)
class Rule:
    action: Action | None  # None only for OPEN
    space: str


_OPEN = Rule(None, OPEN)
_READ, _WRITE = Rule(Action.read, RESOLVED), Rule(Action.write, RESOLVED)
_ADMIN = Rule(Action.admin, NONE)
_ADMIN_PATH = Rule(Action.admin, PATH)

#: The one classification of every REST route. "*" matches any method (mounted apps).
ROUTE_ACCESS: dict[tuple[str, str], Rule] = {
    ("GET", "/openapi.json"): _OPEN,
    ("GET", "/docs"): _OPEN,
    ("GET", "/docs/oauth2-redirect"): _OPEN,
    ("GET", "/health/alive"): _OPEN,
    # -- the web console and the docs: files only; every datum they show comes from the API below --
    ("GET", "/docs/assets/{name}"): _OPEN,
    ("GET", "/console"): _OPEN,
    ("GET", "/console/config.json"): _OPEN,  # only whether the server asks for a key
    ("GET", "/console/{name}"): _OPEN,
    # -- data plane (space from header / ?space= / body) --
    ("POST", "/api/v1/memories/remember"): _WRITE,
    ("POST", "/api/v1/episodes/remember"): _WRITE,
    ("GET", "/api/v1/memories/recall"): _READ,
    ("POST", "/api/v1/memories/recall"): _READ,
    ("GET", "/api/v1/memories"): _READ,
    ("GET", "/api/v1/memories/{memory_id:path}"): _READ,
    ("DELETE", "/api/v1/memories/{memory_id:path}"): _WRITE,
    ("POST", "/api/v1/memories/batch"): _WRITE,
    ("PUT", "/api/v1/memories/{memory_id:path}"): _WRITE,
    ("PATCH", "/api/v1/memories/{memory_id:path}"): _WRITE,
    ("POST", "/api/v1/memories/delete"): _WRITE,  # delete by filter (SPEC §11)
    ("POST", "/api/v1/memories/recognize"): _READ,
    ("POST", "/api/v1/memories/associate"): _WRITE,
    ("GET", "/api/v1/episodes/reminisce"): _READ,
    ("POST", "/api/v1/episodes/reminisce"): _READ,
    ("POST", "/api/v1/consolidate"): _WRITE,
    ("GET", "/api/v1/consolidations"): _READ,
    ("GET", "/api/v1/consolidations/{belief_id}"): _READ,
    ("POST", "/api/v1/complete"): _READ,
    ("GET", "/api/v1/system/introspect"): _READ,
    ("GET", "/api/v1/associations"): _READ,
    ("GET", "/api/v1/stream/activities"): _READ,
    ("GET", "/api/v1/stream/memories"): _READ,
    ("GET", "/api/v1/stream/consolidation"): _READ,
    # -- spaces --
    ("GET", "/api/v1/spaces"): Rule(Action.read, LIST),
    ("POST", "/api/v1/spaces"): _ADMIN,
    ("GET", "/api/v1/spaces/{space_id}"): Rule(Action.read, PATH),
    ("POST", "/api/v1/spaces/{space_id}/reembed"): _ADMIN_PATH,
    ("GET", "/api/v1/spaces/{space_id}/reembed"): Rule(Action.read, PATH),
    ("DELETE", "/api/v1/spaces/{space_id}"): _ADMIN_PATH,
    ("GET", "/api/v1/spaces/{space_id}/backup"): _ADMIN_PATH,
    ("POST", "/api/v1/spaces/{space_id}/restore"): _ADMIN_PATH,
    # -- keys --
    ("POST", "/api/v1/keys"): _ADMIN,
    ("GET", "/api/v1/keys"): _ADMIN,
    ("DELETE", "/api/v1/keys/{key_id}"): _ADMIN,
    ("GET", "/api/v1/keys/self"): Rule(Action.read, NONE),  # any valid key: describes itself
    # -- system --
    ("GET", "/health"): _ADMIN,  # names unhealthy spaces; load balancers use /health/alive
    ("GET", "/api/v1/system/health"): _ADMIN,
    ("GET", "/metrics"): _ADMIN,
    ("POST", "/api/v1/echo"): Rule(Action.read, NONE),  # any valid key
    # any valid key; each tool call checks its role and space (api/mcp/http.py RequestSpace)
    ("*", "/mcp"): Rule(Action.read, NONE),
}


def route_keys(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(method, template) of every route, in routing order (HEAD folded into GET)."""
    out: list[tuple[str, str]] = []
    for route in iter_route_contexts(list(routes)):
        if route.path is None:
            continue
        methods = sorted(m for m in (route.methods or {"*"}) if m != "HEAD")
        out.extend((m, route.path) for m in methods)
    return out


def check_table(routes: Iterable[BaseRoute], table: dict[tuple[str, str], Rule] = ROUTE_ACCESS) -> None:
    """Raise if a route has no row (or a row names no route): a new route must be classified."""
    keys = route_keys(routes)
    missing = [k for k in keys if k not in table]
    if missing:
        raise RuntimeError(f"REST routes without an access rule in api/rest/access.py: {missing}")
    stale = [k for k in table if k not in set(keys)]
    if stale:
        raise RuntimeError(f"access rules for routes that do not exist: {stale}")


class RouteAccess:
    """Find the rule of a request before routing, in the router's own order."""

    def __init__(self, routes: Iterable[BaseRoute],
                 table: dict[tuple[str, str], Rule] = ROUTE_ACCESS) -> None:
        self._rows: list[tuple[re.Pattern[str], str, Rule, bool]] = []
        # Paths without parameters are looked up directly, unless a parameterised template listed
        # before them could match them too (then the router's order decides, as below).
        self._exact: dict[tuple[str, str], Rule] = {}
        for method, path in route_keys(routes):
            if "{" not in path and method != "*" and not any(
                    m in (method, "*") and regex.match(path) for regex, m, _r, _p in self._rows):
                self._exact.setdefault((method, path), table[(method, path)])
            regex = compile_path(path)[0]
            prefix = method == "*"  # a mount: its path and everything under it
            if prefix:
                regex = re.compile("^" + re.escape(path) + "(/.*)?$")
            self._rows.append((regex, method, table[(method, path)], prefix))

    def find(self, method: str, path: str) -> tuple[Rule, dict[str, str]] | None:
        method = "GET" if method == "HEAD" else method
        rule_ = self._exact.get((method, path))
        if rule_ is not None:
            return rule_, {}
        for regex, m, rule, _prefix in self._rows:
            if m in (method, "*"):
                match = regex.match(path)
                if match:
                    return rule, match.groupdict()
        return None


def principal_of(scope: MutableMapping[str, Any]) -> Principal:
    who = scope.get(SCOPE_PRINCIPAL)
    return who if isinstance(who, Principal) else Principal.ANONYMOUS


def bearer_token(scope: MutableMapping[str, Any]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``; "" for a malformed header.

    A header that is present but unusable (another scheme, empty, sent twice with different
    values) is "" (malformed), never None (absent).
    """
    found: list[str] = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, rest = text.partition(" ")
            found.append(rest.strip() if scheme.lower() == "bearer" and rest.strip() else "\x00")
        elif name == b"x-api-key":
            found.append(value.decode("latin-1").strip() or "\x00")
    if not found:
        return None
    if len(set(found)) != 1 or found[0] == "\x00":
        return "\x00"  # authenticate() calls this malformed
    return found[0]
