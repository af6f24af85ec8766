"""The boss's HTTP API over the scheduler and the datastore.

Every request carries the boss's token (``Authorization: Bearer TOKEN``);
only ``/openapi.json`` is open. Handlers call the scheduler directly on the
event loop: each call is one short database transaction, and a single writer
is what SQLite wants anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal import protocol as p
from shoal.boss.datastore import LocalDatastore
from shoal.boss.metrics import Metrics
from shoal.exceptions import BadInput, NotFound, ShoalError, StoreError
from shoal.logtail import read_from, start_of
from shoal.memory import gc_paused
from shoal.scheduler import Scheduler
from shoal.spec import spec_from_dict

__all__ = ["WorkSignal", "create_app"]

log = logging.getLogger("shoal.boss")

# The longest a sync may be held open waiting for work.
MAX_WAIT = 30.0


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


class WorkSignal:
    """Wakes long-polling syncs when tasks become ready or runs change."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def waiter(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None


_T = TypeVar("_T")

COOKIE = "shoal_token"


class TokenGuard:
    """Refuses every request without the boss's token.

    The token comes in ``Authorization: Bearer TOKEN`` (workers, the command
    line) or in the cookie the dashboard's login form sets. A browser that
    has neither is sent to the login form; anything else gets 401.
    """

    OPEN_PATHS = frozenset({"/openapi.json", "/login", "/static/style.css"})

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.expected = f"Bearer {token}".encode()

    def allowed(self, scope: Scope) -> bool:
        cookie = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                return hmac.compare_digest(value, self.expected)
            if key == b"cookie":
                cookie = value
        for part in cookie.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode():
                return hmac.compare_digest(value, self.token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] not in self.OPEN_PATHS
            and not self.allowed(scope)
        ):
            response: Response
            if scope["method"] == "GET" and not scope["path"].startswith(("/v1/", "/metrics")):
                response = RedirectResponse("/login", status_code=303)
            else:
                response = _json(
                    {
                        "error": "missing or wrong token: pass the boss's token "
                        "(--token, SHOAL_TOKEN, or the state folder's boss.json)"
                    },
                    401,
                )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ChangeFeed:
    """Counts state changes; dashboards follow it through server-sent events."""

    def __init__(self) -> None:
        self.generation = 0
        self._event: asyncio.Event | None = None

    def bump(self) -> None:
        self.generation += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, seen: int, timeout: float) -> int:
        if self.generation == seen:
            if self._event is None:
                self._event = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        return self.generation


