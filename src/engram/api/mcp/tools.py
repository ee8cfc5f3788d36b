"""The MCP tools: one table from tool name to (arguments, description, operation, rendering).

Each tool's arguments are a pydantic model (``extra="forbid"``) whose JSON schema
is what ``tools/list`` advertises and whose validation is what ``tools/call``
applies, so the schema an LLM reads and the checks its call meets are one thing.
A tool then builds the engine's own input model (``MemoryInput``, ``Cue`` ...),
so every rule of the REST and gRPC APIs applies unchanged, calls one
:class:`~.engines.Engine` method, and renders the answer twice: a short text for
the model and the structured result (embeddings left out: numbers an LLM cannot
use, and thousands of tokens).

The same table serves ``engram mcp`` (stdio, in-process or over HTTP) and ``/mcp``
(Streamable HTTP on the REST server): the transports differ only in the engine
they hand in and in where the space comes from (:mod:`.server`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...core.models import (
    FILTER_DESCRIPTION,
    AssociateInput,
    CompleteInput,
    ConsolidateInput,
    Cue,
    EpisodeInput,
    Filter,
    ForgetMode,
    Memory,
    MemoryInput,
    Metadata,
    ReminisceQuery,
    dump,
)
from .engines import Engine

SPACE_DESCRIPTION = (
    "Memory space to use. Normally leave it out: the session is already bound to a space (the "
    "X-Memory-Space header over HTTP, --space for `engram mcp`). If given, it must name that same space, "
    "or the only space when the session named none."
)
Text = Annotated[str, Field(max_length=65_536)]
Id = Annotated[str, Field(min_length=1, max_length=256)]
Time = Annotated[str, Field(max_length=64)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scoped(Args):
    space: Annotated[str, Field(max_length=64)] | None = Field(None, description=SPACE_DESCRIPTION)


class RememberArgs(Scoped):
    content: Text = Field(..., min_length=1, description=(
        "What to remember, as one self-contained statement in plain words (who, what, and why it "
        "matters), e.g. 'Alice prefers tea over coffee'. Store one fact or event per call."))
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=64,
        description="Short labels to filter recall by later, e.g. ['preferences', 'project-x'].")
    memory_type: Literal["semantic", "episodic", "procedural", "working"] | None = Field(None, description=(
        "semantic: a lasting fact (the default); episodic: something that happened (the default when "
        "`when` is given); procedural: how to do something; working: scratch notes for the current task."))
    when: Time | None = Field(None, description=(
        "When it happened, ISO-8601 (e.g. '2026-01-05T09:00:00Z'). Makes this an episode, which "
        "reminisce and consolidate work on."))
    who: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=256, description="People or agents involved (episodes).")
    where: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="Where it happened (episodes), e.g. 'standup meeting'.")
    importance: Unit | None = Field(None, description="How much it matters, 0 to 1 (episodes; default 0.5).")
    confidence: Unit = Field(0.7, description="How sure you are that it is true, 0 to 1.")
    metadata: Metadata = Field(default_factory=dict, description=(
        "Facts kept with the memory as key/value pairs; values are strings, numbers, booleans or null, "
        "e.g. {\"project\": \"x\", \"priority\": 2}. recall's `filter` selects on them."))
    id: Id | None = Field(None, description="Your own id for it; one is generated when left out.")


class RecallArgs(Scoped):
    query: Text = Field(..., min_length=1, description=(
        "What you want to remember, in natural words: a question or the topic, e.g. 'what does Alice "
        "drink?'. Matched by meaning and by words."))
    max_results: int = Field(5, ge=1, le=50, description="How many memories to return at most (1-50).")
    mode: Literal["similarity", "spreading", "hybrid"] = Field("similarity", description=(
        "similarity: memories like the query; spreading: also memories linked to those (associations); "
        "hybrid: both, ranked together. Use spreading or hybrid to follow connections."))
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=64, description="Only memories carrying all of these tags.")
    memory_type: Literal["semantic", "episodic", "procedural", "working"] | None = Field(
        None, description="Only memories of this type.")
    time_start: Time | None = Field(None, description="Only episodes that happened at or after (ISO-8601).")
    time_end: Time | None = Field(None, description="Only episodes that happened at or before (ISO-8601).")
    who: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=64, description="Only episodes involving these participants.")
    threshold: Unit = Field(0.0, description="Minimum relevance score, 0 to 1 (0 returns the best matches).")
    filter: Filter = Field(None, description=(
        "Only memories whose metadata match, e.g. {\"project\": \"x\", \"priority\": {\"$gte\": 2}}. "
        + FILTER_DESCRIPTION))


class GetMemoryArgs(Scoped):
    id: Id = Field(..., description="The memory id, as returned by remember or recall.")


class ForgetArgs(Scoped):
    id: Id = Field(..., description="The id of the memory to forget.")
    mode: Literal["suppress", "delete"] = Field("suppress", description=(
        "suppress: hide it from recall but keep it (reversible); delete: erase it for good."))


class AssociateArgs(Scoped):
    source_id: Id = Field(..., description="Id of the first memory.")
    target_id: Id = Field(..., description="Id of the memory it relates to.")
    strength: Unit = Field(0.5, description="How strongly they are related, 0 to 1; "
                                            "associating again strengthens the link.")
    bidirectional: bool = Field(True, description="Link both ways (true) or only source -> target.")


class ReminisceArgs(Scoped):
    topic: Annotated[str, Field(max_length=4096)] | None = Field(
        None, description="What the episodes are about; leave out to get every episode in the window.")
    time_start: Time | None = Field(None, description="Episodes at or after this time (ISO-8601).")
    time_end: Time | None = Field(None, description="Episodes at or before this time (ISO-8601).")
    limit: int = Field(20, ge=1, le=200, description="How many episodes at most (1-200).")


class ConsolidateArgs(Scoped):
    min_cluster: int | None = Field(None, ge=2, le=1000, description=(
        "Fewest similar episodes that make a belief (default: the server's, 2)."))
    similarity: Unit | None = Field(None, description="How alike episodes must be to cluster, 0 to 1 "
                                                      "(default: the server's).")


class CompleteArgs(Scoped):
    what: Annotated[str, Field(max_length=65_536)] | None = Field(
        None, description="What happened, if known.")
    when: Time | None = Field(None, description="When it happened, if known (ISO-8601).")
    where: Annotated[str, Field(max_length=1024)] | None = Field(None, description="Where, if known.")
    who: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=64, description="Who was involved, if known.")
    why: Annotated[str, Field(max_length=4096)] | None = Field(None, description="Why, if known.")
    how: Annotated[str, Field(max_length=4096)] | None = Field(None, description="How, if known.")
    max_hypotheses: int = Field(3, ge=1, le=20,
                                description="How many alternative reconstructions to return.")


class ListSpacesArgs(Args):
    limit: int = Field(100, ge=1, le=1000, description="How many spaces at most.")
    cursor: Annotated[str, Field(max_length=256)] | None = Field(
        None, description="next_cursor from a previous call, to get the next page.")


@dataclass(frozen=True)
class Reply:
    text: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    args: type[Args]
    run: Callable[[Engine, str, Any], Awaitable[Reply]]
    read_only: bool = False
    destructive: bool = False

    @property
    def scoped(self) -> bool:
        return issubclass(self.args, Scoped)

    def input_schema(self) -> dict[str, Any]:
        return clean_schema(self.args.model_json_schema())


# ----------------------------------------------------------------------------- rendering


def strip_vectors(value: Any) -> Any:
    """The structured result without embeddings and centroids."""
    if isinstance(value, dict):
        return {k: strip_vectors(v) for k, v in value.items() if k not in ("embedding", "centroid")}
    if isinstance(value, list):
        return [strip_vectors(v) for v in value]
    return value


def _when(value: datetime | None) -> str:
    if value is None:
        return "?"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quote(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return f'"{text if len(text) <= limit else text[: limit - 1] + "…"}"'


def _memory_line(m: Memory) -> str:
    parts = [f"id {m.id}", f"stored {_when(m.created_at)}", f"confidence {m.confidence:.2f}"]
    if m.when is not None:
        parts.insert(1, f"happened {_when(m.when)}")
    extras = []
    if m.who:
        extras.append("who: " + ", ".join(m.who))
    if m.where_location:
        extras.append(f"where: {m.where_location}")
    if m.tags:
        extras.append("tags: " + ", ".join(m.tags))
    line = f"{_quote(m.content)} ({'; '.join(parts)})"
    return line + (f"\n   {' · '.join(extras)}" if extras else "")


def _memory_data(m: Memory) -> dict[str, Any]:
    data: dict[str, Any] = strip_vectors(dump(m))
    return data


# ----------------------------------------------------------------------------- the operations


async def _remember(engine: Engine, space: str, a: RememberArgs) -> Reply:
    common: dict[str, Any] = {"content": a.content, "tags": a.tags, "confidence": a.confidence,
                              "metadata": a.metadata, "id": a.id}
    if a.memory_type is not None:
        common["memory_type"] = a.memory_type
    item: MemoryInput
    if a.when is not None or a.who or a.where or a.importance is not None:
        if a.when is None:
            from ...errors import InvalidInput

            raise InvalidInput("who, where and importance describe an episode: give `when` too",
                               example='{"content": "...", "when": "2026-01-05T09:00:00Z", "who": ["alice"]}')
        item = EpisodeInput(**common, when=a.when, who=a.who, where_location=a.where,
                            **({"importance": a.importance} if a.importance is not None else {}))
    else:
        item = MemoryInput(**common)
    receipt = await engine.remember(space, item)
    kind = "episode" if isinstance(item, EpisodeInput) else "memory"
    text = (f"Remembered {kind} {receipt.memory_id} in space {space!r} (durable, lsn {receipt.lsn}; "
            f"storage confidence {receipt.storage_confidence.category.value}).")
    if receipt.auto_links:
        text += f" Linked to {len(receipt.auto_links)} related memories."
    return Reply(text, strip_vectors(dump(receipt)))


async def _recall(engine: Engine, space: str, a: RecallArgs) -> Reply:
    cue = Cue(query=a.query, max_results=a.max_results, mode=a.mode, tags=a.tags, memory_type=a.memory_type,
              time_start=a.time_start, time_end=a.time_end, participants=a.who, threshold=a.threshold,
              filter=a.filter)
    result = await engine.recall(space, cue)
    buckets = result.memories
    bucket_of = {i.memory.id: name for name in ("vivid", "associated", "reconstructed")
                 for i in getattr(buckets, name)}
    ranked = [(bucket_of.get(i.memory.id, "associated"), i) for i in result.results][: a.max_results]
    conf = result.recall_confidence
    if not ranked:
        text = (f"No memories in space {space!r} matched {_quote(a.query, 120)}. Try other words, fewer "
                "filters, or mode 'hybrid'.")
    else:
        lines = [f"{len(ranked)} memories from space {space!r}, best first "
                 f"(recall confidence {conf.category.value}, {conf.value:.2f}):"]
        for n, (bucket, item) in enumerate(ranked, 1):
            lines.append(f"{n}. {_memory_line(item.memory)}\n   relevance {item.score:.2f} ({bucket}), "
                         f"confidence {item.confidence.category.value} ({item.confidence.value:.2f})")
        text = "\n".join(lines)
    results = [
        {"rank": n, "bucket": bucket, "score": item.score, "source": item.source,
         "confidence": dump(item.confidence), "memory": _memory_data(item.memory)}
        for n, (bucket, item) in enumerate(ranked, 1)
    ]
    data = {"memory_space_id": space, "query": a.query, "recall_confidence": dump(conf), "results": results}
    return Reply(text, data)


async def _get_memory(engine: Engine, space: str, a: GetMemoryArgs) -> Reply:
    m = await engine.get_memory(space, a.id)
    state = " (suppressed: hidden from recall)" if m.suppressed else ""
    return Reply(f"Memory in space {space!r}{state}: {_memory_line(m)}", _memory_data(m))


async def _forget(engine: Engine, space: str, a: ForgetArgs) -> Reply:
    receipt = await engine.forget(space, a.id, ForgetMode(a.mode))
    what = ("suppressed (hidden from recall, can be restored)" if a.mode == "suppress"
            else "deleted for good")
    return Reply(f"Memory {a.id} in space {space!r} {what}.", dump(receipt))


async def _associate(engine: Engine, space: str, a: AssociateArgs) -> Reply:
    assoc = await engine.associate(space, AssociateInput(source_id=a.source_id, target_id=a.target_id,
                                                         strength=a.strength, bidirectional=a.bidirectional))
    arrow = "<->" if a.bidirectional else "->"
    return Reply(f"Associated {assoc.source_id} {arrow} {assoc.target_id} in space {space!r} "
                 f"(strength now {assoc.strength:.2f}).", dump(assoc))


async def _reminisce(engine: Engine, space: str, a: ReminisceArgs) -> Reply:
    found = await engine.reminisce(space, ReminisceQuery(topic=a.topic, time_start=a.time_start,
                                                         time_end=a.time_end, limit=a.limit))
    if not found.episodes:
        text = f"No episodes in space {space!r} matched."
    else:
        lines = [f"{len(found.episodes)} episodes from space {space!r}, in time order:"]
        lines += [f"{n}. {_memory_line(m)}" for n, m in enumerate(found.episodes, 1)]
        text = "\n".join(lines)
    return Reply(text, {"memory_space_id": space, "episodes": [_memory_data(m) for m in found.episodes]})


async def _consolidate(engine: Engine, space: str, a: ConsolidateArgs) -> Reply:
    item = ConsolidateInput(min_cluster=a.min_cluster, similarity=a.similarity)
    report = await engine.consolidate(space, item)
    lines = [f"Consolidated space {space!r}: {report.episodes_considered} episodes considered, "
             f"{report.episodes_consolidated} consolidated into {len(report.beliefs)} beliefs."]
    for n, b in enumerate(report.beliefs, 1):
        lines.append(f"{n}. {_quote(b.content)} (id {b.id}; strength {b.strength:.2f}; cites "
                     f"{len(b.citations)} episodes: {', '.join(c.episode_id for c in b.citations[:8])})")
    return Reply("\n".join(lines), strip_vectors(dump(report)))


async def _complete(engine: Engine, space: str, a: CompleteArgs) -> Reply:
    done = await engine.complete(space, CompleteInput(what=a.what, when=a.when, where_location=a.where,
                                                      who=a.who, why=a.why, how=a.how,
                                                      max_hypotheses=a.max_hypotheses))
    best = done.best
    lines = [f"Best reconstruction from space {space!r} (confidence {best.confidence.category.value}, "
             f"{best.confidence.value:.2f}; from memories {', '.join(best.source_memory_ids) or 'none'}):"]
    for f in best.fields:
        if f.value not in (None, "", []):
            lines.append(f"- {f.field}: {f.value} [{f.source}, {f.confidence:.2f}]")
    if done.alternatives:
        lines.append(f"{len(done.alternatives)} alternative reconstructions in the structured result.")
    return Reply("\n".join(lines), strip_vectors(dump(done)))


async def _list_spaces(engine: Engine, bound: str, a: ListSpacesArgs) -> Reply:
    page = await engine.list_spaces(a.cursor, a.limit)
    lines = [f"{len(page.spaces)} memory spaces" + (f" (this session uses {bound!r})" if bound else "") + ":"]
    lines += [f"- {s.id}: {s.memory_count} memories" for s in page.spaces]
    if page.next_cursor:
        lines.append(f"More: call list_spaces with cursor {page.next_cursor!r}.")
    data = {"spaces": [{"id": s.id, "memory_count": s.memory_count, "created_at": s.created_at.isoformat()}
                       for s in page.spaces], "next_cursor": page.next_cursor, "session_space": bound or None}
    return Reply("\n".join(lines), data)


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("remember", "Remember", (
        "Store a memory durably in this session's memory space, so later conversations can recall it. Use "
        "it for facts, preferences, decisions and events worth keeping (one per call); add `when` (and "
        "who/where) for something that happened, which makes it an episode. Returns the new memory's id."),
        RememberArgs, _remember),
    Tool("recall", "Recall", (
        "Search this space's memories by meaning and words and return the best matches, ranked, each with "
        "its id, when it was stored or happened, who was involved and a confidence. Use it before answering "
        "anything that past conversations may have settled. Filters (tags, type, time, who) narrow it."),
        RecallArgs, _recall, read_only=True),
    Tool("get_memory", "Get a memory", (
        "Fetch one memory by id with all its fields (content, tags, metadata, episode context, activation). "
        "Use it to read a memory that recall or remember named."),
        GetMemoryArgs, _get_memory, read_only=True),
    Tool("forget", "Forget", (
        "Forget a memory by id: 'suppress' hides it from recall but keeps it, 'delete' erases it for good. "
        "Use it when a memory is wrong or the user asks to forget something."),
        ForgetArgs, _forget, destructive=True),
    Tool("associate", "Associate", (
        "Link two memories of this space so that recall in 'spreading' or 'hybrid' mode finds one from the "
        "other, even when they share no words. Use it when you learn that two memories belong together."),
        AssociateArgs, _associate),
    Tool("reminisce", "Reminisce", (
        "List episodes (memories with a `when`) about a topic and/or inside a time window, in time order. "
        "Use it for 'what happened last week' or the history of a topic."),
        ReminisceArgs, _reminisce, read_only=True),
    Tool("consolidate", "Consolidate", (
        "Cluster similar episodes of this space into semantic beliefs that cite their source episodes, and "
        "return the beliefs. Use it after many related episodes have accumulated, to distil what they "
        "share."),
        ConsolidateArgs, _consolidate),
    Tool("complete", "Complete an episode", (
        "Reconstruct a whole episode from the parts you know (what, when, where, who, why, how), filling the "
        "rest from memory; each field says whether it was given, recalled or reconstructed, and from which "
        "memories. Use it for 'who was at the meeting where we decided X?'."),
        CompleteArgs, _complete, read_only=True),
    Tool("list_spaces", "List memory spaces", (
        "List the memory spaces of this Engram server with their memory counts, and say which one this "
        "session uses. Memories of other spaces are never visible from this session."),
        ListSpacesArgs, _list_spaces, read_only=True),
)}


# ----------------------------------------------------------------------------- schema tidying


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON schema without noise an LLM does not need.

    ``title`` keys go, ``anyOf [X, null]`` (an optional field) becomes ``X``, and a
    ``default`` of null is dropped: "leave it out" says the same thing.
    """
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
            ref.update({k: v for k, v in node.items() if k != "$ref"})
            node = ref
        options = node.get("anyOf")
        if isinstance(options, list):
            concrete = [o for o in options if o != {"type": "null"}]
            if len(concrete) == 1:
                node = {**{k: v for k, v in node.items() if k != "anyOf"}, **concrete[0]}
        out = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "default" and value is None:
                continue
            out[key] = {k: walk(v) for k, v in value.items()} if key == "properties" else walk(value)
        return out

    cleaned: dict[str, Any] = walk(schema)
    cleaned.setdefault("properties", {})
    cleaned["additionalProperties"] = False
    return cleaned
