"""A deliberately holed Engram, for proving that the gRPC access matrix catches a missing check.

    AUTH_HOLE=GetMemory python -m engram.testing.holes start --data-dir D --http-port 0 --grpc-port 0

This is the normal ``engram`` command with **one** RPC (named by ``AUTH_HOLE``) let through
``AuthGuard`` without any key check: the call runs as ``Principal.ANONYMOUS``, so neither the role
nor the space is checked, as if its handler had been written without the guard. Production code
has no hole hooks: the patch is applied here, in the test-only entry point, before the CLI runs.
``EngramProcess.start(..., module="engram.testing.holes", env={"AUTH_HOLE": "GetMemory"})``
starts one from tests.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def install(rpc: str) -> None:
    from engram.api.grpc import auth
    from engram.auth.keys import Principal

    if f"/{auth.SERVICE}/{rpc}" not in auth.ACTIONS:
        raise SystemExit(f"AUTH_HOLE must name an RPC of {auth.SERVICE}; got {rpc!r}")
    checked = auth.AuthGuard._enter

    async def enter(self: auth.AuthGuard, method: str, context: Any) -> Principal:
        if method.rsplit("/", 1)[-1] == rpc:
            return Principal.ANONYMOUS  # the hole: no key, no role, no space check
        return await checked(self, method, context)

    auth.AuthGuard._enter = enter  # type: ignore[method-assign]


def main() -> None:
    install(os.environ.get("AUTH_HOLE", "GetMemory"))
    from engram.cli.main import cli

    sys.argv[0] = "engram"
    cli(prog_name="engram")


if __name__ == "__main__":
    main()
