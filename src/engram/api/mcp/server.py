"""The MCP server: ``tools/list`` and ``tools/call`` over the table in :mod:`.tools`.

Built on the SDK's low-level ``Server`` so the advertised schemas are exactly
the cleaned pydantic schemas (:func:`.tools.clean_schema`) and each result
carries both the text for the model and the structured content.

Where the space comes from is the one thing the transports do differently,
so it is a parameter (:class:`SpaceRule`):

* stdio (``engram mcp``): bound to one space at start (``--space`` /
  ``ENGRAM_MEMORY_SPACE`` / the config's ``default_space``); a ``space``
  argument naming another one is a conflict.
* Streamable HTTP (``/mcp``): the request's ``X-Memory-Space`` header (or an
  alias) and the ``space`` argument, through
  :meth:`EngramService.resolve_space`, so SPEC §2 holds as on REST: sources
  that disagree are a conflict, none at all is the default space with a
  deprecation note (or an error under ``require_explicit_space``).

Every failure of a tool call is a tool result with ``isError`` (the error
envelope's code, message, suggestion and example, as text and as structured
content), so the model can read it and correct itself; the server itself
never fails a call it can answer. An unknown tool name is a protocol error
(``INVALID_PARAMS``), as the MCP specification asks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from ... import __version__
from ...errors import EngramError, InvalidInput, MemorySpaceConflict, MemorySpaceNotFound
from ...spaces.ids import MemorySpaceId
from .engines import Engine
from .tools import TOOLS, Reply, Scoped

log = logging.getLogger("engram.mcp")

INSTRUCTIONS = (
    "Engram is your long-term memory. Before answering, `recall` what past conversations may have "
    "settled; `remember` facts, preferences, decisions and events worth keeping (one per call, in plain "
    "words). Memories live in one memory space per session and are never shared with other spaces."
)


class SpaceRule(Protocol):
    """``rule(ctx, tool_name, space_argument)`` -> (space id, a note for the reply or None)."""

    def __call__(self, ctx: ServerRequestContext[Any, Any], tool: str,
                 argument: str | None) -> tuple[str, str | None]: ...

    def session_space(self, ctx: ServerRequestContext[Any, Any]) -> str:
        """The space the session names without a tool argument ("" when none), for list_spaces."""
        ...

    def admit(self, ctx: ServerRequestContext[Any, Any], tool: str, read_only: bool) -> None:
        """Raise unless the caller's key may call this tool at all (SPEC §10); before any space."""
        ...


class BoundSpace:
    """stdio: the one space the process was started for."""

    def __init__(self, space: str) -> None:
        self.space = MemorySpaceId(space)

    def session_space(self, ctx: ServerRequestContext[Any, Any]) -> str:
        return self.space

    def admit(self, ctx: ServerRequestContext[Any, Any], tool: str, read_only: bool) -> None:
        """stdio: the key (``--api-key``) goes with every request to the server, which checks it."""

    def __call__(self, ctx: ServerRequestContext[Any, Any], tool: str,
                 argument: str | None) -> tuple[str, str | None]:
        if argument not in (None, ""):
            MemorySpaceId(argument)
            if argument != self.space:
                raise MemorySpaceConflict(
                    f"this MCP session is bound to memory space {self.space!r}; the space argument says "
                    f"{argument!r}",
                    suggestion="Leave out the space argument, or start `engram mcp --space ID` for the "
                               "other space (one MCP server per space).",
                    details={"sources": {"--space": self.space, "argument:space": argument}})
        return self.space, None


EngineSource = Callable[[], Awaitable[Engine]]


def build_server(engine: EngineSource, space_rule: SpaceRule,
                 on_error: Callable[[EngramError], None] | None = None) -> Server[Any]:
    """A low-level MCP server whose tools run on ``engine()`` in the space ``space_rule`` picks;
    ``on_error`` sees every Engram error a call answers with (stdio: a lost server)."""

    tools = [
        types.Tool(
            name=t.name, title=t.title, description=t.description, input_schema=t.input_schema(),
            annotations=types.ToolAnnotations(title=t.title, read_only_hint=t.read_only,
                                              destructive_hint=t.destructive),
        )
        for t in TOOLS.values()
    ]

    async def list_tools(ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS,
                           f"unknown tool {params.name!r}; this server has: {', '.join(TOOLS)}")
        try:
            space_rule.admit(ctx, tool.name, tool.read_only)
            args = tool.args.model_validate(params.arguments or {})
            note = None
            if isinstance(args, Scoped):
                space, note = space_rule(ctx, tool.name, args.space)
            else:
                space = space_rule.session_space(ctx)
            reply = await tool.run(await engine(), space, args)
        except ValidationError as exc:
            return _error(_invalid(tool.name, exc))
        except EngramError as exc:
            if on_error is not None:
                on_error(exc)
            return _error(exc)
        except Exception:  # a bug: logged with its traceback, answered, and the server keeps serving
            log.exception("MCP tool %s failed", tool.name)
            return _error(EngramError(f"{tool.name} failed with an internal error (logged by the server)",
                                      suggestion="Retry; if it persists, report it with the server log."))
        return _result(reply, note)

    return Server("engram", version=__version__, title="Engram memory", instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


def _result(reply: Reply, note: str | None) -> types.CallToolResult:
    text = f"{reply.text}\n\nNote: {note}" if note else reply.text
    data = dict(reply.data)
    if note:
        data["warning"] = note
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=data)


def _error(exc: EngramError) -> types.CallToolResult:
    envelope = exc.to_envelope()
    err = envelope["error"]
    if isinstance(exc, MemorySpaceNotFound) and isinstance(exc.details.get("memory_space_id"), str):
        # name the space the caller asked for (never any other), as the REST envelope does
        err["suggestion"] = err["suggestion"].replace("<id>", exc.details["memory_space_id"])
    lines = [f"Error {err['code']}: {err['message']}"]
    if err.get("suggestion"):
        lines.append(f"Suggestion: {err['suggestion']}")
    if err.get("example"):
        lines.append(f"Example: {err['example']}")
    return types.CallToolResult(content=[types.TextContent(text="\n".join(lines))],
                                structured_content=envelope, is_error=True)


def _invalid(tool: str, exc: ValidationError) -> InvalidInput:
    problems = []
    for err in exc.errors(include_url=False)[:10]:
        field = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "required"
        elif err.get("type") == "extra_forbidden":
            msg = "not an argument of this tool"
        problems.append({"field": field, "problem": msg})
    first = problems[0] if problems else {"field": "arguments", "problem": "invalid"}
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    schema = TOOLS[tool].input_schema()
    return InvalidInput(
        f"invalid arguments for {tool}: {first['field']}: {first['problem']}{more}",
        suggestion=f"Call {tool} with arguments matching its input schema; required: "
                   f"{', '.join(schema.get('required', [])) or 'none'}.",
        example=json.dumps(_example(tool)),
        details={"errors": problems},
    )


def _example(tool: str) -> dict[str, Any]:
    examples: dict[str, dict[str, Any]] = {
        "remember": {"content": "Alice prefers tea over coffee", "tags": ["preferences"]},
        "recall": {"query": "what does Alice drink?"},
        "get_memory": {"id": "<id from remember or recall>"},
        "forget": {"id": "<id>", "mode": "suppress"},
        "associate": {"source_id": "<id>", "target_id": "<other id>", "strength": 0.8},
        "reminisce": {"topic": "payment outage", "time_start": "2026-01-01T00:00:00Z"},
        "consolidate": {},
        "complete": {"what": "decided to ship on Friday"},
        "list_spaces": {},
    }
    return examples[tool]
