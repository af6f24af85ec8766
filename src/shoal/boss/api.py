"""The boss's HTTP API over the scheduler and the datastore.

Who may call what is decided in :mod:`shoal.boss.auth` (a token of
:mod:`shoal.boss.tokens`, or a dashboard session for requests from its own
pages); ``/openapi.json``
(:mod:`shoal.boss.openapi`) describes every route. The routes live by
concern: :mod:`~shoal.boss.workers` (what workers call),
:mod:`~shoal.boss.runs`, :mod:`~shoal.boss.data` (the datastore) and
:mod:`~shoal.boss.pages` (what a browser reads). Handlers call the scheduler
directly on the event loop: each call is one short database transaction, and
a single writer is what SQLite wants anyway.

Every bad request is answered with a 4xx and ``{"error": one line}``; the
boss's own failures (a database or datastore it cannot write) with a 503
that says so, and ``shoal status`` shows them until they pass.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from shoal import protocol as p
from shoal.boss.auth import Guard, login_routes, scoped
from shoal.boss.data import data_routes
from shoal.boss.health import Health
from shoal.boss.machines import machine_routes
from shoal.boss.metrics import Metrics
from shoal.boss.pages import page_routes
from shoal.boss.runs import run_routes
from shoal.boss.tokens import Tokens, token_routes
from shoal.boss.web import ChangeFeed, Context, Limits, WorkSignal, error_response
from shoal.boss.workers import worker_routes
from shoal.datastore.base import Datastore
from shoal.exceptions import DatastoreError, ShoalError, StoreError
from shoal.machines import Machines
from shoal.scheduler import Scheduler
from shoal.sessions import Sessions
from shoal.store import Store

__all__ = ["ChangeFeed", "Limits", "WorkSignal", "create_app"]

log = logging.getLogger("shoal.boss")


def create_app(
    scheduler: Scheduler,
    datastore: Datastore,
    token: str,
    signal: WorkSignal | None = None,
    feed: ChangeFeed | None = None,
    threads: int = 0,
    *,
    health: Health | None = None,
    limits: Limits | None = None,
    tokens: Tokens | None = None,
) -> ASGIApp:
    """The boss's ASGI application; ``signal`` wakes its long-polls, ``feed`` its dashboards.

    With ``threads``, syncs run on that many threads, so that one sync's
    database round trips overlap another's (PostgreSQL: each sync is some
    twenty of them). Without, they run one at a time on the event loop,
    which is fastest when the database serializes writers anyway (SQLite).

    ``token`` is the boss's own (admin); ``tokens``, the other credentials
    (made here over the scheduler's database when not given).
    """
    # Dashboard sessions and machines live in the boss's database (always a SQL one).
    assert isinstance(scheduler.store, Store)
    sessions = Sessions(scheduler.store)
    tokens = tokens or Tokens(scheduler.store, token)
    ctx = Context(
        scheduler=scheduler,
        datastore=datastore,
        signal=signal or WorkSignal(),
        feed=feed or ChangeFeed(),
        health=health or Health(),
        limits=limits or Limits(),
        metrics=Metrics(scheduler),
        machines=Machines(scheduler.store),
        tokens=tokens,
        pool=ThreadPoolExecutor(threads, thread_name_prefix="shoal-sync") if threads else None,
    )
    routes = scoped(
        [
            *worker_routes(ctx),
            *run_routes(ctx),
            *data_routes(ctx),
            *machine_routes(ctx),
            *token_routes(tokens, ctx.limits.max_body),
            *page_routes(ctx),
            *login_routes(tokens, sessions),
        ]
    )

    async def on_shoal_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ShoalError)
        if isinstance(exc, DatastoreError):
            ctx.health.failed("datastore", str(exc))
        elif isinstance(exc, StoreError):
            ctx.health.failed("database", str(exc))
        return error_response(str(exc), exc.http_status)

    async def on_bad_message(request: Request, exc: Exception) -> Response:
        return error_response(f"bad request: {exc}", 400)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(str(exc.detail), exc.status_code)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # The client went away mid-request; nobody reads this answer.
        return error_response("the client disconnected", 400)

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ShoalError: on_shoal_error,
        p.BadMessage: on_bad_message,
        HTTPException: on_http_error,
        ClientDisconnect: on_disconnect,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Guard(app, tokens, sessions)
