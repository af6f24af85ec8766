"""What a browser reads: the dashboard's files, its change feed, /metrics, the schema."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.openapi import openapi_schema
from shoal.boss.web import Context, json_response
from shoal.exceptions import NotFound

__all__ = ["page_routes"]

DASHBOARD = Path(__file__).with_name("dashboard")


def page_routes(ctx: Context) -> list[BaseRoute]:
    schema = openapi_schema()

    async def stream(request: Request) -> Response:
        async def changes() -> Any:
            seen = -1
            while not ctx.feed.closed and not await request.is_disconnected():
                now = await ctx.feed.wait(seen, 15.0)
                if now != seen:
                    seen = now
                    yield f"data: {now}\n\n"
                    await asyncio.sleep(0.3)  # at most about three updates a second
                else:
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            changes(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def metrics_page(request: Request) -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    async def index(request: Request) -> Response:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "style.css"):
            raise NotFound(f"no file '{name[:80]}'")
        return FileResponse(DASHBOARD / name, headers={"Cache-Control": "no-store"})

    async def openapi(request: Request) -> Response:
        return json_response(schema)

    return [
        Route(f"{p.API_PREFIX}/stream", stream, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
