"""The ``engram`` command's subcommands, each imported when it is used.

``engram start`` (what every supervisor and every test server runs) needs none of the client
commands, whose modules import httpx, rich and the client library: importing them all up front
was ~0.15 s of CPU in every server start. :class:`LazyGroup` lists every command (``engram --help``
imports them to show their help) and imports one when it is invoked. The client commands talk to
a running server through :class:`engram.client.EngramClient` (REST) or gRPC.
"""

from __future__ import annotations

from collections.abc import Callable

import click

EXIT_CODES_HELP = """\b
Exit codes:
  0  ok
  1  server error, or anything else that failed
  2  usage error: bad option or argument, or input the server rejected (400)
  3  not found: unknown memory space, memory or belief (404)
  4  cannot reach the server (not running, wrong --url, connection dropped)
  130  interrupted with Ctrl-C (space reembed: the work continues on the server)

\b
Where commands send requests: --url, then ENGRAM_URL, then the state file
written by `engram start` (--data-dir / ENGRAM_DATA_DIR / --config), then
http://127.0.0.1:7432. Which space: --space, then ENGRAM_MEMORY_SPACE, then
default_space from the config file (`default`). `space` and `memory
remember|recall|get|list|forget` speak gRPC with --transport grpc (or
ENGRAM_TRANSPORT=grpc) to --grpc-target / ENGRAM_GRPC_TARGET / the state file."""


def _space() -> click.Command:
    from . import backup_cmds  # noqa: F401  (adds backup/restore to the space group)
    from .spaces import space_group

    return space_group


def _memory() -> click.Command:
    from . import transfer  # noqa: F401  (adds import/export to the memory group)
    from .memories import memory_group

    return memory_group


def _status() -> click.Command:
    from .status import status

    return status


def _key() -> click.Command:
    from .keys_cmd import key_group

    return key_group


def _mcp() -> click.Command:
    from .mcp_cmd import mcp

    return mcp


#: name -> the function that imports the command (its module registers its subcommands)
LAZY_COMMANDS: dict[str, Callable[[], click.Command]] = {
    "space": _space, "memory": _memory, "status": _status, "key": _key, "mcp": _mcp,
}


class LazyGroup(click.Group):
    """A click group whose ``LAZY_COMMANDS`` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.add_command(LAZY_COMMANDS[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)
