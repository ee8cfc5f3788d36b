"""The ``engram`` command: a click group; each concern registers its commands.

Exit codes (click's own usage errors are 2):
    0 ok, 1 server/other error, 2 usage error, 3 not found, 4 cannot reach the server,
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import click

from .commands import register
from .mcp_cmd import mcp
from .server_cmds import start, stop


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="engram")
def cli() -> None:
    """Engram: a cognitive memory server for AI agents."""


cli.add_command(start)
cli.add_command(stop)
cli.add_command(mcp)
register(cli)  # the client command groups (space, memory, status, ...), each in its own module


def main() -> None:
    cli(prog_name="engram")
