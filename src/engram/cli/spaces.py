"""``engram space create|list|get|reembed|delete``."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING

import click
from rich.text import Text

from ..core.models import EmbedderInfo, ReembedStatus, SpaceDescriptor
from ..embedding import PROVIDERS
from . import output as out
from .connect import Target, backend_options

if TYPE_CHECKING:
    from .backend import Backend


@click.group("space")
def space_group() -> None:
    """Create, list, inspect and delete memory spaces."""


def embedder_label(desc: SpaceDescriptor) -> str | None:
    """``hash/hash-384 (384-d)``; None when the server did not say (an old server, an unloaded space)."""
    return None if desc.embedder is None else info_label(desc.embedder)


def info_label(emb: EmbedderInfo) -> str:
    label = emb.provider if emb.model in (emb.provider, "none") else f"{emb.provider}/{emb.model}"
    return f"{label} ({emb.dimension}-d)" if emb.dimension else label


def _descriptor_pairs(desc: SpaceDescriptor) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [
        ("id", desc.id), ("created", desc.created_at), ("memories", desc.memory_count),
        ("dimension", desc.dimension), ("embedder", embedder_label(desc)),
        ("embedding backlog", desc.embedding_backlog), ("last LSN", desc.last_lsn),
        ("healthy", "yes" if desc.healthy else f"no: {desc.reason or 'unknown reason'}"),
        ("loaded", "yes" if desc.loaded else "no"),
    ]
    for key, value in (desc.stats or {}).items():
        if key in ("memory_space_id", "memories", "last_lsn", "dimension", "healthy", "index", "embedder",
                   "embedding_backlog"):
            continue
        pairs.append((key.replace("_", " "), value))
    index = (desc.stats or {}).get("index")
    if isinstance(index, dict):
        pairs.append(("index", f"{index.get('kind', '?')}, {index.get('vectors', 0)} vectors"))
    return pairs


@space_group.command("create")
@click.argument("space_id", metavar="ID")
@click.option("--dimension", type=click.IntRange(1), default=None,
              help="Embedding dimension (else set by the first embedding stored).")
@click.option("--embedder", "provider", type=click.Choice(PROVIDERS, case_sensitive=False), default=None,
              help="Who embeds this space's text: local (bundled model), openai (an OpenAI-compatible "
                   "server), hash (no model) or none (vectors only from clients). Default: the "
                   "server's `embedder` setting.")
@click.option("--model", default=None, metavar="NAME",
              help="Embedder model (with --embedder), e.g. all-MiniLM-L6-v2-int8 or hash-256.")
@backend_options
def create(target: Target, space_id: str, dimension: int | None, provider: str | None,
           model: str | None) -> None:
    """Create memory space ID (idempotent: an existing space is left as it is)."""
    if model is not None and provider is None:
        raise click.UsageError("--model needs --embedder (e.g. --embedder local --model all-MiniLM-L6-v2)")
    with target.backend() as client:
        desc = client.create_space(space_id, dimension=dimension, embedder=provider and provider.lower(),
                                   model=model)
    if target.as_json:
        out.emit_json(desc)
        return
    verb = "created" if desc.created else "already exists:"
    label = embedder_label(desc)
    out.stdout().print(Text.assemble(f"{verb} space ", (desc.id, "bold"), f" at {target.address}",
                                     f" (embedder {label})" if label else ""))


@space_group.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Spaces per page.")
@click.option("--cursor", default=None, help="Start after this cursor (next_cursor of the previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow cursors to the end.")
@backend_options
def list_(target: Target, limit: int, cursor: str | None, all_pages: bool) -> None:
    """List memory spaces sorted by id (the active one is marked *)."""
    with target.backend() as client:
        page = client.list_spaces(cursor=cursor, limit=limit)
        spaces = list(page.spaces)
        while all_pages and page.next_cursor:
            page = client.list_spaces(cursor=page.next_cursor, limit=limit)
            spaces.extend(page.spaces)
    if target.as_json:
        out.emit_json({"spaces": [s.model_dump(mode="json") for s in spaces], "next_cursor": page.next_cursor,
                       "active_space": target.space})
        return
    rows = [("*" if s.id == target.space else "", s.id, s.memory_count, s.dimension,
             s.embedder.provider if s.embedder else None, s.embedding_backlog, s.last_lsn,
             "yes" if s.healthy else "no", s.created_at) for s in spaces]
    caption = f"active space: {target.space} ({target.space_source})"
    if page.next_cursor:
        caption += f"; more: --cursor {page.next_cursor}"
    out.stdout().print(out.table(f"Memory spaces at {target.address}",
                                 ["", "id", "memories", "dim", "embedder", "backlog", "last LSN", "healthy",
                                  "created"], rows, caption=caption, no_wrap=("id", "created")))


@space_group.command("get")
@click.argument("space_id", metavar="[ID]", required=False)
@backend_options
def get(target: Target, space_id: str | None) -> None:
    """Show a space's descriptor and statistics (default: the active space)."""
    sid = space_id or target.space
    with target.backend() as client:
        desc = client.get_space(sid)
    if target.as_json:
        out.emit_json(desc)
        return
    out.stdout().print(out.fields_table(f"Memory space {desc.id}", _descriptor_pairs(desc)))


