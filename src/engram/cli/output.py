"""How the CLI speaks: Rich tables for people, JSON for scripts, errors on stderr.

With ``--json`` stdout carries exactly one JSON document (or JSON lines, for
``memory export``) and nothing else; tables, progress bars and notes go to a
console on stdout only in table mode, and everything diagnostic goes to stderr.
Values from the server are wrapped in ``Text`` so that brackets in memory
content are never read as Rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

import click
from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..errors import (  # the exit codes live with the error table (errors.py); re-exported here
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EngramError,
)

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE"]

def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def progress_bar(enabled: bool = True) -> Progress:
    """A done/total progress bar on stderr (so ``--json`` stdout stays one document)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=stderr(), disable=not enabled,
                    transient=False)


def exit_code_for(exc: EngramError) -> int:
    """The error's own exit code (errors.py is the one table)."""
    return exc.exit_code


def fail(exc: EngramError, *, as_json: bool) -> NoReturn:
    """Print the server's error (message, suggestion, example) to stderr and exit with its code."""
    code = exit_code_for(exc)
    if as_json:
        envelope = exc.to_envelope()
        envelope["error"]["exit_code"] = code
        click.echo(json.dumps(envelope), err=True)
    else:
        err = stderr()
        err.print(Text.assemble(("error", "bold red"), f" [{exc.code}]: ", exc.message))
        if exc.suggestion:
            err.print(Text.assemble(("  hint: ", "yellow"), exc.suggestion))
        if exc.example:
            err.print(Text.assemble(("  example: ", "yellow"), exc.example))
    sys.exit(code)


def emit_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def dump(model: BaseModel, **extra: Any) -> dict[str, Any]:
    out = model.model_dump(mode="json")
    for key, value in extra.items():
        if not out.get(key):
            out[key] = value
    return out


def text(value: Any, limit: int | None = None) -> Text:
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, bool):
        value = "yes" if value else "no"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, datetime):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, float):
        value = f"{value:.3f}"
    elif isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, Mapping):
        value = ", ".join(f"{k}={v}" for k, v in value.items())
    s = str(value).replace("\n", " ")
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return Text(s)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str = "",
          no_wrap: Iterable[str] = ()) -> Table:
    """A table; the ``no_wrap`` columns (ids people copy) are never broken across lines."""
    keep = set(no_wrap)
    tbl = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left")
    for col in columns:
        tbl.add_column(col, overflow="fold", no_wrap=col in keep)
    for row in rows:
        tbl.add_row(*(cell if isinstance(cell, Text) else text(cell) for cell in row))
    return tbl


def fields_table(title: str, pairs: Iterable[tuple[str, Any]]) -> Table:
    tbl = Table(title=title, show_header=False, title_justify="left")
    tbl.add_column("field", style="bold")
    tbl.add_column("value", overflow="fold")
    for key, value in pairs:
        tbl.add_row(key, value if isinstance(value, Text) else text(value))
    return tbl
