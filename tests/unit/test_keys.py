"""The key store, principals, the authorizer, the rate limiter and the audit log (SPEC §10)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from engram.auth.audit import AuditLog
from engram.auth.guard import Authorizer, space_not_found
from engram.auth.keys import Action, KeyStore, Principal, Role, parse_duration
from engram.auth.limits import RateLimiter
from engram.errors import (
    InvalidInput,
    KeyNotFound,
    MemorySpaceNotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from engram.settings import Settings, is_loopback, load_settings


def _reason(store: KeyStore, token: str | None) -> str:
    with pytest.raises(Unauthenticated) as info:
        store.authenticate(token)
    return str(info.value.details["reason"])


def test_tokens_are_stored_only_as_hashes_in_a_private_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    rec, token = store.create("ci", "writer", ["agent-7"], None)
    assert token.startswith("egk_") and len(token) >= 4 + 43
    raw = store.path.read_text()
    assert token not in raw and token[4:] not in raw
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    assert token not in repr(rec) and "token_sha256" not in rec.public()
    who = store.authenticate(token)
    assert who == Principal(rec.key_id, "ci", Role.writer, frozenset({"agent-7"}), None)


def test_every_kind_of_bad_token_is_unauthenticated_with_its_reason(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    rec, token = store.create("a", "reader", None, None)
    _, short = store.create("b", "reader", None, 0.001)
    assert _reason(store, None) == "missing"
    assert _reason(store, "") == "missing"
    assert _reason(store, "Bearer " + token) == "malformed"
    assert _reason(store, token[:-5]) == "malformed"
    assert _reason(store, "egk_" + "A" * 43) == "unknown"
    time.sleep(0.01)  # the short key's 1 ms lifetime has surely passed (the calls above can be faster)
    assert _reason(store, short) == "expired"
    store.revoke(rec.key_id)
    assert _reason(store, token) == "revoked"
    for bad in (token, short):
        with pytest.raises(Unauthenticated) as info:
            store.authenticate(bad)
        assert bad not in str(info.value.to_envelope())


def test_changes_by_another_process_are_seen_without_restart(tmp_path: Path) -> None:
    served = KeyStore(tmp_path, recheck_seconds=0)
    offline = KeyStore(tmp_path)
    rec, token = offline.create("late", "admin", None, None)
    assert served.authenticate(token).key_id == rec.key_id
    seen: list[str] = []
    served.on_revoke(seen.append)
    offline.revoke(rec.key_id)
    assert _reason(served, token) == "revoked"
    assert seen == [rec.key_id]


def test_revoke_fires_callbacks_and_unknown_key_is_not_found(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    rec, _ = store.create("x", "writer", None, None)
    seen: list[str] = []
    remove = store.on_revoke(seen.append)
    assert store.revoke(rec.key_id).revoked_at is not None
    assert seen == [rec.key_id]
    remove()
    rec2, _ = store.create("y", "writer", None, None)
    store.revoke(rec2.key_id)
    assert seen == [rec.key_id]
    with pytest.raises(KeyNotFound):
        store.revoke("key_nope")


def test_create_validates_its_input(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(InvalidInput):
        store.create("x", "root", None, None)
    with pytest.raises(InvalidInput):
        store.create("x", "reader", ["Not A Space"], None)
    with pytest.raises(InvalidInput):
        store.create("x", "reader", None, -5)
    assert store.list() == []


def test_roles_and_scopes() -> None:
    reader = Principal("k1", "r", Role.reader, frozenset({"alpha"}))
    writer = Principal("k2", "w", Role.writer, None)
    assert reader.covers("alpha") and not reader.covers("beta")
    assert reader.allows(Action.read) and not reader.allows(Action.write)
    assert writer.allows(Action.write) and not writer.allows(Action.admin) and writer.covers("any")
    assert Principal.ANONYMOUS.allows(Action.admin) and Principal.ANONYMOUS.covers("x")


def test_authorizer_answers_out_of_scope_exactly_like_a_missing_space(tmp_path: Path) -> None:
    auth = Authorizer(True, KeyStore(tmp_path))
    reader = Principal("k1", "r", Role.reader, frozenset({"alpha"}))
    auth.check(reader, "alpha", Action.read)
    with pytest.raises(MemorySpaceNotFound) as info:
        auth.check(reader, "beta", Action.read)
    assert info.value.to_envelope() == space_not_found("beta").to_envelope()
    with pytest.raises(MemorySpaceNotFound):  # writing elsewhere: still "missing", not 403
        auth.check(reader, "beta", Action.write)
    with pytest.raises(PermissionDenied):
        auth.check(reader, "alpha", Action.write)
    with pytest.raises(PermissionDenied):  # admin actions: role first, whatever the space
        auth.check(reader, "beta", Action.admin)
    assert auth.visible_spaces(reader, ["alpha", "beta"]) == ["alpha"]


def test_authorizer_disabled_lets_everything_through(tmp_path: Path) -> None:
    auth = Authorizer(False, KeyStore(tmp_path))
    who = auth.principal(None)
    assert who is Principal.ANONYMOUS
    auth.check(who, "anything", Action.admin)


def test_authorizer_required_rate_limits_per_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    _, a = store.create("a", "reader", None, None)
    _, b = store.create("b", "reader", None, None)
    now = [0.0]
    auth = Authorizer(True, store, limiter=RateLimiter(1.0, 2, clock=lambda: now[0]))
    auth.principal(a)
    auth.principal(a)
    with pytest.raises(RateLimited) as info:
        auth.principal(a)
    assert info.value.retry_after_seconds == 1 and info.value.http_status == 429
    auth.principal(b)  # another key has its own bucket
    now[0] = 1.0
    auth.principal(a)


def test_rate_limiter_off_by_default() -> None:
    limiter = RateLimiter(0)
    for _ in range(1000):
        limiter.take("k")


def test_auth_auto_rule() -> None:
    assert not Settings().auth_required
    assert Settings(host="0.0.0.0").auth_required
    assert Settings(host="::1").auth_required is False
    assert Settings(host="localhost").auth_required is False
    assert Settings(auth="required").auth_required
    assert not Settings(host="0.0.0.0", auth="disabled").auth_required
    assert is_loopback("127.0.0.5") and not is_loopback("::") and not is_loopback("10.0.0.1")
    with pytest.raises(InvalidInput):
        Settings(auth="maybe")
    with pytest.raises(InvalidInput):
        load_settings(overrides={"max_memories": -1}, use_env=False)


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90") == 90
    assert parse_duration("1.5h") == 5400
    for bad in ("", "0", "-3d", "3y", "abc"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)


def test_audit_log_is_private_json_lines_and_rotates(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "_system", max_bytes=400, backups=2)
    try:
        for i in range(30):
            log.record("denied", key_id=f"key_{i}", peer="127.0.0.1", action="write", target="alpha",
                       outcome="403")
        log.flush()
    finally:
        log.close()
    path = tmp_path / "_system" / "audit.log"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines and all(set(x) >= {"time", "key_id", "peer", "action", "target", "outcome"} for x in lines)
    assert (tmp_path / "_system" / "audit.log.1").exists() and (tmp_path / "_system" / "audit.log.2").exists()
    assert not (tmp_path / "_system" / "audit.log.3").exists()
    assert os.stat(path).st_size <= 400


def test_every_rest_route_is_classified_and_a_missing_row_stops_the_app(tmp_path: Path) -> None:
    from engram.api.rest.access import ROUTE_ACCESS, RouteAccess, check_table
    from engram.api.rest.app import create_app
    from engram.service import EngramService

    service = EngramService(Settings(data_dir=tmp_path / "data", embedder="hash"))
    try:
        app = create_app(service)  # builds: every route has a row
        table = dict(ROUTE_ACCESS)
        del table[("DELETE", "/api/v1/spaces/{space_id}")]
        with pytest.raises(RuntimeError, match="without an access rule"):
            check_table(app.routes, table)
        access = RouteAccess(app.routes)
        found = access.find("GET", "/api/v1/memories/recall")
        assert found is not None and found[0].action is Action.read
        found = access.find("DELETE", "/api/v1/spaces/agent-7")
        assert found is not None and found[0].action is Action.admin and found[1]["space_id"] == "agent-7"
        assert access.find("POST", "/mcp/anything") is not None
        assert access.find("GET", "/nowhere") is None
    finally:
        service.close()
