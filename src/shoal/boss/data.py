"""The datastore's routes: list, download (streamed), upload (streamed, put in place whole).

Task outputs (``runs/``) are written only by the attempts that made them
(``PUT /v1/attempts/<id>/outputs/<file>``); this route refuses to write there,
so that nothing replaces a task's outputs after its report won.

A worker's own token reads only what the attempts it runs need: their
inputs, their dependencies' outputs and their run's bundle.
"""

from __future__ import annotations

import mimetypes

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.auth import caller
from shoal.boss.web import Context, json_response
from shoal.datastore.layout import OUTPUTS, STAGING
from shoal.exceptions import BadInput, Refused

__all__ = ["data_routes"]


def data_routes(ctx: Context) -> list[BaseRoute]:
    datastore = ctx.datastore

    async def data_get(request: Request) -> Response:
        path = request.path_params["path"]
        worker = caller(request).worker_id
        if worker is not None and not ctx.tokens.may_read(worker, path):
            raise Refused(f"forbidden: worker {worker} runs no attempt that needs '{path[:200]}'")
        size = datastore.size(path)  # NotFound before the answer starts
        kind, _ = mimetypes.guess_type(path)
        return StreamingResponse(
            datastore.chunks(path),
            media_type=kind or "application/octet-stream",
            headers={"Content-Length": str(size)},
        )

    async def data_put(request: Request) -> Response:
        path = request.path_params["path"]
        if path.startswith((OUTPUTS, STAGING)):
            raise BadInput(
                f"'{path[:80]}' is where tasks' outputs live: only the attempt that made "
                "an output writes it"
            )
        size = await datastore.write_stream(path, request.stream(), ctx.limits.upload_idle)
        ctx.health.recovered("datastore")
        return json_response({"size": size})

    async def data_list(request: Request) -> Response:
        return json_response(datastore.listing(request.query_params.get("prefix", "")))

    v = p.API_PREFIX
    return [
        Route(f"{v}/data", data_list, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_get, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_put, methods=["PUT"]),
    ]
