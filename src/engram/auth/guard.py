"""``Authorizer``: the one place that decides who may do what (SPEC §10).

Every transport asks it twice per request: :meth:`principal` turns the
presented token into a :class:`Principal` (401 otherwise, and the per-key rate
limit), and :meth:`check` decides whether that principal may do an
:class:`Action` on a space.

The order of the checks is the security property:

* admin actions are refused by role first (403), whatever the space, so a
  refusal says nothing about whether the space exists;
* data-plane actions check the space set first: a space outside the key's set
  raises exactly the error of a missing space (same class, message, details),
  so a key cannot probe which spaces exist; only on its own spaces does a role
  that may not write get 403.

With auth disabled every request is :data:`Principal.ANONYMOUS` (admin on all
spaces) and nothing here refuses anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import EngramError, MemorySpaceNotFound, PermissionDenied, Unauthenticated
from ..settings import Settings
from .audit import AuditLog
from .keys import Action, KeyStore, Principal
from .limits import RateLimiter

log = logging.getLogger("engram.auth")


def space_not_found(space_id: str) -> MemorySpaceNotFound:
    """The error of a space that does not exist; byte-identical to the registry's."""
    return MemorySpaceNotFound(f"memory space {space_id!r} does not exist",
                               details={"memory_space_id": space_id})


class Authorizer:
    def __init__(self, required: bool, keys: KeyStore | None = None, *, limiter: RateLimiter | None = None,
                 audit: AuditLog | None = None) -> None:
        if required and keys is None:
            raise ValueError("auth required needs a key store")
        self.required = required
        self.keys = keys
        self.limiter = limiter or RateLimiter(0)
        self.audit = audit

    @classmethod
    def from_settings(cls, settings: Settings, *, audit: bool = True,
                      keys: KeyStore | None = None) -> Authorizer:
        """``keys``: the key store to use (PostgreSQL's); else the file store of ``data_dir``."""
        data_root = Path(settings.data_dir)
        required = settings.auth_required
        keys = keys if keys is not None else KeyStore(data_root)
        # The audit log exists where there is something to audit: a server that checks keys.
        log_ = (AuditLog(keys.dir, max_bytes=settings.audit_log_max_bytes, backups=settings.audit_log_backups)
                if audit and required else None)
        limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        return cls(required, keys, limiter=limiter, audit=log_)

    def principal(self, token: str | None, *, peer: str = "-", target: str = "") -> Principal:
        """Who presents ``token``: else :class:`Unauthenticated` (audited). Rate limited per key."""
        if not self.required:
            return Principal.ANONYMOUS
        assert self.keys is not None
        try:
            who = self.keys.authenticate(token)
        except Unauthenticated as exc:
            self.record("auth", key_id=str(exc.details.get("key_id", "-")), peer=peer, target=target,
                        outcome=f"401 {exc.details.get('reason', '')}".strip())
            raise
        self.limiter.take(who.key_id)
        return who

    def check(self, principal: Principal, space_id: str | None, action: Action, *, peer: str = "-",
              target: str = "") -> None:
        """Allow, or raise 404-as-missing (space outside the key's set) / 403 (role)."""
        if principal is Principal.ANONYMOUS or principal.key_id == "-":
            return
        what = target or (space_id or "")
        if action is Action.admin and not principal.allows(action):
            self._deny(principal, action, what, peer, PermissionDenied(
                f"this API key's role ({principal.role.value}) does not allow {action.value} operations"))
        if space_id is not None and not principal.covers(space_id):
            self._deny(principal, action, what, peer, space_not_found(space_id), outcome="404 out of scope")
        if not principal.allows(action):
            self._deny(principal, action, what, peer, PermissionDenied(
                f"this API key's role ({principal.role.value}) does not allow {action.value} operations"))

    def _deny(self, principal: Principal, action: Action, target: str, peer: str, exc: EngramError,
              outcome: str = "403 permission denied") -> None:
        self.record("denied", key_id=principal.key_id, peer=peer, action=action.value, target=target,
                    outcome=outcome)
        raise exc

    def store(self) -> KeyStore:
        """The key store (present even with auth disabled, so keys can be made before enabling it)."""
        assert self.keys is not None
        return self.keys

    def visible_spaces(self, principal: Principal, ids: Iterable[str]) -> list[str]:
        return [i for i in ids if principal.covers(i)]

    def still_valid(self, principal: Principal) -> str | None:
        """None while the principal may go on (open streams ask this), else "revoked" / "expired"."""
        if self.keys is None or principal.key_id == "-":
            return None
        return self.keys.still_valid(principal)

    def watch(self, principal: Principal, end: Callable[[str], None]) -> Callable[[], None]:
        """Call ``end(reason)`` once when ``principal``'s key is revoked or expires (open streams).

        Returns the function that stops watching (call it when the stream ends). Costs nothing
        for ANONYMOUS; a timer thread only for keys that expire.
        """
        if self.keys is None or principal.key_id == "-":
            return lambda: None
        fired = threading.Event()

        def once(reason: str) -> None:
            if not fired.is_set():
                fired.set()
                end(reason)

        def on_revoke(key_id: str) -> None:
            if key_id == principal.key_id:
                once(f"API key {key_id} was revoked")

        remove = self.keys.on_revoke(on_revoke)
        timer: threading.Timer | None = None
        if principal.expires_at is not None:
            timer = threading.Timer(max(0.0, principal.expires_at - time.time()), once,
                                    [f"API key {principal.key_id} has expired"])
            timer.daemon = True
            timer.start()

        def stop() -> None:
            remove()
            if timer is not None:
                timer.cancel()

        return stop

    def record(self, event: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.record(event, **fields)

    def close(self) -> None:
        if self.keys is not None:
            self.keys.close()
        if self.audit is not None:
            self.audit.close()
