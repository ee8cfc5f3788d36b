"""Register the client-side command groups on the ``engram`` click group.

``engram.cli.main`` calls :func:`register` at import; everything here talks to a
running server over REST through :class:`engram.client.EngramClient`.
"""

from __future__ import annotations

import click

from . import (
    backup_cmds,  # noqa: F401  (adds backup/restore to the space group)
    transfer,  # noqa: F401  (adds import/export to the memory group)
)
from .keys_cmd import key_group
from .memories import memory_group
from .output import EXIT_CODES_HELP
from .spaces import space_group
from .status import status


def register(group: click.Group) -> None:
    group.add_command(space_group)
    group.add_command(memory_group)
    group.add_command(status)
    group.add_command(key_group)
    group.epilog = EXIT_CODES_HELP if not group.epilog else f"{group.epilog}\n\n{EXIT_CODES_HELP}"