def create_app(
    scheduler: Scheduler,
    datastore: LocalDatastore,
    token: str,
    signal: WorkSignal | None = None,
    feed: ChangeFeed | None = None,
    threads: int = 0,
) -> ASGIApp:
    """The boss's ASGI application; ``signal`` wakes its long-polls, ``feed`` its dashboards.

    With ``threads``, syncs run on that many threads, so that one sync's
    database round trips overlap another's (PostgreSQL: each sync is some
    twenty of them). Without, they run one at a time on the event loop,
    which is fastest when the database serializes writers anyway (SQLite).
    """
    signal = signal or WorkSignal()
    feed = feed or ChangeFeed()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="shoal-sync") if threads else None

    async def in_pool(call: Callable[[], _T]) -> _T:
        if pool is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    metrics = Metrics(scheduler)
    dashboard = Path(__file__).with_name("dashboard")
    schemas = SchemaGenerator(
        {"openapi": "3.0.0", "info": {"title": "shoal boss", "version": str(p.PROTOCOL_VERSION)}}
    )

    def run_id(request: Request) -> int:
        ref = request.path_params["run"]
        return scheduler.resolve_run(None if ref == "latest" else ref)

    async def register(request: Request) -> Response:
        """
        summary: Register a worker.
        requestBody:
          description: Registration (name, host, slots, labels, pid, python, version).
        responses:
          200:
            description: Registered (worker_id, lease_seconds, heartbeat_seconds).
        """
        reg = p.Registration.from_dict(await _body(request))
        answer = scheduler.register(reg)
        feed.bump()
        log.info("worker registered", extra={"event": "worker_registered", "worker": reg.name})
        return _json(answer.to_dict())

    async def goodbye(request: Request) -> Response:
        """
        summary: A worker leaves; it takes no more work.
        parameters:
          - {name: reason, in: query, required: false, schema: {type: string},
             description: "why it stopped by itself (a bundle's setup failed, say)"}
        responses:
          200:
            description: Acknowledged.
        """
        worker_id = int(request.path_params["worker"])
        reason = request.query_params.get("reason", "")[:2000]
        scheduler.worker_stopped(worker_id, reason)
        feed.bump()
        log.info(
            "worker stopped",
            extra={"event": "worker_stopped", "worker_id": worker_id, "reason": reason},
        )
        signal.notify()
        return _json({"ok": True})

    async def sync(request: Request) -> Response:
        """
        summary: One worker round trip.
        description: >
          Reports finished attempts, renews the leases of running ones and asks
          for as many new attempts as the worker has free slots. When nothing
          is ready, the request is held up to `wait` seconds for work to appear.
        requestBody:
          description: SyncRequest (worker_id, finished, running, free_slots, wait).
        responses:
          200:
            description: SyncResponse (assignments, cancel, stop).
        """
        req = p.SyncRequest.from_dict(await _body(request))
        for report in req.finished:
            if report.log:
                # Small logs travel inline; they land where large ones are uploaded.
                path = p.log_path(report.run_id, report.task, report.attempt_id)
                datastore.write_bytes(path, report.log.encode())
        # Take the waiter before looking for work, so that work appearing
        # between the look and the wait still wakes this request.
        waiter = signal.waiter()
        started = time.perf_counter()
        outcome = await in_pool(lambda: scheduler.sync(req))
        metrics.syncs.inc()
        metrics.sync_seconds.observe(time.perf_counter() - started)
        for report in req.finished:
            if report.outcome == p.SUCCEEDED and report.ended >= report.started > 0:
                metrics.task_seconds.observe(report.ended - report.started)
        if req.finished or outcome.response.assignments:
            feed.bump()
        if outcome.made_ready:
            signal.notify()
            waiter = signal.waiter()
        for run_id in outcome.finished_runs:
            log.info("run ended", extra={"event": "run_ended", "run": run_id})
        response = outcome.response
        if not response.assignments and not response.cancel and req.free_slots > 0 and req.wait > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + min(req.wait, MAX_WAIT)
            idle = p.SyncRequest(
                worker_id=req.worker_id, running=req.running, free_slots=req.free_slots
            )
            while (left := deadline - loop.time()) > 0:
                # Look again when woken, and every second regardless: a
                # retried task's back-off may have run out meanwhile.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter.wait(), min(left, 1.0))
                if await request.is_disconnected():
                    break
                waiter = signal.waiter()
                response = (await in_pool(lambda: scheduler.sync(idle))).response
                if response.assignments or response.cancel:
                    feed.bump()
                    break
        return _json(response.to_dict())

    async def data_get(request: Request) -> Response:
        """
        summary: Download a file from the datastore (streamed).
        responses:
          200:
            description: The file's bytes.
        """
        path = request.path_params["path"]
        return FileResponse(datastore.open_path(path))

    async def data_put(request: Request) -> Response:
        """
        summary: Upload a file to the datastore (streamed to disk, renamed into place).
        responses:
          200:
            description: The stored size.
        """
        size = await datastore.write_stream(request.path_params["path"], request.stream())
        return _json({"size": size})

    async def data_list(request: Request) -> Response:
        """
        summary: List the files under a datastore folder.
        responses:
          200:
            description: A list of datastore paths.
        """
        return _json(datastore.listing(request.query_params.get("prefix", "")))

    async def submit(request: Request) -> Response:
        """
        summary: Submit a run.
        requestBody:
          description: "{spec: the run as the client expanded it, bundle: its hash or null}"
        responses:
          200:
            description: "{run: id}"
        """
        raw = await request.body()
        with gc_paused():  # a run of 100,000 tasks is millions of objects
            body = _parse_body(raw)
            spec_data = body.get("spec")
            if not isinstance(spec_data, dict):
                raise BadInput("the request needs a 'spec' object")
            spec = spec_from_dict(spec_data, path=str(body.get("source") or "<submitted>"))
            bundle = body.get("bundle")
            if bundle is not None and not datastore.exists(p.bundle_path(str(bundle))):
                raise BadInput(f"bundle {bundle} is not in the datastore: upload it first")
            if body.get("source"):
                spec = replace(spec, source=str(body["source"]))
            reuse = bool(body.get("reuse", False))
            del raw, body, spec_data  # only the checked run from here on
            rid = scheduler.submit(spec, bundle=bundle, reuse=reuse)
            del spec
        signal.notify()
        feed.bump()
        log.info("run submitted", extra={"event": "run_submitted", "run": rid})
        return _json({"run": rid})

    async def runs(request: Request) -> Response:
        """
        summary: List runs, newest first.
        responses:
          200:
            description: A list of runs with counts by state.
        """
        return _json(scheduler.runs_view())

    async def run(request: Request) -> Response:
        """
        summary: One run (id, name, or 'latest').
        responses:
          200:
            description: The run with counts by state.
        """
        return _json(scheduler.run_view(run_id(request)))

    async def tasks(request: Request) -> Response:
        """
        summary: A run's tasks, optionally filtered by ?state=.
        responses:
          200:
            description: A list of tasks.
        """
        states = [s for s in request.query_params.getlist("state") if s]
        return _json(scheduler.tasks_view(run_id(request), states or None))

    async def task(request: Request) -> Response:
        """
        summary: One task with all its attempts.
        responses:
          200:
            description: The task.
        """
        return _json(scheduler.task_view(run_id(request), request.path_params["task"]))

    async def task_log(request: Request) -> Response:
        """
        summary: The log of a task's latest attempt (or ?attempt=N), whole or from byte ?offset=N, or its last ?tail=N lines.
        description: >
          Streamed, however long (a worker keeps each attempt's log within its
          --log-cap, and says in the log what it cut). While the attempt runs,
          this is what its worker last sent (every few seconds). Headers:
          X-Shoal-Attempt names the attempt, X-Shoal-Running says whether it
          still runs, X-Shoal-Offset is the byte where the text served begins
          and X-Shoal-Log-Size the size of the whole log.
        parameters:
          - {name: attempt, in: query, required: false, schema: {type: integer, minimum: 1}}
          - {name: offset, in: query, required: false, schema: {type: integer, minimum: 0}}
          - {name: tail, in: query, required: false, schema: {type: integer, minimum: 0}}
        responses:
          200:
            description: The log text.
        """

        def whole_number(name: str) -> int | None:
            text = request.query_params.get(name)
            if not text:
                return None
            if not text.isdigit() or len(text) > 15:
                raise BadInput(f"{name} must be a whole number, not '{text[:40]}'")
            return int(text)

        offset = whole_number("offset") or 0
        tail = whole_number("tail")
        rid = run_id(request)
        view = scheduler.task_view(rid, request.path_params["task"])
        attempts = view["attempt_list"]
        wanted = request.query_params.get("attempt")
        if wanted:
            attempts = [a for a in attempts if str(a["number"]) == wanted]
        if not attempts:
            raise NotFound(f"task '{view['name']}' has no attempt yet")
        last = attempts[-1]
        path = last["log"] or p.log_path(rid, view["name"], last["id"])
        headers = {
            "X-Shoal-Attempt": str(last["number"]),
            "X-Shoal-Running": str(last["state"] == "running").lower(),
            "X-Shoal-Offset": "0",
            "X-Shoal-Log-Size": "0",
        }
        if not datastore.exists(path):
            return PlainTextResponse("", headers=headers)
        file = datastore.open_path(path)
        start, size = start_of(file, tail)
        if tail is None:
            start = min(offset, size)
        headers.update({"X-Shoal-Offset": str(start), "X-Shoal-Log-Size": str(size)})
        # Streamed: a log is as long as its worker's --log-cap allows.
        return StreamingResponse(
            read_from(file, start), media_type="text/plain; charset=utf-8", headers=headers
        )

    async def results(request: Request) -> Response:
        """
        summary: The results of a run's tasks, by task name.
        responses:
          200:
            description: An object mapping task name to result.
        """
        return _json(scheduler.results(run_id(request)))

    async def cancel(request: Request) -> Response:
        """
        summary: Cancel a run's unfinished tasks.
        responses:
          200:
            description: "{cancelled: N}"
        """
        rid = run_id(request)
        n = scheduler.cancel(rid)
        log.info("run cancelled", extra={"event": "run_cancelled", "run": rid, "tasks": n})
        signal.notify()
        feed.bump()
        return _json({"cancelled": n})

    async def retry(request: Request) -> Response:
        """
        summary: Run a run's failed tasks again.
        responses:
          200:
            description: "{retried: N}"
        """
        rid = run_id(request)
        n = scheduler.retry(rid)
        log.info("run retried", extra={"event": "run_retried", "run": rid, "tasks": n})
        signal.notify()
        feed.bump()
        return _json({"retried": n})

    async def workers(request: Request) -> Response:
        """
        summary: List workers.
        responses:
          200:
            description: A list of workers.
        """
        return _json(scheduler.workers_view())

    async def bosses(request: Request) -> Response:
        """
        summary: List the bosses serving this database (and which one does the housekeeping).
        responses:
          200:
            description: A list of bosses.
        """
        return _json(scheduler.bosses_view())

    async def events(request: Request) -> Response:
        """
        summary: State changes, oldest first (?run=ID to filter).
        responses:
          200:
            description: A list of events.
        """
        ref = request.query_params.get("run")
        rid = scheduler.resolve_run(ref) if ref else None
        return _json(scheduler.events_view(rid))

    async def tasks_page(request: Request) -> Response:
        """
        summary: A page of a run's tasks (?state=&q=&sort=id|duration|-duration|name&limit=&offset=).
        responses:
          200:
            description: "{total, tasks}"
        """
        q = request.query_params
        page = scheduler.tasks_page(
            run_id(request),
            states=[s for s in q.getlist("state") if s] or None,
            search=q.get("q") or None,
            sort=q.get("sort", "id"),
            limit=max(1, min(1000, int(q.get("limit", "200")))),
            offset=max(0, int(q.get("offset", "0"))),
        )
        return _json(page)

    async def graph(request: Request) -> Response:
        """
        summary: The run's DAG, one node per matrix group, with counts by state.
        responses:
          200:
            description: "{nodes, edges}"
        """
        return _json(scheduler.graph(run_id(request)))

    async def throughput(request: Request) -> Response:
        """
        summary: Tasks finished per second over the run.
        responses:
          200:
            description: "{start, width, rates}"
        """
        return _json(scheduler.throughput(run_id(request)))

    async def task_events(request: Request) -> Response:
        """
        summary: A task's history.
        responses:
          200:
            description: A list of events.
        """
        return _json(scheduler.task_events(run_id(request), request.path_params["task"]))

    async def stream(request: Request) -> Response:
        """
        summary: Server-sent events, one each time something changes (at most a few a second).
        responses:
          200:
            description: text/event-stream
        """

        async def events() -> Any:
            seen = -1
            while not await request.is_disconnected():
                now = await feed.wait(seen, 15.0)
                if now != seen:
                    seen = now
                    yield f"data: {now}\n\n"
                    await asyncio.sleep(0.3)  # at most about three updates a second
                else:
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def login_form(request: Request) -> Response:
        return HTMLResponse(_login_page(""))

    async def login(request: Request) -> Response:
        # A plain urlencoded form: parsed here rather than with python-multipart.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(_login_page("That is not this boss's token."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def index(request: Request) -> Response:
        return FileResponse(dashboard / "index.html", headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "style.css"):
            raise NotFound(f"no file '{name}'")
        return FileResponse(dashboard / name, headers={"Cache-Control": "no-store"})

    async def openapi(request: Request) -> Response:
        return _json(schemas.get_schema(routes=routes))

    v = p.API_PREFIX
    routes: list[BaseRoute] = [
        Route(f"{v}/workers", register, methods=["POST"]),
        Route(f"{v}/workers", workers, methods=["GET"]),
        Route(f"{v}/workers/{{worker:int}}", goodbye, methods=["DELETE"]),
        Route(f"{v}/sync", sync, methods=["POST"]),
        Route(f"{v}/data", data_list, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_get, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_put, methods=["PUT"]),
        Route(f"{v}/runs", submit, methods=["POST"]),
        Route(f"{v}/runs", runs, methods=["GET"]),
        Route(f"{v}/runs/{{run}}", run, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks", tasks, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}", task, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/log", task_log, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/results", results, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/cancel", cancel, methods=["POST"]),
        Route(f"{v}/runs/{{run}}/retry", retry, methods=["POST"]),
        Route(f"{v}/events", events, methods=["GET"]),
        Route(f"{v}/bosses", bosses, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/page", tasks_page, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/graph", graph, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/throughput", throughput, methods=["GET"]),
        Route(f"{v}/runs/{{run}}/tasks/{{task}}/events", task_events, methods=["GET"]),
        Route(f"{v}/stream", stream, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"], include_in_schema=False),
        Route("/login", login_form, methods=["GET"], include_in_schema=False),
        Route("/login", login, methods=["POST"], include_in_schema=False),
        Route("/logout", logout, methods=["GET"], include_in_schema=False),
        Route("/", index, methods=["GET"], include_in_schema=False),
        Route("/static/{name}", static, methods=["GET"], include_in_schema=False),
        Route("/openapi.json", openapi, include_in_schema=False),
    ]

    async def on_shoal_error(request: Request, exc: Exception) -> Response:
        status = 400
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, StoreError):
            status = 503
        return _json({"error": str(exc)}, status)

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ShoalError: on_shoal_error
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    return TokenGuard(app, token)


def _login_page(message: str) -> str:
    note = f'<p class="error">{message}</p>' if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>shoal — log in</title><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><form method="post" action="/login" class="card">
<h1>shoal</h1><p>Paste the boss's token: it is in <code>.shoal/token</code> where the boss runs.</p>
{note}<input name="token" type="password" placeholder="token" autofocus required>
<button type="submit">Log in</button></form></body></html>"""


async def _body(request: Request) -> dict[str, Any]:
    return _parse_body(await request.body())


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadInput("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    return data
