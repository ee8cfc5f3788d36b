"""The state file of a running server (pid, host, ports), shared by the server, the CLI and the harness.

Kept free of heavy imports: the CLI reads it on every command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically (readers never see a half-written file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # private: 0600
        f.write(json.dumps(state, indent=2))
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state as a dict, or ``None`` if the file is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited process not yet reaped by its parent does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
