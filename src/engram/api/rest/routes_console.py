"""The web console at ``/console`` and the API docs at ``/docs``, from files inside the package.

Nothing here is loaded from the network, at build or at run time: the console is plain HTML, CSS
and ES modules in ``console/`` beside this file (no build step), and Swagger UI's bundle comes
from the pinned ``fastapi-offline`` package (its ``static/`` folder), so ``/docs`` works on a
machine without internet.

The files are public (access.py: ``OPEN``); everything they show comes from the API, with the key
the user entered, under the same rules as any client. Each answer carries a strict
Content-Security-Policy: scripts, styles and connections only from this server, no inline script
or style, and Trusted Types required, so no string can ever reach ``innerHTML`` (the console
renders memory content with ``textContent`` only). Only the files listed at start-up are served
(a fixed table, no path joins on request input).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ...service import EngramService

CONSOLE_DIR = Path(__file__).parent / "console"
SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"
#: The files of Swagger UI that /docs uses (the rest of that folder is never served).
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")

#: The console's policy: only this origin, no inline code, no HTML from strings (Trusted Types).
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)
#: Swagger UI sets inline styles and uses data: images; it still loads nothing from elsewhere.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Engram - API docs</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script>
</body>
</html>
"""

# Swagger UI's start-up, as a file (no inline script). validatorUrl null: no call to the online validator.
DOCS_INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  oauth2RedirectUrl: window.location.origin + "/docs/oauth2-redirect",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

OAUTH2_REDIRECT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Engram - OAuth2 redirect</title></head>
<body><p>Engram uses API keys (Authorization: Bearer), not OAuth2; there is nothing to do here.</p></body>
</html>
"""


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _asset(body: bytes, name: str) -> Asset:
    kind = _TYPES.get(Path(name).suffix, "application/octet-stream")
    return Asset(body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class Assets:
    """A fixed table of files, read on first use: ``name -> Asset``; names outside it are 404."""

    def __init__(self, files: dict[str, Path | bytes]) -> None:
        self._files = files
        self._cache: dict[str, Asset] = {}

    def names(self) -> list[str]:
        return sorted(self._files)

    def get(self, name: str) -> Asset | None:
        found = self._cache.get(name)
        if found is None:
            src = self._files.get(name)
            if src is None:
                return None
            found = _asset(src if isinstance(src, bytes) else src.read_bytes(), name)
            self._cache[name] = found
        return found


def console_files() -> dict[str, Path | bytes]:
    return {p.name: p for p in sorted(CONSOLE_DIR.iterdir()) if p.is_file() and p.suffix in _TYPES}


def _respond(request: Request, asset: Asset, csp: str) -> Response:
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


_ASSET_NAME = PathParam(..., max_length=100, description="A file of the console.")


def router(service: EngramService) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    console = Assets(console_files())
    # What the page needs before any key: whether to ask for one. Nothing else is public.
    config = _asset(json.dumps({"auth_required": service.auth.required}).encode(), "config.json")
    docs = Assets({
        **{name: SWAGGER_DIR / name for name in SWAGGER_FILES},
        "docs-init.js": DOCS_INIT_JS.encode(),
    })
    docs_page = _asset(DOCS_HTML.encode(), "docs.html")
    redirect_page = _asset(OAUTH2_REDIRECT_HTML.encode(), "redirect.html")
    index = console.get("index.html")
    if index is None:
        raise RuntimeError(f"the console's index.html is missing from {CONSOLE_DIR} (a broken install)")

    @r.get("/console")
    async def console_page(request: Request) -> Response:
        return _respond(request, index, CONSOLE_CSP)

    @r.get("/console/config.json")
    async def console_config(request: Request) -> Response:
        return _respond(request, config, CONSOLE_CSP)

    @r.get("/console/{name}")
    async def console_asset(request: Request, name: str = _ASSET_NAME) -> Response:
        asset = console.get(name)
        if asset is None:
            raise HTTPException(404)  # ROUTE_NOT_FOUND, like any unknown path
        return _respond(request, asset, CONSOLE_CSP)

    @r.get("/docs")
    async def docs_html(request: Request) -> Response:
        return _respond(request, docs_page, DOCS_CSP)

    @r.get("/docs/oauth2-redirect")
    async def docs_redirect(request: Request) -> Response:
        return _respond(request, redirect_page, DOCS_CSP)

    @r.get("/docs/assets/{name}")
    async def docs_asset(request: Request, name: str = _ASSET_NAME) -> Response:
        asset = docs.get(name)
        if asset is None:
            raise HTTPException(404)
        return _respond(request, asset, DOCS_CSP)

    return r
