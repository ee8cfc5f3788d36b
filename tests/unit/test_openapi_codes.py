"""The OpenAPI error codes of a route are derived from what the route is (access rule, parameters,
body), so a new route documents its codes without a hand-kept entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engram.api.rest import access, openapi
from engram.api.rest.app import create_app
from engram.auth.keys import Action
from engram.service import EngramService

BODY = {"requestBody": {"content": {}}}


def test_a_new_data_plane_route_gets_its_codes_from_its_shape() -> None:
    rule = access.Rule(Action.write, access.RESOLVED)
    assert openapi._errors_for("/api/v1/new", "post", dict(BODY), rule) == [
        "400", "401", "403", "404", "413", "415", "429", "500", "503"]


def test_an_open_route_without_body_has_no_auth_codes() -> None:
    assert openapi._errors_for("/new/alive", "get", {}, access.Rule(None, access.OPEN)) == ["400", "500"]


def test_an_admin_route_with_a_path_parameter() -> None:
    op = {"parameters": [{"name": "thing_id", "in": "path"}]}
    admin = access.Rule(Action.admin, access.NONE)
    assert openapi._errors_for("/api/v1/things/{thing_id}", "delete", op, admin) == [
        "400", "401", "403", "404", "429", "500"]


def test_the_served_document_uses_the_access_table(engine_settings: Callable[..., Any]) -> None:
    service = EngramService(engine_settings())
    try:
        doc = create_app(service).openapi()
    finally:
        service.close()
    paths = doc["paths"]
    assert "401" not in paths["/health/alive"]["get"]["responses"]  # open: no key needed
    assert {"401", "403", "429", "400"} <= set(paths["/health"]["get"]["responses"])
    backup = set(paths["/api/v1/spaces/{space_id}/backup"]["get"]["responses"])
    assert {"404", "503"} <= backup  # addresses a space by its path
    for ops in paths.values():
        for op in ops.values():
            assert "422" not in op["responses"] or op["responses"]["422"]["content"]
            assert "400" in op["responses"]  # every route: an unknown query parameter


def test_a_body_read_by_its_route_is_documented(engine_settings: Callable[..., Any]) -> None:
    """POST recall reads its body itself (encode.from_body): the document still names it Cue."""
    service = EngramService(engine_settings())
    try:
        doc = create_app(service).openapi()
    finally:
        service.close()
    body = doc["paths"]["/api/v1/memories/recall"]["post"]["requestBody"]
    assert body["required"] is True
    content = body["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/Cue"} and content["example"]
    schemas = doc["components"]["schemas"]
    assert {"embedding", "query", "rank", "filter"} <= set(schemas["Cue"]["properties"])
    refs = {v.split("/")[-1] for v in _refs(schemas["Cue"])}
    assert refs and refs <= set(schemas)  # RankMode, RecallMode, MemoryType: no dangling $ref
    assert {"413", "415"} <= set(doc["paths"]["/api/v1/memories/recall"]["post"]["responses"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
