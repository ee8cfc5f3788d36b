"""SSE routes: ``/api/v1/stream/{activities,memories,consolidation}``, each scoped to one space."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.requests import Request

from ...core.admission import client_key
from ...core.events import EVENT_TYPES
from ...errors import InvalidInput
from ...service import EngramService
from ...storage.eventlog import LAST_SEQ, Position, parse_position
from .access import principal_of
from .space import SPACE_PARAMETERS, SpaceResolver
from .sse import EventFilter, EventStreamResponse

#: The event types each stream carries (and may be narrowed to with ?types=).
STREAMS: dict[str, tuple[str, ...]] = {
    "activities": EVENT_TYPES,
    "memories": ("stored", "recalled", "forgotten", "decay", "updated", "expired"),
    "consolidation": ("consolidation",),
}

_SSE_DOC = (
    "Server-sent events of one memory space only. Each event has `event:` = its type and `data:` = "
    "JSON `{type, memory_space_id, lsn, timestamp, data}`; logged events (stored writes) also have "
    "`id:` = their LSN (`LSN.n` for the n+1th event of one LSN), live-only ones (recalled, activation) "
    "none. Resume with the `Last-Event-ID` header (the last id seen) or `?since_lsn=N` (every event "
    "after LSN N; the header wins when both are sent): the logged events after that point are "
    "replayed, then live events follow with no gap and no duplicate; a point older than the log "
    "holds gets `event: reset` `{since_lsn, oldest_lsn, last_lsn, reason}` first, then live events. "
    "Idle streams get `: heartbeat` comments; a slow consumer gets `event: lagged` "
    "`{missed, last_lsn}`; the server ends a stream with `event: end` `{reason}` "
    "(shutdown, space deleted, or too slow: missing events for `subscriber_max_lag_seconds`). "
    "Beyond the subscriber caps (per client, per space, per server) a new stream is refused with "
    "429 `TOO_MANY_SUBSCRIBERS` and `Retry-After`; open streams are not affected."
)


def _parse_types(raw: str | None, allowed: tuple[str, ...], stream: str) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return allowed
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    bad = [t for t in types if t not in allowed]
    if bad:
        raise InvalidInput(
            f"unknown event type(s) for the {stream} stream: {', '.join(repr(b[:40]) for b in bad[:5])}; "
            f"this stream carries: {', '.join(allowed)}",
            suggestion="Pass a comma-separated subset of the listed types, or omit ?types= for all of them.",
            example=f"?types={','.join(allowed[:2])}",
        )
    return types


def resume_point(last_event_id: str | None, since_lsn: str | None) -> Position | None:
    """Where a stream resumes: after the ``Last-Event-ID`` event, else after every event of
    ``since_lsn``; None for live only. The header wins: a browser's EventSource reconnects to
    the same URL (with its old ``since_lsn``) and sends the last id it saw."""
    if last_event_id is not None and last_event_id.strip():
        try:
            return parse_position(last_event_id)
        except ValueError:
            raise InvalidInput(
                f"Last-Event-ID {last_event_id[:40]!r} is not an event id of this server "
                "(an LSN, or LSN.n)",
                suggestion="Send the `id:` of the last event you received, or omit the header.",
                example="Last-Event-ID: 42",
            ) from None
    if since_lsn is not None:
        text = since_lsn.strip()
        if not text.isdigit() or len(text) > 19:
            raise InvalidInput(
                f"since_lsn must be an LSN (a whole number, 0 or more), got {since_lsn[:40]!r}",
                suggestion="Pass the lsn of the last event you processed; 0 replays what the log holds.",
                example="?since_lsn=42",
            )
        return int(text), LAST_SEQ
    return None


def router(service: EngramService, space: SpaceResolver) -> APIRouter:
    r = APIRouter(prefix="/api/v1/stream", tags=["streams"])
    settings = service.settings

    def make(stream: str) -> Any:
        allowed = STREAMS[stream]

        async def handler(
            request: Request,
            types: str | None = Query(
                None,
                description="Comma-separated event types to deliver, from: "
                + ", ".join(allowed)
                + ". Default: all of them.",
            ),
            min_importance: float | None = Query(
                None,
                ge=0.0,
                le=1.0,
                description=("Only events carrying an importance at or above this (episodes)."),
            ),
            min_confidence: float | None = Query(
                None, ge=0.0, le=1.0, description=("Only events carrying a confidence at or above this.")
            ),
            since_lsn: str | None = Query(
                None, description="Resume: replay the logged events after this LSN, then go live "
                "(`Last-Event-ID` wins if both are sent)."),
        ) -> EventStreamResponse:
            wanted = _parse_types(types, allowed, stream)
            since = resume_point(request.headers.get("last-event-id"), since_lsn)
            sid = space(request)
            peer = request.client.host if request.client else None
            sub = service.subscribe(sid, wanted, settings.subscriber_queue_depth, client=client_key(peer),
                                    since=since)
            # A revoked or expired key ends its open streams at once, with an `end` event saying why.
            who = principal_of(request.scope)
            unwatch = service.auth.watch(who, sub.close)
            gone = service.auth.still_valid(who)  # revoked between the check and the watch
            if gone is not None:
                sub.close(f"API key {who.key_id} was {gone}")
            return EventStreamResponse(
                sub,
                space_id=sid,
                stream=stream,
                heartbeat=settings.stream_heartbeat_seconds,
                accept=EventFilter(min_importance, min_confidence),
                metrics=service.metrics,
                on_end=unwatch,
            )

        handler.__name__ = f"stream_{stream}"
        return handler

    for stream in STREAMS:
        r.add_api_route(
            f"/{stream}",
            make(stream),
            methods=["GET"],
            response_class=EventStreamResponse,
            status_code=200,
            summary=f"Stream the {stream} events of one space (SSE)",
            description=_SSE_DOC,
            responses={
                200: {
                    "description": "An SSE stream; ends when the server ends it.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            },
            openapi_extra={"parameters": SPACE_PARAMETERS},
        )
    return r
