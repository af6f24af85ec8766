"""The routes launchers call: record the machines they start, and read them back.

``shoal machines`` lists them; the keeper of ``shoal up`` records its
machines here (before it asks a provider for them, and as they go) and
reads whether their agents registered, and what waits for a worker
(``/demand``), to size its pools to the queue. Who may call: the admin
token (as every route but the workers' own).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.web import Context, json_response, read_json
from shoal.exceptions import BadInput

__all__ = ["machine_routes"]


def machine_routes(ctx: Context) -> list[BaseRoute]:
    machines = ctx.machines

    async def listed(request: Request) -> Response:
        owner = request.query_params.get("owner")
        return json_response(machines.view(owner))

    async def record(request: Request) -> Response:
        body = await read_json(request, ctx.limits.max_body)
        listed = body.get("machines")
        if not isinstance(listed, list):
            raise BadInput("the body must be {'owner': NAME, 'machines': [...]}")
        owner = body.get("owner")
        if not isinstance(owner, str):
            raise BadInput("'owner' must be a string: who records these machines")
        count = machines.record(owner, listed)
        ctx.changed()
        return json_response({"recorded": count})

    async def demand(request: Request) -> Response:
        return json_response(await ctx.in_pool(ctx.scheduler.demand))

    v = p.API_PREFIX
    return [
        Route(f"{v}/demand", demand, methods=["GET"]),
        Route(f"{v}/machines", listed, methods=["GET"]),
        Route(f"{v}/machines", record, methods=["PUT"]),
    ]
