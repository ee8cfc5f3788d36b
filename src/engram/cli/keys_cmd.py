"""``engram key create|list|revoke``: API keys (SPEC §10), offline or through a running server.

Where it acts: with ``--url`` / ``ENGRAM_URL``, through that server (an admin key
is needed: ``--api-key``, ``ENGRAM_API_KEY`` or the local admin.key). Otherwise,
with ``backend = "postgres"``, on the database's key table directly (every server
on it sees the change within a second: auth.pg_keys); else on the data dir: if no
server holds it, offline under the data-dir lock (so no server starts meanwhile);
if a server holds it, through that server.

The token of a new key is printed once, on stdout, and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.text import Text

from ..auth.keys import KeyStore, parse_duration
from ..datadir import DataDirInUse, DataDirLock
from ..errors import EngramError
from ..settings import Settings, load_settings
from . import output as out
from .connect import URL_ENV, resolve_target

T = TypeVar("T")


@click.group("key")
def key_group() -> None:
    """Create, list and revoke API keys (offline on the data dir, or through a running server)."""


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)
    f = click.option("--api-key", default=None, metavar="KEY",
                     help="Admin API key when going through a server (env ENGRAM_API_KEY, else the "
                          "local admin.key).")(f)
    f = click.option("--url", default=None, metavar="URL",
                     help="Go through this running server (env ENGRAM_URL).")(f)
    f = click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="TOML settings file (env ENGRAM_CONFIG).")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Data root (env ENGRAM_DATA_DIR).")(f)
    return f


def _run(offline: Callable[[KeyStore], T], online: Callable[[Any], T], *, url: str | None,
         data_dir: str | None, config_file: str | None, api_key: str | None, as_json: bool) -> tuple[T, str]:
    """Run ``offline(store)`` under the data-dir lock, or ``online(client)`` through the server."""
    import os

    state_file: str | None = None
    try:
        settings: Settings = load_settings(config_file, {"data_dir": data_dir})
    except EngramError as exc:
        raise click.UsageError(exc.message) from None
    if not url and not os.environ.get(URL_ENV) and settings.backend == "postgres":
        return _on_database(offline, settings, as_json=as_json), "the PostgreSQL database"
    if not url and not os.environ.get(URL_ENV):
        try:
            lock = DataDirLock.acquire(settings.data_dir, "engram key")
        except DataDirInUse as exc:
            lock = None  # a server holds it: ask that server (found through its state file)
            if exc.holder.state_file and not state_file:
                state_file = exc.holder.state_file
        except OSError as exc:
            raise click.UsageError(f"cannot lock the data dir {settings.data_dir}: {exc}") from None
        if lock is not None:
            try:
                return offline(KeyStore(settings.data_dir)), f"data dir {settings.data_dir} (offline)"
            except EngramError as exc:
                out.fail(exc, as_json=as_json)
            finally:
                lock.release()
    target = resolve_target(url=url, space=None, data_dir=data_dir, state_file=state_file,
                            config_file=config_file, as_json=as_json, timeout=30.0, api_key=api_key)
    try:
        with target.client() as client:
            return online(client), target.url
    except EngramError as exc:
        out.fail(exc, as_json=as_json)


def _on_database(offline: Callable[[KeyStore], T], settings: Settings, *, as_json: bool) -> T:
    """``offline(store)`` on ``engram.api_keys`` of ``postgres_dsn`` (no server, no data-dir lock)."""
    if not settings.postgres_dsn:
        raise click.UsageError('backend = "postgres" needs postgres_dsn (env ENGRAM_POSTGRES_DSN) to '
                               "manage keys on the database, or --url to go through a server")
    import psycopg

    from ..auth.pg_keys import PgKeyStore

    dsn = settings.postgres_dsn
    try:
        store = PgKeyStore(Path(settings.data_dir), lambda: psycopg.connect(dsn, connect_timeout=10,
                                                                           autocommit=True),
                           poll_seconds=None)
        return offline(store)
    except EngramError as exc:
        out.fail(exc, as_json=as_json)


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@key_group.command("create")
@click.option("--role", type=click.Choice(["admin", "writer", "reader"]), required=True,
              help="admin: everything; writer: read and write its spaces; reader: read its spaces.")
@click.option("--space", "spaces", multiple=True, metavar="ID",
              help="A space the key may use (repeatable); none: all spaces.")
@click.option("--name", default="", help="A label for people.")
@click.option("--expires", default=None, metavar="DURATION",
              help="Lifetime, e.g. 30d, 12h, 15m; none: never.")
@_options
def create(role: str, spaces: tuple[str, ...], name: str, expires: str | None, **kw: Any) -> None:
    """Create an API key and print its token (shown only this once)."""
    try:
        seconds = parse_duration(expires) if expires is not None else None
    except EngramError as exc:
        raise click.UsageError(exc.message) from None
    scope = list(spaces) or None
    def offline(store: KeyStore) -> dict[str, Any]:
        made, token = store.create(name, role, scope, seconds)
        return {**made.public(), "key": token}

    rec, where = _run(offline, lambda client: client.create_key(role, spaces=scope, name=name,
                                                                expires_in_seconds=seconds), **kw)
    if kw["as_json"]:
        out.emit_json(rec)
        return
    out.stdout().print(rec["key"])
    out.stderr().print(Text.assemble(
        f"created {rec['role']} key ", (rec["key_id"], "bold"),
        f" for {', '.join(rec['spaces']) if rec['spaces'] else 'all spaces'}",
        f", expires {_when(rec['expires_at'])}" if rec["expires_at"] else "", f" ({where}). ",
        ("The token above is shown only now: store it.", "yellow")))


@key_group.command("list")
@_options
def list_(**kw: Any) -> None:
    """List API keys (ids, names, roles, spaces, dates; never tokens)."""
    keys, where = _run(lambda store: [r.public() for r in store.list()],
                       lambda client: client.list_keys(), **kw)
    if kw["as_json"]:
        out.emit_json({"keys": keys})
        return
    now = time.time()

    def state(k: dict[str, Any]) -> str:
        if k["revoked_at"]:
            return "revoked"
        return "expired" if k["expires_at"] and k["expires_at"] <= now else "active"

    rows = [(k["key_id"], k["name"], k["role"], ", ".join(k["spaces"]) if k["spaces"] else "(all)", state(k),
             _when(k["created_at"]), _when(k["expires_at"])) for k in keys]
    out.stdout().print(out.table(f"API keys ({where})", ["id", "name", "role", "spaces", "state", "created",
                                                         "expires"], rows, no_wrap=("id",)))


@key_group.command("revoke")
@click.argument("key_id")
@_options
def revoke(key_id: str, **kw: Any) -> None:
    """Revoke API key KEY_ID at once (open streams of the key end)."""
    rec, where = _run(lambda store: store.revoke(key_id).public(),
                      lambda client: client.revoke_key(key_id), **kw)
    if kw["as_json"]:
        out.emit_json(rec)
        return
    out.stdout().print(Text.assemble("revoked key ", (rec["key_id"], "bold"), f" ({where})"))
