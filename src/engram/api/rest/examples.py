"""A correct request for every route: the ``example`` of its error envelopes.

Kept in one table so an error always shows the caller a request that works
for the route they called, and so the OpenAPI request bodies carry the same
examples.
"""

from __future__ import annotations

import json
from typing import Any

SPACE = "X-Memory-Space: agent-7"

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/spaces"): {"id": "agent-7"},
    ("POST", "/api/v1/spaces/{space_id}/reembed"): {"provider": "local", "model": "all-MiniLM-L6-v2"},
    ("POST", "/api/v1/memories/remember"): {
        "content": "the espresso machine is on the third floor",
        "confidence": 0.9,
        "tags": ["office"],
    },
    ("POST", "/api/v1/episodes/remember"): {
        "when": "2026-05-01T09:30:00Z",
        "what": "met Ada at the espresso machine",
        "where_location": "third floor",
        "who": ["Ada"],
        "importance": 0.7,
    },
    ("POST", "/api/v1/memories/recall"): {"query": "where is the coffee", "max_results": 5, "mode": "hybrid"},
    ("POST", "/api/v1/memories/recognize"): {"content": "the espresso machine is on the third floor"},
    ("POST", "/api/v1/memories/associate"): {"source_id": "m-1", "target_id": "m-2", "strength": 0.6},
    ("POST", "/api/v1/episodes/reminisce"): {"topic": "coffee", "limit": 20},
    ("POST", "/api/v1/consolidate"): {"min_cluster": 2},
    ("POST", "/api/v1/complete"): {"what": "met Ada", "where_location": "third floor"},
    ("POST", "/api/v1/echo"): {"hello": "world"},
    ("POST", "/api/v1/memories/delete"): {"filter": {"user": "ada", "priority": {"$lt": 2}},
                                          "mode": "delete"},
    ("POST", "/api/v1/keys"): {"name": "agent-7", "role": "writer", "spaces": ["agent-7"]},
    ("POST", "/api/v1/memories/batch"): {
        "memories": [
            {"id": "m-1", "content": "the espresso machine is on the third floor", "tags": ["office"]},
            {"id": "m-2", "content": "Ada takes her coffee black", "confidence": 0.8},
        ],
    },
    ("PUT", "/api/v1/memories/{memory_id:path}"): {
        "content": "the espresso machine moved to the fourth floor",
        "tags": ["office"],
        "metadata": {"source": "facilities"},
    },
    ("PATCH", "/api/v1/memories/{memory_id:path}"): {
        "content": "the espresso machine moved to the fourth floor",
    },
}

QUERIES: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/spaces"): "GET /api/v1/spaces?limit=50",
    ("GET", "/api/v1/memories"): "GET /api/v1/memories?limit=50  (" + SPACE + ")",
    ("GET", "/api/v1/memories/recall"): "GET /api/v1/memories/recall?query=coffee&max_results=5  ("
    + SPACE
    + ")",
    ("GET", "/api/v1/episodes/reminisce"): "GET /api/v1/episodes/reminisce?topic=coffee&limit=20  ("
    + SPACE
    + ")",
    ("DELETE", "/api/v1/memories/{memory_id:path}"): "DELETE /api/v1/memories/m-1?mode=suppress  ("
    + SPACE
    + ")",
    ("GET", "/api/v1/consolidations"): "GET /api/v1/consolidations?limit=20  (" + SPACE + ")",
    (
        "GET",
        "/api/v1/stream/activities",
    ): "GET /api/v1/stream/activities?types=stored,recalled&min_confidence=0.5  (" + SPACE + ")",
    ("GET", "/api/v1/stream/memories"): "GET /api/v1/stream/memories?types=stored  (" + SPACE + ")",
    ("GET", "/api/v1/stream/consolidation"): "GET /api/v1/stream/consolidation  (" + SPACE + ")",
}


def example_for(method: str, path: str) -> str:
    body = BODIES.get((method, path))
    # Space administration names the space in the path and sends no X-Memory-Space header.
    admin = path.startswith("/api/v1/spaces")
    where = (path.replace("{space_id}", "agent-7").replace("{memory_id:path}", "m-1")
             + ("" if admin else f"  ({SPACE})"))
    if body is not None:
        return f"{method} {where}  {json.dumps(body)}"
    return QUERIES.get((method, path), f"{method} {where}")


def body_example(method: str, path: str) -> dict[str, Any]:
    """``openapi_extra`` fragment putting the example on the request body."""
    body = BODIES[(method, path)]
    return {"requestBody": {"content": {"application/json": {"example": body}}}}
