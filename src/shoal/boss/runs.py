"""The routes over runs and their tasks: submit, read, cancel, retry, logs, results.

A submission may carry an ``Idempotency-Key`` header: sent again with the
same key (a client that lost the answer), it returns the run the first one
made instead of making another.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.web import Context, json_response, query_int, read_json, run_id
from shoal.datastore.base import Datastore
from shoal.datastore.layout import bundle_path
from shoal.datastore.logtail import attempt_log_path, read_log
from shoal.exceptions import BadInput
from shoal.memory import gc_paused
from shoal.spec import RunSpec, spec_from_dict

__all__ = ["run_routes"]

log = logging.getLogger("shoal.boss")

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{8,64}")
BUNDLE_DIGEST = re.compile(r"[0-9a-f]{16,64}")
# Task states a filter may name.
STATES = frozenset(p.TASK_STATES)


def _states(request: Request) -> list[str] | None:
    states = [s for s in request.query_params.getlist("state") if s]
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise BadInput(f"no task state '{unknown[0][:40]}': use one of {', '.join(sorted(STATES))}")
    return states or None


def run_routes(ctx: Context) -> list[BaseRoute]:
    scheduler, datastore = ctx.scheduler, ctx.datastore

    async def submit(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise BadInput("Idempotency-Key must be 8 to 64 letters, digits, '_', '.', ':' or '-'")
        with gc_paused():  # a run of 100,000 tasks is millions of objects
            body = await read_json(request, ctx.limits.max_body, flat=False)
            spec, bundle, reuse = _submission(body, datastore)
            del body  # only the checked run from here on
            rid = scheduler.submit(spec, bundle=bundle, reuse=reuse, key=key)
            del spec
        ctx.changed(work=True)
        log.info("run submitted", extra={"event": "run_submitted", "run": rid})
        return json_response({"run": rid})

    async def runs(request: Request) -> Response:
        return json_response(scheduler.runs_view())

    async def run(request: Request) -> Response:
        return json_response(ctx.health.warn(scheduler.run_view(run_id(ctx, request))))

    async def tasks(request: Request) -> Response:
        return json_response(scheduler.tasks_view(run_id(ctx, request), _states(request)))

    async def task(request: Request) -> Response:
        return json_response(scheduler.task_view(run_id(ctx, request), request.path_params["task"]))

    async def task_log(request: Request) -> Response:
        """The log of a task's latest attempt (or ?attempt=N): whole, from ?offset=, or its last ?tail= lines.

        Streamed, however long (a worker keeps each attempt's log within its
        --log-cap, and says in the log what it cut). Headers name the attempt,
        whether it still runs, where the text served begins and the log's size.
        """
        offset = query_int(request, "offset", 0, 0, 2**62)
        tail = query_int(request, "tail", -1, -1, 2**31)
        rid = run_id(ctx, request)
        view = scheduler.task_view(rid, request.path_params["task"])
        attempt, path = attempt_log_path(rid, view, query_int(request, "attempt", 0, 0, 2**31))
        headers = {
            "X-Shoal-Attempt": str(attempt["number"]),
            "X-Shoal-Running": str(attempt["state"] == "running").lower(),
            "X-Shoal-Offset": "0",
            "X-Shoal-Log-Size": "0",
        }
        stored = read_log(datastore, path, tail if tail >= 0 else None, offset)
        if stored is None:
            return PlainTextResponse("", headers=headers)
        headers.update({"X-Shoal-Offset": str(stored.start), "X-Shoal-Log-Size": str(stored.size)})
        return StreamingResponse(
            stored.chunks, media_type="text/plain; charset=utf-8", headers=headers
        )

    async def results(request: Request) -> Response:
        return json_response(scheduler.results(run_id(ctx, request)))

    async def cancel(request: Request) -> Response:
        rid = run_id(ctx, request)
        n = scheduler.cancel(rid)
        log.info("run cancelled", extra={"event": "run_cancelled", "run": rid, "tasks": n})
        ctx.changed(work=True)
        return json_response({"cancelled": n})

    async def retry(request: Request) -> Response:
        rid = run_id(ctx, request)
        n = scheduler.retry(rid)
        log.info("run retried", extra={"event": "run_retried", "run": rid, "tasks": n})
        ctx.changed(work=True)
        return json_response({"retried": n})

    async def cancel_task(request: Request) -> Response:
        rid, name = run_id(ctx, request), request.path_params["task"]
        n = await ctx.in_pool(lambda: scheduler.cancel_task(rid, name))
        log.info("task cancelled", extra={"event": "task_cancelled", "run": rid, "task": name})
        ctx.changed(work=True)
        return json_response({"cancelled": n})

    async def retry_task(request: Request) -> Response:
        rid, name = run_id(ctx, request), request.path_params["task"]
        n = await ctx.in_pool(lambda: scheduler.retry_task(rid, name))
        log.info("task retried", extra={"event": "task_restarted", "run": rid, "task": name})
        ctx.changed(work=True)
        return json_response({"retried": n})

    async def task_links(request: Request) -> Response:
        return json_response(
            scheduler.task_links(run_id(ctx, request), request.path_params["task"])
        )

    async def events(request: Request) -> Response:
        ref = request.query_params.get("run")
        rid = scheduler.resolve_run(ref) if ref else None
        return json_response(scheduler.events_view(rid))

    async def tasks_page(request: Request) -> Response:
        q = request.query_params
        sort = q.get("sort", "id")
        if sort not in ("id", "duration", "-duration", "name"):
            raise BadInput(f"?sort= takes id, duration, -duration or name, not '{sort[:40]}'")
        page = scheduler.tasks_page(
            run_id(ctx, request),
            states=_states(request),
            search=q.get("q") or None,
            sort=sort,
            limit=query_int(request, "limit", 200, 1, 1000),
            offset=query_int(request, "offset", 0, 0, 2**62),
        )
        return json_response(page)

    async def graph(request: Request) -> Response:
        return json_response(scheduler.graph(run_id(ctx, request)))

    async def throughput(request: Request) -> Response:
        return json_response(scheduler.throughput(run_id(ctx, request)))

    async def task_events(request: Request) -> Response:
        return json_response(
            scheduler.task_events(run_id(ctx, request), request.path_params["task"])
        )

    v = p.API_PREFIX
    return [
        Route(f"{v}/runs", submit, methods=["POST"]),
        Route(f"{v}/runs", runs, methods=["GET"]),
        Route(f"{v}/runs/{{run}}", run, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks", tasks, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}", task, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/log", task_log, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/events", task_events, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/links", task_links, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/cancel", cancel_task, methods=["POST"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/retry", retry_task, methods=["POST"]),
        Route(f"{v}/runs/{{run}}/results", results, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/cancel", cancel, methods=["POST"]),
        Route(f"{v}/runs/{{run}}/retry", retry, methods=["POST"]),
        Route(f"{v}/runs/{{run}}/page", tasks_page, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/graph", graph, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/throughput", throughput, methods=["GET"]),
        Route(f"{v}/events", events, methods=["GET"]),
    ]


def _submission(body: dict[str, Any], datastore: Datastore) -> tuple[RunSpec, str | None, bool]:
    """The checked run a submission asks for, its bundle's hash, and whether it may reuse results."""
    spec_data = body.get("spec")
    if not isinstance(spec_data, dict):
        raise BadInput("the request needs a 'spec' object")
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        raise BadInput("'source' must be a string (the task file's name)")
    spec = spec_from_dict(spec_data, path=source or "<submitted>")
    bundle = body.get("bundle")
    if bundle is not None and not (isinstance(bundle, str) and BUNDLE_DIGEST.fullmatch(bundle)):
        raise BadInput("'bundle' must be a bundle's hash (hexadecimal) or null")
    if bundle is not None and not datastore.exists(bundle_path(bundle)):
        raise BadInput(f"bundle {bundle} is not in the datastore: upload it first")
    if source:
        spec = replace(spec, source=source)
    return spec, bundle, body.get("reuse", False) is True
