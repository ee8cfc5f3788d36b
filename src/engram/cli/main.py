"""The ``engram`` command: a click group; each concern registers its commands.

Exit codes (click's own usage errors are 2):
    0 ok, 1 server/other error, 2 usage error, 3 not found, 4 cannot reach the server,
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import click

from .commands import EXIT_CODES_HELP, LazyGroup
from .server_cmds import start, stop


# The server commands are here; the client command groups (space, memory, status, key, mcp) are
# imported when used (commands.LAZY_COMMANDS), so `engram start` loads no client code.
@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(package_name="engram")
def cli() -> None:
    """Engram: a cognitive memory server for AI agents."""


cli.add_command(start)
cli.add_command(stop)


def main() -> None:
    cli(prog_name="engram")
