"""``engram memory import FILE.jsonl`` and ``engram memory export [FILE]``.

The JSON-lines format is one memory per line: what ``export`` writes (the full
memory as ``GET /api/v1/memories/{id}`` returns it) is what ``import`` reads, and
a line may also be just a ``remember`` body such as ``{"content": "..."}``. Lines
with a ``when`` are stored as episodes. Fields that the server assigns
(``created_at``, ``access_count``, ``activation``, ``lsn`` ...) are dropped on
import; ``suppressed: true`` is restored by a suppress after the store. This is a
portable copy of the memories, not a backup: associations, beliefs, consolidation
states, access counts and LSNs stay behind (``engram space backup`` keeps them all).

Import sends memories in batches (``--batch-size``, ``POST /api/v1/memories/batch``:
one durable commit per batch) and episodes one by one, ``--concurrency`` requests in
flight over one async connection pool. A line that the server rejects is reported
with its line number and does not stop the rest; an unreachable server stops
everything at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from rich.progress import Progress
from rich.text import Text

from ..client.http import AsyncEngramClient, EngramConnectionError
from ..core.models import Memory
from ..errors import EngramError, MemoryNotFound, error_from_envelope
from . import output as out
from .connect import Target, target_options
from .memories import memory_group

MEMORY_FIELDS = ("id", "content", "embedding", "confidence", "decay_rate", "tags", "memory_type", "metadata",
                 "auto_link")
EPISODE_FIELDS = (*MEMORY_FIELDS, "when", "what", "where_location", "who", "why", "how", "emotional_valence",
                  "importance")


def to_input(record: dict[str, Any]) -> dict[str, Any]:
    """The ``remember`` body for one exported (or hand-written) memory."""
    names = EPISODE_FIELDS if record.get("when") is not None else MEMORY_FIELDS
    return {k: record[k] for k in names if record.get(k) is not None}


def _read_jsonl(handle: IO[str], name: str) -> list[tuple[int, dict[str, Any]]]:
    items: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise click.BadParameter(f"{name} line {lineno} is not JSON: {exc}", param_hint="FILE") from None
        if not isinstance(record, dict):
            raise click.BadParameter(f"{name} line {lineno} is not a JSON object", param_hint="FILE")
        items.append((lineno, record))
    return items


@dataclass
class ImportOutcome:
    imported: int = 0
    suppressed: int = 0
    failures: list[tuple[int, EngramError]] = field(default_factory=list)
    fatal: EngramError | None = None


async def _import(client: AsyncEngramClient, items: list[tuple[int, dict[str, Any]]], concurrency: int,
                  progress: Progress, batch_size: int = 256) -> ImportOutcome:
    """Memories go in batches (``POST /api/v1/memories/batch``: one commit each, a bad line fails
    alone); episodes, which the batch route does not take, one request each."""
    outcome = ImportOutcome()
    await client.get_space(client.space)  # unknown space: fail once, before sending anything
    task = progress.add_task(f"import → {client.space}", total=len(items))
    queue: asyncio.Queue[list[tuple[int, dict[str, Any]]]] = asyncio.Queue()
    memories = [item for item in items if item[1].get("when") is None]
    for i in range(0, len(memories), batch_size):
        queue.put_nowait(memories[i : i + batch_size])
    for item in items:
        if item[1].get("when") is not None:
            queue.put_nowait([item])

    async def stored(lineno: int, record: dict[str, Any], memory_id: str) -> None:
        outcome.imported += 1
        if record.get("suppressed") is True:
            await client.forget(memory_id, mode="suppress")
            outcome.suppressed += 1

    async def worker() -> None:
        while outcome.fatal is None:
            try:
                unit = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                lineno, record = unit[0]
                if record.get("when") is not None:
                    await stored(lineno, record, (await client.store(to_input(record))).memory_id)
                else:
                    result = await client.remember_batch([to_input(r) for _, r in unit])
                    for res, (lineno, record) in zip(result.results, unit, strict=True):
                        if res.error is not None:
                            error = error_from_envelope({"error": res.error.model_dump()})
                            outcome.failures.append((lineno, error))
                        elif res.memory_id is not None:
                            await stored(lineno, record, res.memory_id)
            except EngramConnectionError as exc:
                outcome.fatal = exc
            except EngramError as exc:  # the whole request failed (one line, or one batch of lines)
                outcome.failures.extend((lineno, exc) for lineno, _ in unit)
            progress.advance(task, len(unit))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, queue.qsize())))))
    return outcome


@memory_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Requests in flight at once.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=256, show_default=True,
              help="Memories per batch request (one durable commit each); episodes go one by one.")
@click.option("--progress/--no-progress", "show_progress", default=True, help="Progress bar on stderr.")
@target_options
def import_(target: Target, file: str, concurrency: int, batch_size: int, show_progress: bool) -> None:
    """Store every memory of FILE.jsonl ('-' for stdin) into the active space."""
    if file == "-":
        items = _read_jsonl(sys.stdin, "stdin")
    else:
        with open(file, encoding="utf-8") as handle:
            items = _read_jsonl(handle, file)
    started = time.monotonic()

    async def run() -> ImportOutcome:
        async with target.async_client(max_connections=concurrency) as client:
            with out.progress_bar(show_progress) as progress:
                return await _import(client, items, concurrency, progress, batch_size)

    outcome = asyncio.run(run())
    if outcome.fatal is not None:
        target.fail(outcome.fatal)
    elapsed = time.monotonic() - started
    failures = sorted(outcome.failures, key=lambda f: f[0])
    if target.as_json:
        out.emit_json({
            "memory_space_id": target.space, "imported": outcome.imported, "suppressed": outcome.suppressed,
            "failed": len(failures), "seconds": round(elapsed, 3),
            "errors": [{"line": n, **e.to_envelope()["error"]} for n, e in failures],
        })
    else:
        rate = outcome.imported / elapsed if elapsed > 0 else 0.0
        out.stdout().print(Text.assemble(
            f"imported {outcome.imported} memories into space ", (target.space, "bold"),
            f" in {elapsed:.2f} s ({rate:.0f}/s)" + (f", {len(failures)} failed" if failures else "")))
        err = out.stderr()
        for lineno, exc in failures[:20]:
            err.print(Text(f"line {lineno}: [{exc.code}] {exc.message}"))
        if len(failures) > 20:
            err.print(Text(f"... and {len(failures) - 20} more"))
    if failures:
        sys.exit(out.exit_code_for(failures[0][1]))


@memory_group.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--include-suppressed", is_flag=True, help="Also export suppressed memories.")
@click.option("--embeddings/--no-embeddings", default=True, show_default=True,
              help="Fetch each memory's embedding (one GET per memory, concurrent) so import restores it.")
@click.option("--page-size", type=click.IntRange(1, 1000), default=500, show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Requests in flight at once when fetching embeddings.")
@click.option("--progress/--no-progress", "show_progress", default=True, help="Progress bar on stderr.")
@target_options
def export(target: Target, file: str | None, include_suppressed: bool, embeddings: bool, page_size: int,
           concurrency: int, show_progress: bool) -> None:
    """Write every memory of the active space as JSON lines to FILE (default stdout).

    With a FILE the write is atomic (a temporary file renamed into place) and the
    summary goes to stdout (as JSON with --json); without one, stdout carries only
    the JSON lines.
    """
    to_stdout = file in (None, "-")
    started = time.monotonic()
    pager = _Pager(target, include_suppressed, embeddings, page_size, concurrency)
    if to_stdout:
        asyncio.run(pager.run(sys.stdout, None))
        return
    path = Path(str(file))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            with out.progress_bar(show_progress) as progress:
                count = asyncio.run(pager.run(handle, progress))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    summary = {"memory_space_id": target.space, "exported": count, "file": str(file),
               "seconds": round(time.monotonic() - started, 3)}
    if target.as_json:
        out.emit_json(summary)
    else:
        out.stdout().print(Text.assemble(f"exported {count} memories from space ", (target.space, "bold"),
                                         f" to {file}"))


@dataclass
class _Pager:
    """Pages through ``GET /memories``; with embeddings, fills each page by concurrent GETs.

    The list route leaves embeddings out to keep pages small, so a faithful
    export reads each memory once more. Lines are written in storage order,
    one page at a time; a memory deleted between list and get is skipped.
    """

    target: Target
    include_suppressed: bool
    embeddings: bool
    page_size: int
    concurrency: int

    async def run(self, handle: IO[str], progress: Progress | None) -> int:
        count = 0
        task = None
        async with self.target.async_client(max_connections=self.concurrency) as client:
            gate = asyncio.Semaphore(self.concurrency)

            async def full(mem: Memory) -> Memory | None:
                async with gate:
                    try:
                        return await client.get(mem.id, include_embedding=True)
                    except MemoryNotFound:
                        return None

            cursor: str | None = None
            while True:
                page = await client.list_memories(cursor=cursor, limit=self.page_size,
                                                  include_suppressed=self.include_suppressed or None)
                if progress is not None and task is None:
                    task = progress.add_task(f"export ← {self.target.space}", total=page.total)
                memories: list[Memory | None] = list(page.memories)
                if self.embeddings:
                    memories = list(await asyncio.gather(*(full(m) for m in page.memories)))
                for mem in memories:
                    if mem is not None:
                        handle.write(json.dumps(mem.model_dump(mode="json"), ensure_ascii=False) + "\n")
                        count += 1
                if progress is not None and task is not None:
                    progress.advance(task, len(page.memories))
                if not page.next_cursor:
                    return count
                cursor = page.next_cursor
