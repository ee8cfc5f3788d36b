"""``engram space create|list|get|delete``."""

from __future__ import annotations

import click
from rich.text import Text

from ..core.models import SpaceDescriptor
from ..embedding import PROVIDERS
from . import output as out
from .connect import Target, backend_options


@click.group("space")
def space_group() -> None:
    """Create, list, inspect and delete memory spaces."""


def embedder_label(desc: SpaceDescriptor) -> str | None:
    """``hash/hash-384 (384-d)``; None when the server did not say (an old server, an unloaded space)."""
    emb = desc.embedder
    if emb is None:
        return None
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
        if key in ("memory_space_id", "memories", "last_lsn", "dimension", "healthy", "index"):
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
