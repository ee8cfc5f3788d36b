"""``engram memory remember|recall|get|list|update|forget`` (import/export live in transfer.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.text import Text

from ..core.models import Memory, RecallItem
from . import output as out
from .connect import Target, backend_options

MEMORY_TYPES = click.Choice(["episodic", "semantic", "procedural", "working"])


@click.group("memory")
def memory_group() -> None:
    """Store, recall, inspect, list, forget, import and export memories of one space."""


def _embedding(raw: str | None) -> list[float] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        if not isinstance(value, list) or not value:
            raise ValueError
        return [float(v) for v in value]
    except (ValueError, TypeError):
        raise click.BadParameter("expected a JSON array of numbers, e.g. '[0.1, 0.2, 0.3]'",
                                 param_hint="--embedding") from None


def _scalar(text: str) -> Any:
    """A --meta value: a JSON number, true, false, null or "quoted string" keeps its type;
    anything else is the text itself (so ``team=core`` is the string "core")."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (str, bool, int, float)) else text


def _metadata(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    if not pairs:
        return None
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--meta")
        result[key] = _scalar(value)
    return result


def _filter(raw: str | None) -> dict[str, Any] | None:
    """--filter: a JSON object (the server checks the grammar and names what is wrong)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        example = '{"team": "core", "n": {"$gte": 2}}'
        raise click.BadParameter(f"not valid JSON ({exc}); e.g. '{example}'", param_hint="--filter") from None
    if not isinstance(value, dict):
        raise click.BadParameter("expected a JSON object, e.g. '{\"team\": \"core\"}'", param_hint="--filter")
    return value


FILTER_HELP = ('Metadata filter as JSON, e.g. \'{"team": "core", "n": {"$gte": 2}}\' (operators $eq $ne $in '
               "$nin $gt $gte $lt $lte $exists, $and/$or; see docs/rest.md).")


@memory_group.command("remember")
@click.argument("content", required=False)
@click.option("--id", "memory_id", default=None, help="Choose the id (else one is generated).")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--type", "memory_type", type=MEMORY_TYPES, default=None,
              help="Memory type (default semantic).")
@click.option("--confidence", type=click.FloatRange(0, 1), default=None, help="Confidence in [0,1].")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="Metadata entry (repeatable). VALUE that reads as JSON (2, 2.5, true, null, \"2\") "
                   "keeps that type; any other text is a string.")
@click.option("--embedding", default=None, metavar="JSON", help="Embedding as a JSON array of floats.")
@click.option("--auto-link", is_flag=True, default=None, help="Link to near neighbours.")
@click.option("--when", default=None, metavar="TIME",
              help="Store an episode that happened at TIME (ISO-8601 or epoch seconds).")
@click.option("--where", "where_location", default=None, help="Episode location (with --when).")
@click.option("--who", multiple=True, help="Episode participant (with --when, repeatable).")
@backend_options
def remember(target: Target, content: str | None, memory_id: str | None, tags: tuple[str, ...],
             memory_type: str | None, confidence: float | None, meta: tuple[str, ...],
             embedding: str | None, auto_link: bool | None, when: str | None,
             where_location: str | None, who: tuple[str, ...]) -> None:
    """Store CONTENT as a memory ('-' reads it from stdin)."""
    if content == "-":
        content = sys.stdin.read().rstrip("\n")
    vector = _embedding(embedding)
    if not content and vector is None:
        raise click.UsageError("give CONTENT (or '-' for stdin), --embedding, or both")
    if (where_location or who) and not when:
        raise click.UsageError("--where and --who describe an episode: add --when")
    common: dict[str, Any] = dict(id=memory_id, embedding=vector, confidence=confidence,
                                  tags=list(tags) or None,
                                  metadata=_metadata(meta), auto_link=auto_link)
    with target.backend() as client:
        if when:
            receipt = client.experience(when, content or "", where_location=where_location,
                                        who=list(who) or None, **common)
        else:
            receipt = client.remember(content or "", memory_type=memory_type, **common)
    if target.as_json:
        out.emit_json(out.dump(receipt, memory_space_id=target.space))
        return
    conf = receipt.storage_confidence
    out.stdout().print(Text.assemble(
        "stored ", (receipt.memory_id, "bold"), " in space ", (target.space, "bold"),
        f" (lsn {receipt.lsn}, confidence {conf.category.value} {conf.value:.2f}, {receipt.durability}"
        + (f", {len(receipt.auto_links)} auto-links" if receipt.auto_links else "") + ")"))


#: signals shown in the recall table's "why" column, in this order, with the word people read
WHY = (("text", "text"), ("vector", "meaning"), ("context", "context"), ("spread", "spread"))


def _short(value: float) -> str:
    """0.62 -> ".62", 1.0 -> "1.00", -0.05 -> "-.05"."""
    text = f"{value:.2f}"
    return text.replace("0.", ".", 1) if text.lstrip("-").startswith("0.") else text


def why(signals: dict[str, float]) -> str:
    """The evidence that placed a result, compactly: ``text .62 · meaning .71 · spread .20``."""
    parts = [f"{word} {_short(signals[key])}" for key, word in WHY if key in signals]
    if not parts and "activation" in signals:  # found by none of them: say what is left
        parts.append(f"activation {_short(signals['activation'])}")
    return " · ".join(parts) or "-"


def _recall_rows(bucket: str, items: list[RecallItem]) -> list[list[Any]]:
    return [[bucket, f"{i.score:.3f}", i.memory.id, out.text(i.memory.content, 60), why(i.signals),
             f"{i.confidence.category.value} {i.confidence.value:.2f}"] for i in items]


@memory_group.command("recall")
@click.argument("query", required=False)
@click.option("--limit", "-n", "max_results", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Minimum score in [0,1].")
@click.option("--mode", type=click.Choice(["similarity", "spreading", "hybrid"]), default=None)
@click.option("--tag", "-t", "tags", multiple=True, help="Only memories with this tag (repeatable).")
@click.option("--type", "memory_type", type=MEMORY_TYPES, default=None)
@click.option("--embedding", default=None, metavar="JSON", help="Recall by embedding (JSON array).")
@click.option("--trace", is_flag=True, default=None, help="Return the activation path of each result.")
@click.option("--rank", type=click.Choice(["cognitive", "similarity"]), default=None,
              help="cognitive (default): fused text, meaning, context, activation and recency; "
                   "similarity: pure cosine order (score = cosine).")
@click.option("--wait", "wait_for_embeddings", is_flag=True, default=None,
              help="Wait (at most the server's embedding_wait_seconds) until memories stored before "
                   "this recall have their embeddings.")
@click.option("--filter", "filter_", default=None, metavar="JSON", help=FILTER_HELP)
@backend_options
def recall(target: Target, query: str | None, max_results: int, threshold: float | None,
           mode: str | None, tags: tuple[str, ...], memory_type: str | None, embedding: str | None,
           trace: bool | None, rank: str | None, wait_for_embeddings: bool | None,
           filter_: str | None) -> None:
    """Recall memories of the active space that match QUERY (text and meaning) and/or --embedding.

    The "why" column shows the signals that placed each result: text (full-text match),
    meaning (cosine similarity of the embeddings), context and spread (spreading activation).
    """
    vector = _embedding(embedding)
    flt = _filter(filter_)
    if not query and vector is None and not tags and not flt:
        raise click.UsageError("give a QUERY, --embedding, --tag or --filter to recall by")
    with target.backend() as client:
        result = client.recall(query, embedding=vector, max_results=max_results, threshold=threshold,
                               mode=mode, tags=list(tags) or None, memory_type=memory_type,
                               trace_activation=trace, rank=rank, wait_for_embeddings=wait_for_embeddings,
                               filter=flt)
    if target.as_json:
        out.emit_json(out.dump(result, memory_space_id=target.space))
        return
    m = result.memories
    rows = _recall_rows("vivid", m.vivid) + _recall_rows("associated", m.associated) \
        + _recall_rows("reconstructed", m.reconstructed)
    rc = result.recall_confidence
    title = f"Recall {query!r} in space {target.space}" if query else f"Recall in space {target.space}"
    caption = f"{len(rows)} results; recall confidence {rc.category.value} {rc.value:.2f}"
    meta = result.metadata
    if meta.get("rank"):
        caption += f"; rank {meta['rank']}"
    if meta.get("embeddings_pending"):
        caption += f"; {int(meta['embeddings_pending'])} memories still not embedded after waiting"
    elif meta.get("embedding_backlog"):
        caption += f"; {int(meta['embedding_backlog'])} memories not embedded yet (found by text only)"
    if meta.get("note"):
        caption += f"; {meta['note']}"
    out.stdout().print(out.table(title, ["bucket", "score", "id", "content", "why", "confidence"], rows,
                                 caption=caption))


def _memory_pairs(mem: Memory) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        ("id", mem.id), ("content", mem.content), ("type", mem.memory_type), ("confidence", mem.confidence),
        ("activation", mem.activation), ("created", mem.created_at), ("last access", mem.last_access),
        ("access count", mem.access_count), ("decay rate", mem.decay_rate), ("tags", mem.tags),
        ("metadata", mem.metadata), ("suppressed", "yes" if mem.suppressed else "no"), ("lsn", mem.lsn),
    ]
    if mem.embedding is not None:
        pairs.append(("embedding", f"{len(mem.embedding)} dims"))
    for key in ("when", "what", "where_location", "who", "why", "how", "emotional_valence", "importance",
                "consolidation_state"):
        value = getattr(mem, key)
        if value not in (None, [], ""):
            pairs.append((key.replace("_", " "), value))
    return pairs


@memory_group.command("get")
@click.argument("memory_id", metavar="ID")
@click.option("--embedding/--no-embedding", "include_embedding", default=None,
              help="Include the embedding in the result.")
@backend_options
def get(target: Target, memory_id: str, include_embedding: bool | None) -> None:
    """Show memory ID of the active space."""
    with target.backend() as client:
        mem = client.get(memory_id, include_embedding=include_embedding)
    if target.as_json:
        out.emit_json(out.dump(mem, memory_space_id=target.space))
        return
    out.stdout().print(out.fields_table(f"Memory {mem.id} in space {target.space}", _memory_pairs(mem)))


@memory_group.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Memories per page.")
@click.option("--cursor", default=None, help="Start after this cursor (next_cursor of the previous page).")
@click.option("--type", "memory_type", type=MEMORY_TYPES, default=None)
@click.option("--include-suppressed", is_flag=True, default=None, help="Also list suppressed memories.")
@click.option("--filter", "filter_", default=None, metavar="JSON", help=FILTER_HELP)
@backend_options
def list_(target: Target, limit: int, cursor: str | None, memory_type: str | None,
          include_suppressed: bool | None, filter_: str | None) -> None:
    """List memories of the active space, oldest first, one page at a time."""
    with target.backend() as client:
        page = client.list_memories(cursor=cursor, limit=limit, memory_type=memory_type,
                                    include_suppressed=include_suppressed, filter=_filter(filter_))
    if target.as_json:
        out.emit_json(out.dump(page, memory_space_id=target.space))
        return
    rows = [[m.id, m.memory_type, out.text(m.content, 60), m.confidence, m.tags, m.created_at]
            for m in page.memories]
    caption = f"{len(rows)} of {page.total} memories"
    if page.next_cursor:
        caption += f"; next page: --cursor {page.next_cursor}"
    out.stdout().print(out.table(f"Memories in space {target.space}",
                                 ["id", "type", "content", "confidence", "tags", "created"], rows,
                                 caption=caption))


@memory_group.command("update")
@click.argument("memory_id", metavar="ID")
@click.option("--content", default=None, help="New text ('-' reads it from stdin).")
@click.option("--tag", "-t", "tags", multiple=True, help="Replace the tags with these (repeatable).")
@click.option("--metadata", "--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="Replace the metadata with these entries (repeatable).")
@click.option("--type", "memory_type", type=MEMORY_TYPES, default=None, help="New memory type.")
@click.option("--confidence", type=click.FloatRange(0, 1), default=None, help="New confidence in [0,1].")
@click.option("--embedding", default=None, metavar="JSON", help="New embedding as a JSON array of floats.")
@backend_options
def update(target: Target, memory_id: str, content: str | None, tags: tuple[str, ...],
           meta: tuple[str, ...], memory_type: str | None, confidence: float | None,
           embedding: str | None) -> None:
    """Change some fields of memory ID in the active space (the others are kept).

    Associations are kept and the LSN advances. New text without --embedding is re-embedded
    by the server's embedder (the old vector stops matching at once).
    """
    if content == "-":
        content = sys.stdin.read().rstrip("\n")
    vector = _embedding(embedding)
    if content is None and vector is None and not tags and not meta and memory_type is None \
            and confidence is None:
        raise click.UsageError("give at least one of --content, --tag, --metadata, --type, --confidence, "
                               "--embedding")
    with target.backend() as client:
        receipt = client.patch_memory(memory_id, content=content, embedding=vector, confidence=confidence,
                                      tags=list(tags) or None, memory_type=memory_type,
                                      metadata=_metadata(meta))
    if target.as_json:
        out.emit_json(out.dump(receipt, memory_space_id=target.space))
        return
    out.stdout().print(Text.assemble("updated ", (memory_id, "bold"), " in space ", (target.space, "bold"),
                                     f" (lsn {receipt.lsn})"))


@memory_group.command("forget")
@click.argument("memory_id", metavar="ID")
@click.option("--mode", type=click.Choice(["suppress", "delete"]), default="suppress", show_default=True,
              help="suppress: hide from recall (reversible); delete: erase.")
@backend_options
def forget(target: Target, memory_id: str, mode: str) -> None:
    """Forget memory ID of the active space."""
    with target.backend() as client:
        receipt = client.forget(memory_id, mode=mode)
    if target.as_json:
        out.emit_json(out.dump(receipt, memory_space_id=target.space))
        return
    verb = "suppressed" if receipt.mode.value == "suppress" else "deleted"
    out.stdout().print(Text.assemble(f"{verb} ", (receipt.memory_id, "bold"), " in space ",
                                     (target.space, "bold"), f" (lsn {receipt.lsn})"))


@memory_group.command("delete")
@click.option("--filter", "filter_", required=True, metavar="JSON", help=FILTER_HELP)
@click.option("--mode", type=click.Choice(["suppress", "delete"]), default="suppress", show_default=True,
              help="suppress: hide from recall (reversible); delete: erase.")
@backend_options
def delete(target: Target, filter_: str, mode: str) -> None:
    """Forget every memory of the active space whose metadata matches --filter (one durable write)."""
    flt = _filter(filter_)
    assert flt is not None
    with target.backend() as client:
        receipt = client.delete_memories(flt, mode=mode)
    if target.as_json:
        out.emit_json(out.dump(receipt, memory_space_id=target.space))
        return
    verb = "suppressed" if mode == "suppress" else "deleted"
    out.stdout().print(Text.assemble(f"{verb} ", (str(receipt.count), "bold"),
                                     f" memor{'y' if receipt.count == 1 else 'ies'} in space ",
                                     (target.space, "bold"), f" (lsn {receipt.lsn})"))