@space_group.command("reembed")
@click.argument("space_id", metavar="ID")
@click.option("--provider", type=click.Choice([p for p in PROVIDERS if p != "none"], case_sensitive=False),
              default=None, help="The new embedder. Default: the server's `embedder` setting.")
@click.option("--model", default=None, metavar="NAME",
              help="Its model (with --provider), e.g. all-MiniLM-L6-v2-int8 or hash-256.")
@click.option("--no-wait", is_flag=True, help="Return once started; the server carries on alone.")
@click.option("--interval", type=click.FloatRange(0.05), default=0.5, show_default=True,
              help="Seconds between progress checks.")
@backend_options
def reembed(target: Target, space_id: str, provider: str | None, model: str | None, no_wait: bool,
            interval: float) -> None:
    """Re-embed memory space ID with another embedder.

    The server computes every memory's new vector in the background while the space keeps
    serving with its current embedder, then switches embedder, dimension and vectors at once.
    This command follows it with a progress bar until the switch. Ctrl-C stops watching, not
    the work. Resumable: after Ctrl-C or a server restart, run it again with the same
    --provider/--model to pick up where it is.
    """
    if model is not None and provider is None:
        raise click.UsageError("--model needs --provider (e.g. --provider local --model all-MiniLM-L6-v2)")
    again = _again(space_id, provider, model)
    with target.backend() as client:
        status = client.reembed(space_id, provider=provider and provider.lower(), model=model)
        if no_wait:
            if not target.as_json:
                out.stdout().print(_reembed_line(status, target))
        else:
            status = _follow(target, client, status, interval, again)
    if target.as_json:
        out.emit_json(status)
    elif no_wait:
        out.stdout().print(f"running on the server; follow it with `{again}`")
    else:
        out.stdout().print(Text.assemble("re-embedded space ", (status.memory_space_id, "bold"),
                                         f": now {info_label(status.embedder)}, {status.total} memories"))


def _reembed_line(status: ReembedStatus, target: Target) -> Text:
    goal = info_label(status.target) if status.target else info_label(status.embedder)
    return Text.assemble("re-embedding space ", (status.memory_space_id, "bold"), f" at {target.address}",
                         f" with {goal}: {status.done}/{status.total} done")


def _again(space_id: str, provider: str | None, model: str | None) -> str:
    args = ["engram space reembed", space_id]
    if provider:
        args += ["--provider", provider.lower()]
    if model:
        args += ["--model", model]
    return " ".join(args)


def _follow(target: Target, client: Backend, status: ReembedStatus, interval: float,
            again: str) -> ReembedStatus:
    """Poll until the space has switched (state idle); Ctrl-C leaves the work running and exits 130.

    Ctrl-C only sets a flag that the loop reads between polls: a KeyboardInterrupt raised at an
    arbitrary point inside the progress bar's refresh machinery can leave its lock held and hang
    the exit (it did, once, under load).
    """
    interrupted = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set()) if in_main else None
    try:
        if not target.as_json:
            out.stdout().print(_reembed_line(status, target))
        with out.progress_bar(enabled=not target.as_json) as bar:
            task = bar.add_task(f"re-embedding {status.memory_space_id}", total=status.total,
                                completed=status.done)
            while status.state == "running" and not interrupted.wait(interval):
                status = client.reembed_status(status.memory_space_id)
                bar.update(task, total=status.total,
                           completed=status.done if status.state == "running" else status.total)
    except KeyboardInterrupt:  # raised directly when not on the main thread (no handler there)
        interrupted.set()
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted.is_set() and status.state == "running":
        if target.as_json:
            out.emit_json(status)
        out.stderr().print(
            f"interrupted: the re-embedding keeps running on the server ({status.done}/{status.total} "
            f"done); run `{again}` again to follow it (it resumes), or `engram space get "
            f"{status.memory_space_id}` to see the embedder in use.")
        sys.exit(out.EXIT_INTERRUPTED)
    return status


@space_group.command("delete")
@click.argument("space_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@backend_options
def delete(target: Target, space_id: str, yes: bool) -> None:
    """Erase memory space ID and everything in it. This cannot be undone."""
    with target.backend() as client:
        if not yes:
            desc = client.get_space(space_id)
            click.confirm(f"Delete space {desc.id} and its {desc.memory_count} memories?", abort=True,
                          err=True)
        gone = client.delete_space(space_id)
    if target.as_json:
        out.emit_json(gone)
        return
    out.stdout().print(Text.assemble(
        "deleted space ", (gone.id, "bold"),
        f": {gone.memories_removed} memories, {gone.files_removed} files, "
        f"{gone.bytes_removed} bytes removed"))
