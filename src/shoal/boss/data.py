"""The datastore's routes: list, download, upload (streamed, renamed into place).

Task outputs (``runs/``) are written only by the attempts that made them
(``PUT /v1/attempts/<id>/outputs/<file>``); this route refuses to write there,
so that nothing replaces a task's outputs after its report won.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.web import Context, json_response
from shoal.exceptions import BadInput

__all__ = ["data_routes"]

OUTPUTS = "runs/"


def data_routes(ctx: Context) -> list[BaseRoute]:
    datastore = ctx.datastore

    async def data_get(request: Request) -> Response:
        return FileResponse(datastore.open_path(request.path_params["path"]))

    async def data_put(request: Request) -> Response:
        path = request.path_params["path"]
        if path.startswith((OUTPUTS, p.STAGING)):
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
