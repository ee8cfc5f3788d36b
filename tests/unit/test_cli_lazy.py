"""``engram start`` loads no client code: the client command groups are imported when used.

Every test server and every supervisor runs ``python -m engram start``; importing httpx, rich and
the client library there was ~0.15 s of CPU per start for commands the server never runs.
"""

from __future__ import annotations

import subprocess
import sys

import click

CLIENT_MODULES = ("httpx", "rich", "engram.client", "engram.cli.backup_cmds", "engram.cli.mcp_cmd")


def test_the_cli_imports_no_client_code_until_a_client_command_runs() -> None:
    code = ("import sys, engram.cli.main; "
            f"print(sorted(m for m in sys.modules if m.startswith({CLIENT_MODULES!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_command_is_listed_and_resolves_with_its_subcommands() -> None:
    from engram.cli.commands import LAZY_COMMANDS
    from engram.cli.main import cli

    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"start", "stop", *LAZY_COMMANDS} <= set(names)
    for name in names:
        assert cli.get_command(ctx, name) is not None, name
    space = cli.get_command(ctx, "space")
    memory = cli.get_command(ctx, "memory")
    assert isinstance(space, click.Group) and isinstance(memory, click.Group)
    # the subcommands other modules add to a group when imported come with it
    assert {"backup", "restore", "create"} <= set(space.list_commands(ctx))
    assert {"import", "export", "remember"} <= set(memory.list_commands(ctx))
    assert cli.get_command(ctx, "nope") is None
