"""``engram start`` and ``engram stop``."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..datadir import holder
from ..errors import EXIT_NOT_FOUND, EngramError
from ..settings import load_settings
from ..statefile import pid_alive, read_state


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data root (env ENGRAM_DATA_DIR, default ./engram-data).")
@click.option("--host", default=None, help="Listen address (env ENGRAM_HOST, default 127.0.0.1).")
@click.option("--http-port", type=int, default=None, help="REST port; 0 picks a free one (default 7432).")
@click.option("--grpc-port", type=int, default=None, help="gRPC port; 0 picks a free one (default 50051).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (env ENGRAM_CONFIG).")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="Where to write pid and ports (default <data-dir>/engram.state.json).")
@click.option("--space", "bootstrap", multiple=True, help="Create this space at start (repeatable).")
@click.option("--no-grpc", is_flag=True, default=False, help="Serve REST only.")
@click.option("--embedder", type=click.Choice(["local", "openai", "hash", "none"], case_sensitive=False),
              default=None, help="Default embedder of new spaces (env ENGRAM_EMBEDDER, default local).")
@click.option("--backend", type=click.Choice(["sqlite", "postgres"], case_sensitive=False), default=None,
              help="Where spaces live (env ENGRAM_BACKEND, default sqlite); postgres needs postgres_dsn "
                   "(env ENGRAM_POSTGRES_DSN).")
def start(data_dir: str | None, host: str | None, http_port: int | None, grpc_port: int | None,
          config_file: str | None, state_file: str | None, bootstrap: tuple[str, ...], no_grpc: bool,
          embedder: str | None, backend: str | None) -> None:
    """Run the server (REST + SSE and gRPC) in the foreground."""
    from ..server import run

    overrides: dict[str, Any] = {
        "data_dir": data_dir, "host": host, "http_port": http_port, "grpc_port": grpc_port,
        "state_file": state_file, "grpc_enabled": False if no_grpc else None,
        "embedder": embedder.lower() if embedder else None,
        "backend": backend.lower() if backend else None,
    }
    try:
        settings = load_settings(config_file, overrides)
        if bootstrap:
            settings = settings.replace(
                bootstrap_spaces=tuple(dict.fromkeys((*settings.bootstrap_spaces, *bootstrap)))
            )
    except EngramError as exc:
        raise click.UsageError(exc.message) from None
    sys.exit(run(settings))


@click.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None, help="Data root of the server to stop."
)
@click.option("--state-file", type=click.Path(dir_okay=False), default=None, help="State file of the server.")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), default=None, help="TOML settings file."
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for exit.")
def stop(data_dir: str | None, state_file: str | None, config_file: str | None, timeout: float) -> None:
    """Stop a running server gracefully (SIGTERM, then wait)."""
    try:
        settings = load_settings(config_file, {"data_dir": data_dir, "state_file": state_file})
    except EngramError as exc:
        raise click.UsageError(exc.message) from None
    path = Path(settings.resolved_state_file)
    state = read_state(path)
    if state is None or not isinstance(state.get("pid"), int):
        # No state file here (removed, or written elsewhere with --state-file): the data-dir
        # lock still names the server that holds the data dir, and is never stale.
        held = holder(settings.data_dir)
        if held is None or held.role != "server" or held.pid is None:
            click.echo(f"no running server found (no state file at {path}, and no server holds "
                       f"{Path(settings.data_dir).resolve()})", err=True)
            sys.exit(EXIT_NOT_FOUND)  # no server to stop: nothing found
        state = {"pid": held.pid}
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo(f"server pid {pid} is not running; removing stale {path}", err=True)
        path.unlink(missing_ok=True)
        sys.exit(EXIT_NOT_FOUND)  # no server to stop: nothing found
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            click.echo(f"engram (pid {pid}) stopped")
            return
        time.sleep(0.05)
    click.echo(f"engram (pid {pid}) did not stop within {timeout:g} s", err=True)
    sys.exit(1)

