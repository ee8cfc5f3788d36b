"""The REST access matrix (SPEC §10): every route x every kind of caller, on one server with auth required.

The routes come from the server's own OpenAPI document, and the test keeps its OWN
expectation of what each route needs (``EXPECTED``), independent of the server's table
(``engram/api/rest/access.py``): a route the server forgets to check, or classifies
wrongly, shows up as a cell with the wrong answer; a route added without an entry here
fails ``test_every_route_has_an_expectation``.

Callers: no key, a malformed header, an unknown key, an expired key, a revoked key, a
reader of the space, a writer of the space, a writer of another space, an admin.
Expected per cell: 401 (with ``WWW-Authenticate: Bearer``) for the first five on every
route but the open ones; 404 ``MEMORY_SPACE_NOT_FOUND`` (exactly as for a missing space)
for a space outside the key's set; 403 ``PERMISSION_DENIED`` for a role that does not
allow the route; otherwise "allowed": whatever the route answers, but never 401/403, never
"space not found", never 5xx.

Also here: the existence oracle (byte-identical bodies for an out-of-scope and a missing
space), the scoped space listing, the default-space fallback, and a Hypothesis fuzz of the
``Authorization`` header (never 5xx, never access).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram.testing import EngramProcess

SPACE, OTHER, VICTIM = "alpha", "beta", "victim"

# What each route needs, written here independently of the server's access table.
OPEN, READ, WRITE, ADMIN, LIST, ANY_KEY = "open", "read", "write", "admin", "list", "any-key"
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/health/alive"): OPEN,
    ("POST", "/api/v1/memories/remember"): WRITE,
    ("POST", "/api/v1/episodes/remember"): WRITE,
    ("GET", "/api/v1/memories/recall"): READ,
    ("POST", "/api/v1/memories/recall"): READ,
    ("GET", "/api/v1/memories"): READ,
    ("GET", "/api/v1/memories/{memory_id}"): READ,
    ("DELETE", "/api/v1/memories/{memory_id}"): WRITE,
    ("POST", "/api/v1/memories/batch"): WRITE,
    ("PUT", "/api/v1/memories/{memory_id}"): WRITE,
    ("PATCH", "/api/v1/memories/{memory_id}"): WRITE,
    ("POST", "/api/v1/memories/delete"): WRITE,  # delete by filter
    ("POST", "/api/v1/memories/recognize"): READ,
    ("POST", "/api/v1/memories/associate"): WRITE,
    ("GET", "/api/v1/episodes/reminisce"): READ,
    ("POST", "/api/v1/episodes/reminisce"): READ,
    ("POST", "/api/v1/consolidate"): WRITE,
    ("GET", "/api/v1/consolidations"): READ,
    ("GET", "/api/v1/consolidations/{belief_id}"): READ,
    ("POST", "/api/v1/complete"): READ,
    ("GET", "/api/v1/system/introspect"): READ,
    ("GET", "/api/v1/stream/activities"): READ,
    ("GET", "/api/v1/stream/memories"): READ,
    ("GET", "/api/v1/stream/consolidation"): READ,
    ("GET", "/api/v1/spaces"): LIST,
    ("POST", "/api/v1/spaces"): ADMIN,
    ("GET", "/api/v1/spaces/{space_id}"): READ,
    ("POST", "/api/v1/spaces/{space_id}/reembed"): ADMIN,
    ("GET", "/api/v1/spaces/{space_id}/reembed"): READ,
    ("DELETE", "/api/v1/spaces/{space_id}"): ADMIN,
    ("GET", "/api/v1/spaces/{space_id}/backup"): ADMIN,
    ("POST", "/api/v1/spaces/{space_id}/restore"): ADMIN,
    ("POST", "/api/v1/keys"): ADMIN,
    ("GET", "/api/v1/keys"): ADMIN,
    ("DELETE", "/api/v1/keys/{key_id}"): ADMIN,
    ("GET", "/health"): ADMIN,
    ("GET", "/api/v1/system/health"): ADMIN,
    ("GET", "/metrics"): ADMIN,
    ("POST", "/api/v1/echo"): ANY_KEY,
    ("GET", "/api/v1/keys/self"): ANY_KEY,
    ("GET", "/api/v1/associations"): READ,
}

# A request each route accepts from an allowed caller (so a refusal can only be about access).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/memories/remember"): {"content": "the espresso machine is on the third floor"},
    ("POST", "/api/v1/episodes/remember"): {"when": "2026-05-01T09:30:00Z", "what": "met Ada"},
    ("POST", "/api/v1/memories/recall"): {"query": "espresso", "max_results": 3},
    ("POST", "/api/v1/memories/recognize"): {"content": "espresso"},
    ("POST", "/api/v1/memories/associate"): {"source_id": "m-a", "target_id": "m-b", "strength": 0.5},
    ("POST", "/api/v1/episodes/reminisce"): {"topic": "Ada"},
    ("POST", "/api/v1/consolidate"): {},
    ("POST", "/api/v1/complete"): {"what": "met Ada"},
    ("POST", "/api/v1/spaces"): {"id": "made-by-admin"},
    ("POST", "/api/v1/keys"): {"name": "made-by-admin", "role": "reader", "spaces": [SPACE]},
    ("POST", "/api/v1/echo"): {"hello": "world"},
    ("POST", "/api/v1/memories/batch"): {"memories": [{"content": "batched espresso"}]},
    ("PUT", "/api/v1/memories/{memory_id}"): {"content": "the espresso machine moved"},
    ("PATCH", "/api/v1/memories/{memory_id}"): {"tags": ["office"]},
    ("POST", "/api/v1/memories/delete"): {"filter": {"matrix": "no-such-value"}},
}
PARAMS: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/memories/recall"): {"query": "espresso"},
    ("GET", "/api/v1/episodes/reminisce"): {"topic": "Ada"},
    ("GET", "/api/v1/associations"): {"memory_id": "m-a"},
}

CALLERS = ("none", "malformed", "unknown", "expired", "revoked", "reader", "writer", "other_writer", "admin")


class World:
    def __init__(self, srv: EngramProcess, tokens: dict[str, str], doomed_key: str) -> None:
        self.srv = srv
        self.tokens = tokens
        self.doomed_key = doomed_key
        self.http = httpx.Client(base_url=srv.http_url, timeout=30.0)

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "none":
            return {}
        if caller == "malformed":
            return {"Authorization": "Basic YWRtaW46YWRtaW4="}
        return {"Authorization": f"Bearer {self.tokens[caller]}"}


def _admin_token(srv: EngramProcess) -> str:
    return (srv.data_dir / "_system" / "admin.key").read_text().strip()


def _make_key(http: httpx.Client, admin: str, role: str, spaces: list[str] | None,
              expires: float | None = None) -> dict[str, Any]:
    resp = http.post("/api/v1/keys", headers={"Authorization": f"Bearer {admin}"},
                     json={"name": role, "role": role, "spaces": spaces, "expires_in_seconds": expires})
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("authm"), spaces=[SPACE, OTHER, VICTIM],
                              settings={"auth": "required"})
    admin = _admin_token(srv)
    with httpx.Client(base_url=srv.http_url, timeout=30.0) as http:
        expired = _make_key(http, admin, "reader", [SPACE], expires=0.2)
        revoked = _make_key(http, admin, "writer", None)
        assert http.delete(f"/api/v1/keys/{revoked['key_id']}",
                           headers={"Authorization": f"Bearer {admin}"}).status_code == 200
        tokens = {
            "admin": admin,
            "expired": expired["key"],
            "revoked": revoked["key"],
            "unknown": "egk_" + "Q" * 43,
            "reader": _make_key(http, admin, "reader", [SPACE, VICTIM])["key"],
            "writer": _make_key(http, admin, "writer", [SPACE, VICTIM])["key"],
            "other_writer": _make_key(http, admin, "writer", [OTHER])["key"],
        }
        doomed = _make_key(http, admin, "reader", [OTHER])["key_id"]
        stored = http.post("/api/v1/memories/remember", headers={"Authorization": f"Bearer {admin}",
                                                                  "X-Memory-Space": SPACE},
                           json={"id": "m-a", "content": "first"})
        assert stored.status_code == 201, stored.text
    w = World(srv, tokens, doomed)
    while time.time() < expired["expires_at"]:
        time.sleep(0.05)
    yield w
    w.http.close()
    srv.kill()


def _routes(world: World) -> list[tuple[str, str]]:
    doc = world.http.get("/openapi.json").json()
    out = []
    for path, ops in doc["paths"].items():
        for method in ops:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                out.append((method.upper(), path))
    return sorted(out)


def _request(world: World, caller: str, method: str, template: str) -> tuple[int, dict[str, str], bytes]:
    victim = (method, template) == ("DELETE", "/api/v1/spaces/{space_id}")
    path = (template.replace("{space_id}", VICTIM if victim else SPACE)
            .replace("{memory_id}", "m-a").replace("{belief_id}", "b-none")
            .replace("{key_id}", world.doomed_key))
    headers = {**world.headers(caller), "X-Memory-Space": SPACE} if template.startswith(
        ("/api/v1/memories", "/api/v1/episodes", "/api/v1/consolidat", "/api/v1/complete", "/api/v1/stream",
         "/api/v1/system/introspect", "/api/v1/associations")) else world.headers(caller)
    key = (method, template)
    kwargs: dict[str, Any] = {"headers": headers, "params": PARAMS.get(key)}
    if key in BODIES:
        kwargs["json"] = BODIES[key]
    elif template.endswith("/restore"):
        kwargs["content"] = b"not a backup"
    with world.http.stream(method, path, **kwargs) as resp:
        streaming = resp.headers.get("content-type", "").startswith("text/event-stream")
        body = b"" if streaming or (template.endswith("/backup") and resp.status_code == 200) else resp.read()
        return resp.status_code, dict(resp.headers), body


def _expected(need: str, caller: str) -> str:
    if need == OPEN:
        return "allowed"
    if caller in ("none", "malformed", "unknown", "expired", "revoked"):
        return "401"
    if need in (LIST, ANY_KEY) or caller == "admin":
        return "allowed"
    if need == ADMIN:
        return "403"
    if caller == "other_writer":
        return "404"
    if caller == "reader" and need == WRITE:
        return "403"
    return "allowed"


def _verdict(status: int, headers: dict[str, str], body: bytes) -> str:
    assert status < 500, f"5xx: {status} {body[:300]!r}"
    code = json.loads(body)["error"]["code"] if status >= 400 and body else None
    if status == 401:
        assert code == "UNAUTHENTICATED" and headers.get("www-authenticate", "").startswith("Bearer"), headers
        return "401"
    if status == 403 and code == "PERMISSION_DENIED":
        return "403"
    if status == 404 and code == "MEMORY_SPACE_NOT_FOUND":
        return "404"
    assert status not in (401, 403), (status, body[:300])
    return "allowed"


def test_every_route_has_an_expectation(world: World) -> None:
    routes = _routes(world)
    assert len(routes) >= 30
    assert sorted(EXPECTED) == routes, "a route was added or removed: classify it here and in access.py"


def test_access_matrix(world: World) -> None:
    wrong: list[str] = []
    # The admin column runs last: it deletes the victim space and revokes the doomed key.
    for caller in CALLERS:
        for method, template in _routes(world):
            want = _expected(EXPECTED[(method, template)], caller)
            status, headers, body = _request(world, caller, method, template)
            got = _verdict(status, headers, body)
            if got != want:
                wrong.append(f"{caller:>12} {method:6} {template}: expected {want}, "
                             f"got {status} {body[:160]!r}")
    assert not wrong, "access matrix cells wrong:\n" + "\n".join(wrong)


def test_out_of_scope_space_answers_exactly_like_a_missing_one(world: World) -> None:
    # An out-of-scope space (alpha, for a key of beta) against a missing one, asked by the same key and
    # by an admin (whose 404 comes from the registry itself, not from the key check).
    for method, path, named in (("GET", "/api/v1/memories", "header"), ("GET", "/api/v1/spaces/{}", "path"),
                                ("POST", "/api/v1/memories/remember", "header")):
        bodies = []
        for caller, sid in (("other_writer", SPACE), ("other_writer", "no-such-space"),
                            ("admin", "no-such-space")):
            h = world.headers(caller)
            kw: dict[str, Any] = {"headers": {**h, "X-Memory-Space": sid} if named == "header" else h}
            if method == "POST":
                kw["json"] = {"content": "probe"}
            resp = world.http.request(method, path.format(sid), **kw)
            assert resp.status_code == 404, resp.text
            bodies.append(resp.content.replace(sid.encode(), b"<id>"))
        assert bodies[0] == bodies[1] == bodies[2], bodies


def test_space_listing_shows_only_the_keys_spaces(world: World) -> None:
    got = world.http.get("/api/v1/spaces", headers=world.headers("other_writer")).json()
    assert [s["id"] for s in got["spaces"]] == [OTHER]
    got = world.http.get("/api/v1/spaces", headers=world.headers("admin")).json()
    assert {SPACE, OTHER, "default"} <= {s["id"] for s in got["spaces"]}


def test_default_space_fallback_only_for_keys_that_cover_default(world: World) -> None:
    resp = world.http.get("/api/v1/memories", headers=world.headers("other_writer"))
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "MEMORY_SPACE_REQUIRED"
    resp = world.http.get("/api/v1/memories", headers=world.headers("admin"))
    assert resp.status_code == 200 and resp.headers.get("deprecation") == "true"


def test_audit_log_records_refusals_without_key_material(world: World) -> None:
    world.http.get("/api/v1/memories", headers={**world.headers("reader"), "X-Memory-Space": OTHER})
    world.http.delete("/api/v1/spaces/alpha", headers=world.headers("reader"))
    world.http.get("/api/v1/memories", headers={"Authorization": "Bearer egk_" + "Z" * 43})
    log = world.srv.data_dir / "_system" / "audit.log"
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text()
        if "403 permission denied" in text and "404 out of scope" in text and "401 unknown" in text:
            break
        time.sleep(0.05)
    entries = [json.loads(x) for x in text.splitlines()]
    outcomes = {e["outcome"] for e in entries}
    assert {"403 permission denied", "404 out of scope", "401 unknown"} <= outcomes
    events = {e["event"] for e in entries}
    assert {"key_created", "key_revoked"} <= events
    for token in world.tokens.values():
        assert token not in text
    assert (log.stat().st_mode & 0o777) == 0o600


_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(
    _HEADER_TEXT,
    _HEADER_TEXT.map(lambda s: "Bearer " + s),
    st.builds(lambda p, s: "Bearer egk_" + s[:p], st.integers(0, 80),
              st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=40,
                      max_size=90)),
))
def test_fuzzed_authorization_header_never_5xx_never_access(world: World, value: str) -> None:
    value = value.strip()
    for header in ("Authorization", "X-API-Key"):
        raw: dict[bytes, bytes] = {header.encode(): value.encode("latin-1"),
                                   b"X-Memory-Space": SPACE.encode()}
        resp = world.http.get("/api/v1/memories", headers=raw)
        assert resp.status_code == 401, (value, resp.status_code, resp.text[:200])
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_fuzz_mutations_of_a_real_token_never_get_in(world: World) -> None:
    token = world.tokens["reader"]
    alphabet = "ABCxyz019_-"
    for i in range(4, len(token)):
        for c in alphabet[i % 3::3]:
            if token[i] == c:
                continue
            bad = token[:i] + c + token[i + 1:]
            resp = world.http.get("/api/v1/memories", headers={"Authorization": f"Bearer {bad}",
                                                               "X-Memory-Space": SPACE})
            assert resp.status_code == 401


def test_admin_key_file_is_private(world: World) -> None:
    path: Path = world.srv.data_dir / "_system" / "admin.key"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert world.tokens["admin"] not in world.srv.logs() and world.tokens["admin"] not in world.srv.stdout()
