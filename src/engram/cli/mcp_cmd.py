"""``engram mcp``: serve the MCP tools over stdio for one memory space (see engram.api.mcp.stdio)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from ..errors import EngramError
from ..settings import load_settings
from ..spaces.ids import MemorySpaceId
from ..tls import CA_FILE_ENV
from .connect import API_KEY_ENV, SPACE_ENV, URL_ENV


@click.command("mcp")
@click.option("--space", "-s", default=None, metavar="ID",
              help="The memory space this MCP server is bound to (env ENGRAM_MEMORY_SPACE, else the config's "
                   "default_space).")
@click.option("--url", default=None, metavar="URL",
              help="Always use the server at this URL (env ENGRAM_URL). Default: the running server of the "
                   "data dir, else the data dir opened in-process.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data root (env ENGRAM_DATA_DIR, default ./engram-data).")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="State file of the server (default <data-dir>/engram.state.json).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (env ENGRAM_CONFIG).")
@click.option("--create-space", is_flag=True, default=False,
              help="Create the space at the first tool call if it does not exist.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds per request to the server.")
@click.option("--ca-file", type=click.Path(dir_okay=False), default=None, metavar="PEM",
              help="CA certificate(s) that signed an https server's certificate (env ENGRAM_CA_FILE).")
@click.option("--api-key", default=None, metavar="KEY", envvar=API_KEY_ENV, show_envvar=True,
              help="API key sent to the server (Authorization: Bearer) when it requires keys (SPEC §10).")
def mcp(space: str | None, url: str | None, data_dir: str | None, state_file: str | None,
        config_file: str | None, create_space: bool, timeout: float, ca_file: str | None,
        api_key: str | None) -> None:
    """Serve Engram's memory tools to an MCP client (Claude Desktop, IDEs, agents) over stdio.

    stdout carries only the protocol; logs go to stderr. The process exits when the
    client closes stdin. See docs/mcp.md for client configuration.
    """
    try:
        settings = load_settings(config_file, {"data_dir": data_dir, "state_file": state_file})
        chosen = space or os.environ.get(SPACE_ENV) or settings.default_space
        MemorySpaceId(chosen)
    except EngramError as exc:
        raise click.UsageError(exc.message) from None
    from ..api.mcp.stdio import StdioOptions, serve_stdio
    from ..observability import configure_logging

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # the SDK's own loggers: stderr too
    configure_logging(settings.log_level, settings.log_json)
    opts = StdioOptions(settings=settings, space=chosen, url=url or os.environ.get(URL_ENV) or None,
                        timeout=timeout, create_space=create_space,
                        ca_file=ca_file or os.environ.get(CA_FILE_ENV) or None,
                        headers=(("Authorization", f"Bearer {api_key}"),) if api_key else ())
    asyncio.run(serve_stdio(opts))
