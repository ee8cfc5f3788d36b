"""REST application factory (placeholder until the REST adapter lands)."""

from __future__ import annotations

from fastapi import FastAPI

from ...service import EngramService


def create_app(service: EngramService) -> FastAPI:
    app = FastAPI(title="Engram")
    app.state.service = service

    @app.get("/health/alive")
    async def alive() -> dict[str, str]:
        return {"status": "alive"}

    return app
