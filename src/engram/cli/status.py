"""``engram status [--space ID] [--json]``: is the server up, and how is the active space."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.text import Text

from ..client.http import EngramConnectionError
from ..errors import EngramError, NotFound
from ..statefile import pid_alive
from . import output as out
from .connect import Target, target_options


@click.command("status")
@target_options
def status(target: Target) -> None:
    """Show the server (address, pid, health, spaces) and the active space's statistics.

    Exits 4 when the server cannot be reached, and 3 when the active space does
    not exist and was named explicitly (--space or ENGRAM_MEMORY_SPACE).
    """
    # pid and gRPC target are known only for a server found through its state file
    state = (target.state or {}) if target.url_source.startswith("state file") else {}
    report: dict[str, Any] = {
        "url": target.url, "url_source": target.url_source, "reachable": False,
        "pid": state.get("pid"), "grpc_target": state.get("grpc_target"),
        "active_space": target.space, "space_source": target.space_source,
    }
    explicit = target.space_source != "config default_space"
    with target.client() as client:
        try:
            health = client.health()
        except EngramConnectionError as exc:
            report["error"] = exc.to_envelope()["error"]
            if isinstance(state.get("pid"), int) and not pid_alive(int(state["pid"])):
                report["error"]["message"] += (f" (the state file {target.state_file} is stale: "
                                               f"pid {state['pid']} is not running)")
            _print(target, report)
            sys.exit(out.EXIT_UNREACHABLE)
        report["reachable"] = True
        report["health"] = health
        report["status"] = health.get("status", "ok")
        try:
            report["space"] = client.get_space(target.space).model_dump(mode="json")
        except NotFound as exc:
            report["space"] = None
            report["space_error"] = exc.to_envelope()["error"]
            if explicit:
                _print(target, report)
                target.fail(exc)
        except EngramError as exc:
            report["space"] = None
            report["space_error"] = exc.to_envelope()["error"]
    _print(target, report)


def _print(target: Target, report: dict[str, Any]) -> None:
    if target.as_json:
        out.emit_json(report)
        return
    console = out.stdout() if report["reachable"] else out.stderr()
    pairs: list[tuple[str, Any]] = [("server", f"{report['url']} ({report['url_source']})")]
    if not report["reachable"]:
        pairs.append(("status", Text("unreachable", style="bold red")))
        pairs.append(("error", report["error"]["message"]))
        console.print(out.fields_table("Engram", pairs))
        return
    health = report["health"]
    state = str(report["status"])
    pairs.append(("status", Text(state, style="bold green" if state == "ok" else "bold yellow")))
    if report.get("pid"):
        pairs.append(("pid", report["pid"]))
    if report.get("grpc_target"):
        pairs.append(("gRPC", report["grpc_target"]))
    for key in ("version", "uptime_seconds", "spaces_total", "spaces_loaded", "shutting_down"):
        if key in health:
            pairs.append((key.replace("_", " "), health[key]))
    pairs.append(("active space", f"{report['active_space']} ({report['space_source']})"))
    space = report.get("space")
    if space:
        pairs += [("  memories", space.get("memory_count")), ("  dimension", space.get("dimension")),
                  ("  last LSN", space.get("last_lsn")),
                  ("  healthy", "yes" if space.get("healthy") else f"no: {space.get('reason')}")]
        for key, value in (space.get("stats") or {}).items():
            if key in ("associations", "beliefs", "suppressed", "storage_bytes", "last_consolidation"):
                pairs.append((f"  {key.replace('_', ' ')}", value))
    elif report.get("space_error"):
        pairs.append(("  space", report["space_error"]["message"]))
    console.print(out.fields_table("Engram", pairs))

