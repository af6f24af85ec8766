"""The routes workers call: register, sync, send an attempt's outputs and log, leave.

An attempt's outputs are staged under its own folder and become its task's
outputs only when its report wins the task (the scheduler promotes them in
the transaction that records the win); an attempt that no longer holds its
task is refused (409), before and after it sends.

A registration is answered with a token bound to the new worker (see
:mod:`shoal.boss.tokens`): with it, a worker syncs as itself, sends for the
attempts it holds and says its own goodbye, and nothing else.

A sync records what its worker reports even when a side write fails (an
inline log the datastore cannot take): the failure becomes an event, and
the worker is not made to send the same report forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.auth import caller, own_worker
from shoal.boss.web import Context, json_response, path_id, read_json
from shoal.datastore.layout import log_path, staging_prefix
from shoal.exceptions import BadInput, DatastoreError, Fenced, NotFound

__all__ = ["worker_routes"]

log = logging.getLogger("shoal.boss")

# The longest a sync may be held open waiting for work.
MAX_WAIT = 30.0
# The longest reason a worker may give for leaving.
MAX_REASON = 2000


def worker_routes(ctx: Context) -> list[BaseRoute]:
    scheduler, datastore = ctx.scheduler, ctx.datastore
    machines, tokens = ctx.machines, ctx.tokens

    async def register(request: Request) -> Response:
        reg = p.Registration.from_dict(await read_json(request, ctx.limits.max_body))
        answer = scheduler.register(reg)
        answer.token = tokens.issue_for_worker(answer.worker_id, reg.name, caller(request))
        ctx.changed()
        log.info("worker registered", extra={"event": "worker_registered", "worker": reg.name})
        return json_response(answer.to_dict())

    async def goodbye(request: Request) -> Response:
        worker_id = path_id(request, "worker")
        own_worker(request, worker_id)
        reason = request.query_params.get("reason", "")[:MAX_REASON]
        scheduler.worker_stopped(worker_id, reason)
        tokens.revoke_worker(worker_id)
        ctx.workforce.gone(worker_id)
        log.info(
            "worker stopped",
            extra={"event": "worker_stopped", "worker_id": worker_id, "reason": reason},
        )
        ctx.changed(work=True)
        return json_response({"ok": True})

    def store_inline_logs(req: p.SyncRequest) -> None:
        """Write the small logs that travel in the sync; one that cannot be written is noted.

        Only for attempts handed to the syncing worker, and where the
        database (not the report) says they belong: a worker cannot write
        over another's log, nor anywhere else.
        """
        logged = [r.attempt_id for r in req.finished if r.log]
        own = scheduler.attempts_of(req.worker_id, logged)
        for report in req.finished:
            if not report.log:
                continue
            if report.attempt_id not in own:
                report.log = None  # its report is dropped too (another worker's attempt)
                continue
            # Small logs travel inline; they land where large ones are uploaded.
            run_id, task = own[report.attempt_id]
            path = log_path(run_id, task, report.attempt_id)
            try:
                datastore.write_bytes(path, report.log.encode())
            except DatastoreError as e:
                ctx.health.failed("datastore", str(e))
                report.log = None  # the report is recorded all the same, without its log
                scheduler.note(
                    "log_lost",
                    f"the log of attempt {report.attempt_id} was not stored: {e}",
                    attempt_id=report.attempt_id,
                    run_id=report.run_id or None,
                )

    async def sync(request: Request) -> Response:
        req = p.SyncRequest.from_dict(await read_json(request, ctx.limits.max_body))
        own_worker(request, req.worker_id)
        order = ctx.workforce.heard(req.worker_id, req.usage, time.time())
        if order is not None:
            req.free_slots = 0  # asked to drain or stop: no new work
        store_inline_logs(req)
        # Take the waiter before looking for work, so that work appearing
        # between the look and the wait still wakes this request.
        waiter = ctx.signal.waiter()
        started = time.perf_counter()
        outcome = await ctx.in_pool(lambda: scheduler.sync(req))
        ctx.health.recovered("database")
        ctx.metrics.syncs.inc()
        ctx.metrics.sync_seconds.observe(time.perf_counter() - started)
        staged = [r.attempt_id for r in req.finished if r.outputs or r.outcome != p.SUCCEEDED]
        if staged:
            # Promoted, lost to another attempt, or failed: nothing is left to stage.
            datastore.discard_staged(staged)
        for report in req.finished:
            if report.outcome == p.SUCCEEDED and report.ended >= report.started > 0:
                ctx.metrics.task_seconds.observe(report.ended - report.started)
        if req.finished or outcome.response.assignments:
            ctx.feed.bump()
        if outcome.made_ready:
            ctx.signal.notify()
            waiter = ctx.signal.waiter()
        for run_id in outcome.finished_runs:
            log.info("run ended", extra={"event": "run_ended", "run": run_id})
            ctx.feed.runs_ended.set()
        response = outcome.response
        if order is not None:
            ctx.workforce.tell(req.worker_id, req.running, response)
        elif (
            not response.assignments and not response.cancel and req.free_slots > 0 and req.wait > 0
        ):
            response = await wait_for_work(request, req, waiter) or response
        return json_response(response.to_dict())

    async def wait_for_work(
        request: Request, req: p.SyncRequest, waiter: asyncio.Event
    ) -> p.SyncResponse | None:
        """Hold an idle worker's sync until work appears or its wait is over.

        The end of the token it came with (its worker gone, it or its
        parent revoked) ends the wait: no work is handed to it.
        """
        credential = caller(request)
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + min(req.wait, MAX_WAIT)
        idle = p.SyncRequest(
            worker_id=req.worker_id, running=req.running, free_slots=req.free_slots
        )
        while (left := deadline - loop.time()) > 0:
            # Look again when woken, and every second regardless: a
            # retried task's back-off may have run out meanwhile.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waiter.wait(), min(left, 1.0))
            if await request.is_disconnected() or tokens.ended(credential):
                return None
            if req.worker_id in ctx.workforce.orders:
                # Asked to drain or stop while it waited: it hears so now.
                return ctx.workforce.tell(req.worker_id, req.running, p.SyncResponse())
            waiter = ctx.signal.waiter()
            if req.max_seconds is not None:
                # The worker's time ran on while it waited here.
                idle.max_seconds = req.max_seconds - (loop.time() - began)
            response = (await ctx.in_pool(lambda: scheduler.sync(idle))).response
            if response.assignments or response.cancel:
                ctx.feed.bump()
                return response
        return None

    async def attempt_output(request: Request) -> Response:
        attempt_id = path_id(request, "attempt")
        name = request.path_params["path"]
        scheduler.attempt_writing(attempt_id, outputs=True, worker=caller(request).worker_id)
        size = await datastore.write_stream(
            staging_prefix(attempt_id) + name, request.stream(), ctx.limits.upload_idle
        )
        try:
            # Fenced while it was sending: what it sent will never be seen.
            scheduler.attempt_writing(attempt_id, outputs=True)
        except Fenced:
            datastore.discard_staged([attempt_id])
            raise
        ctx.health.recovered("datastore")
        return json_response({"size": size})

    async def attempt_log(request: Request) -> Response:
        attempt_id = path_id(request, "attempt")
        run_id, task = scheduler.attempt_writing(
            attempt_id, outputs=False, worker=caller(request).worker_id
        )
        size = await datastore.write_stream(
            log_path(run_id, task, attempt_id), request.stream(), ctx.limits.upload_idle
        )
        ctx.health.recovered("datastore")
        return json_response({"size": size})

    async def lost(request: Request) -> Response:
        # A launcher (admin token) saw the machine go: a preempted VM says no goodbye.
        worker_id = path_id(request, "worker")
        reason = request.query_params.get("reason", "")[:MAX_REASON] or "its machine is gone"
        await ctx.in_pool(lambda: scheduler.worker_lost(worker_id, reason))
        tokens.revoke_worker(worker_id)
        ctx.workforce.gone(worker_id)
        ctx.changed(work=True)
        return json_response({"ok": True})

    async def workers(request: Request) -> Response:
        # With the machine each one runs on, where shoal started it, and
        # what each said of its machine's load and was asked to do.
        found = machines.name_workers(scheduler.workers_view())
        for w in found:
            w["usage"] = ctx.workforce.usage.get(w["id"])
            w["order"] = ctx.workforce.orders.get(w["id"])
        return json_response(found)

    def give_order(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def give(request: Request) -> Response:
            worker = _active_worker(scheduler.workers_view(), request.path_params["worker"])
            ctx.workforce.give(worker["id"], kind)
            log.info(
                f"worker asked to {kind}",
                extra={"event": f"worker_{kind}", "worker": worker["name"]},
            )
            ctx.changed(work=True)  # wakes its long-polling sync, which hears it
            return json_response({"worker": worker["id"], "name": worker["name"], "order": kind})

        return give

    async def bosses(request: Request) -> Response:
        return json_response(scheduler.bosses_view())

    v = p.API_PREFIX
    return [
        Route(f"{v}/workers", register, methods=["POST"]),
        Route(f"{v}/workers", workers, methods=["GET"]),
        Route(f"{v}/workers/{{worker}}", goodbye, methods=["DELETE"]),
        Route(f"{v}/workers/{{worker}}/lost", lost, methods=["POST"]),
        Route(f"{v}/workers/{{worker}}/drain", give_order("drain"), methods=["POST"]),
        Route(f"{v}/workers/{{worker}}/stop", give_order("stop"), methods=["POST"]),
        Route(f"{v}/sync", sync, methods=["POST"]),
        Route(f"{v}/attempts/{{attempt}}/outputs/{{path:path}}", attempt_output, methods=["PUT"]),
        Route(f"{v}/attempts/{{attempt}}/log", attempt_log, methods=["PUT"]),
        Route(f"{v}/bosses", bosses, methods=["GET"]),
    ]


def _active_worker(workers: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The connected worker a path names: by id, or by name (the latest of that name)."""
    active = [w for w in workers if w["state"] == "active"]
    if ref.isascii() and ref.isdigit():
        found = [w for w in workers if w["id"] == int(ref)]
    else:
        found = [w for w in workers if w["name"] == ref]
    if not found:
        names = ", ".join(w["name"] for w in active[:10]) or "none is connected"
        raise NotFound(f"no worker '{ref[:80]}' (connected: {names})")
    worker = max(found, key=lambda w: w["id"])
    if worker["state"] != "active":
        raise BadInput(
            f"worker '{worker['name']}' is {worker['state']}: only a connected one can be told"
        )
    return worker
