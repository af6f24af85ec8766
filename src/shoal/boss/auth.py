"""Who may call the boss, and what: credentials, dashboard sessions, no cross-site requests.

Two kinds of caller:

* programs (workers, the command line, the Python API) send a token in
  ``Authorization: Bearer TOKEN``; a browser never sends that header by
  itself, so these requests need no more checks;
* the dashboard logs in once with a token (the boss's, or a read-only one)
  and then holds a session cookie (``HttpOnly``, ``SameSite=Strict``,
  ``Secure`` under HTTPS, with an expiry). A browser sends that cookie with
  any request to this host, whichever page made it (``SameSite`` is per
  site, not per port), so a request it authenticates may change something
  only when it comes from this origin (``Origin``, else ``Sec-Fetch-Site``)
  and carries the session's CSRF token in ``X-Shoal-CSRF``. Reading is
  allowed with the cookie alone.

The :class:`Guard` resolves the caller's :class:`~shoal.boss.tokens.Credential`
once and puts it in the request's scope (``scope["shoal.credential"]``);
:data:`ACCESS` says which kinds of credential may call each route (the
boss's token may call all), and :func:`scoped` holds every route to it: a
route missing from it is the boss's token's only, so a new route fails
closed. The handlers check what a per-worker token owns (its worker, its
attempts) with :func:`caller`.

Open without credentials: ``/openapi.json``, the login form and its style sheet.
"""

from __future__ import annotations

import hmac
import json
import time
from html import escape
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.boss.tokens import (
    ADMIN_CREDENTIAL,
    PER_WORKER,
    READ,
    WORKER,
    Credential,
    Tokens,
    session_kind,
)
from shoal.exceptions import Refused
from shoal.sessions import Sessions

__all__ = [
    "ACCESS",
    "CREDENTIAL",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "OPEN",
    "SESSION_COOKIE",
    "Guard",
    "caller",
    "login_routes",
    "own_worker",
    "scoped",
]

SESSION_COOKIE = "shoal_session"
# Readable by the dashboard's script, which sends it back in CSRF_HEADER.
CSRF_COOKIE = "shoal_csrf"
CSRF_HEADER = "x-shoal-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/openapi.json", "/login", "/static/style.css"})
# The most a form or cookie header of the login path is read.
LOGIN_BODY_LIMIT = 4096
# Where the guard puts the caller's credential in the ASGI scope.
CREDENTIAL = "shoal.credential"

OPEN = frozenset({"anyone"})  # no credential needed
VIEW = frozenset({READ})
NOBODY = frozenset[str]()  # but the boss's token
# Who may call each route, besides the boss's token: "METHOD path" as the route is declared.
ACCESS: dict[str, frozenset[str]] = {
    # what workers call
    "POST /v1/workers": frozenset({WORKER}),
    "GET /v1/workers": VIEW,
    "DELETE /v1/workers/{worker}": frozenset({PER_WORKER}),
    "POST /v1/workers/{worker}/lost": NOBODY,
    "POST /v1/workers/{worker}/drain": NOBODY,
    "POST /v1/workers/{worker}/stop": NOBODY,
    "POST /v1/sync": frozenset({PER_WORKER}),
    "PUT /v1/attempts/{attempt}/outputs/{path:path}": frozenset({PER_WORKER}),
    "PUT /v1/attempts/{attempt}/log": frozenset({PER_WORKER}),
    "GET /v1/bosses": VIEW,
    # runs
    "POST /v1/runs": NOBODY,
    "GET /v1/runs": VIEW,
    "GET /v1/runs/{run}": VIEW,
    "GET /v1/runs/{run}/tasks": VIEW,
    "GET /v1/runs/{run}/tasks/{task}": VIEW,
    "GET /v1/runs/{run}/tasks/{task}/log": VIEW,
    "GET /v1/runs/{run}/tasks/{task}/events": VIEW,
    "GET /v1/runs/{run}/tasks/{task}/links": VIEW,
    "POST /v1/runs/{run}/tasks/{task}/cancel": NOBODY,
    "POST /v1/runs/{run}/tasks/{task}/retry": NOBODY,
    "GET /v1/runs/{run}/results": VIEW,
    "POST /v1/runs/{run}/cancel": NOBODY,
    "POST /v1/runs/{run}/retry": NOBODY,
    "GET /v1/runs/{run}/page": VIEW,
    "GET /v1/runs/{run}/graph": VIEW,
    "GET /v1/runs/{run}/throughput": VIEW,
    "GET /v1/events": VIEW,
    # the datastore: a per-worker token reads only what its attempts need (data.py)
    "GET /v1/data": VIEW,
    "GET /v1/data/{path:path}": frozenset({READ, PER_WORKER}),
    "PUT /v1/data/{path:path}": NOBODY,
    "DELETE /v1/data/{path:path}": NOBODY,
    "POST /v1/gc": NOBODY,
    # machines
    "GET /v1/demand": VIEW,
    "GET /v1/machines": VIEW,
    "PUT /v1/machines": NOBODY,
    # credentials
    "GET /v1/tokens": NOBODY,
    "POST /v1/tokens": NOBODY,
    "DELETE /v1/tokens/{name}": NOBODY,
    # what a browser reads
    "GET /v1/stream": VIEW,
    "GET /metrics": VIEW,
    "GET /": VIEW,
    "GET /static/{name}": VIEW,
    "GET /openapi.json": OPEN,
    "GET /login": OPEN,
    "POST /login": OPEN,
    "POST /logout": VIEW,
}
# What each kind may do, for the line that refuses it.
ALLOWED_TO = {
    READ: "view runs, the dashboard and /metrics",
    WORKER: "register a worker",
    PER_WORKER: "sync as its own worker and send and read its own attempts' files",
}


def _json_error(message: str, status: int) -> Response:
    return Response(
        json.dumps({"error": message}), status_code=status, media_type="application/json"
    )


class _Headers:
    """The request headers a guard looks at, decoded once."""

    def __init__(self, scope: Scope) -> None:
        self.values: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1")
            if name in ("authorization", "cookie", "origin", "sec-fetch-site", "host", CSRF_HEADER):
                self.values[name] = value.decode("latin-1")

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def cookie(self, name: str) -> str:
        for part in self.get("cookie").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return ""


def same_origin(scope: Scope, headers: _Headers) -> bool:
    """Whether a browser says this request was made by a page of this boss."""
    origin = headers.get("origin")
    if origin and origin != "null":
        return origin == f"{scope.get('scheme', 'http')}://{headers.get('host')}"
    return headers.get("sec-fetch-site") == "same-origin"


def route_key(route: Route) -> str:
    """How :data:`ACCESS` names a route: its method (not HEAD) and its declared path."""
    methods = sorted(m for m in route.methods or () if m != "HEAD") or ["GET"]
    return f"{methods[0]} {route.path}"


def _forbidden(credential: Credential | None, key: str) -> Response:
    if credential is None:
        return _json_error("missing token: this route needs a credential", 401)
    return _json_error(
        f"forbidden: a {credential.kind} token may not call {key}; "
        f"it may only {ALLOWED_TO.get(credential.kind, 'what it was made for')}",
        403,
    )


def _checked(app: ASGIApp, key: str, allowed: frozenset[str]) -> ASGIApp:
    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        credential: Credential | None = scope.get(CREDENTIAL)
        # OPEN_PATHS (the login page's style sheet among them) are open whatever
        # the route's entry says: the guard let them through without a credential.
        if (
            allowed is OPEN
            or scope["path"] in OPEN_PATHS
            or (credential is not None and (credential.admin or credential.kind in allowed))
        ):
            await app(scope, receive, send)
            return
        await _forbidden(credential, key)(scope, receive, send)

    return checked


def scoped(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The routes, each refusing (403) a credential :data:`ACCESS` does not name for it."""
    for route in routes:
        if isinstance(route, Route):
            key = route_key(route)
            route.app = _checked(route.app, key, ACCESS.get(key, NOBODY))
    return routes


def caller(request: Request) -> Credential:
    """The credential the guard resolved for this request."""
    credential: Credential | None = request.scope.get(CREDENTIAL)
    if credential is None:
        raise Refused("this request carries no credential")
    return credential


def own_worker(request: Request, worker_id: int) -> None:
    """Refuse (403) a per-worker token that acts for another worker than its own."""
    credential = caller(request)
    if credential.worker_id is not None and credential.worker_id != worker_id:
        raise Refused(
            f"forbidden: the token of worker {credential.worker_id} may not act as "
            f"worker {worker_id}"
        )


class Guard:
    """Resolves each request's credential (a token, or a session); cookie changes need the origin."""

    def __init__(self, app: ASGIApp, tokens: Tokens, sessions: Sessions) -> None:
        self.app = app
        self.tokens = tokens
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        found = self.credential(scope)
        if isinstance(found, Response):
            await found(scope, receive, send)
            return
        scope[CREDENTIAL] = found
        await self.app(scope, receive, send)

    def credential(self, scope: Scope) -> Credential | Response:
        """Who calls (from the token or the session), or the answer that refuses the request."""
        headers = _Headers(scope)
        given = headers.get("authorization")
        if given:
            scheme, _, token = given.partition(" ")
            credential = self.tokens.resolve(token) if scheme == "Bearer" else None
            return credential if credential is not None else self.unauthenticated(scope)
        session = headers.cookie(SESSION_COOKIE)
        found = self.sessions.lookup(session) if session else None
        if found is None:
            return self.unauthenticated(scope)
        csrf, kind = found
        if kind == self.tokens.admin_session:
            credential = ADMIN_CREDENTIAL
        elif kind is not None and kind.startswith(f"{READ}:"):
            credential = Credential(READ, "dashboard")
        else:  # logged in with a boss token that has since been replaced
            return self.unauthenticated(scope)
        if scope["method"] in SAFE_METHODS:
            return credential
        if not same_origin(scope, headers):
            return _json_error(
                "cross-site request refused: a change made with the dashboard's session "
                "must come from the dashboard's own pages",
                403,
            )
        if not hmac.compare_digest(headers.get(CSRF_HEADER).encode(), csrf.encode()):
            return _json_error(
                f"missing or wrong CSRF token: send the session's token in {CSRF_HEADER}", 403
            )
        return credential

    @staticmethod
    def unauthenticated(scope: Scope) -> Response:
        if scope["method"] == "GET" and not scope["path"].startswith(("/v1/", "/metrics")):
            return RedirectResponse("/login", status_code=303)
        return _json_error(
            "missing or wrong token: pass the boss's token "
            "(SHOAL_TOKEN, or the state folder's token file) or another it issued",
            401,
        )


def login_routes(tokens: Tokens, sessions: Sessions) -> list[Route]:
    """The login form, logging in (a session from the boss's or a read token) and logging out."""

    async def login_form(request: Request) -> Response:
        return HTMLResponse(_login_page(""))

    async def login(request: Request) -> Response:
        headers = _Headers(request.scope)
        if (headers.get("origin") or headers.get("sec-fetch-site")) and not same_origin(
            request.scope, headers
        ):
            return HTMLResponse(_login_page("Log in from this boss's own page."), 403)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > LOGIN_BODY_LIMIT:
                return HTMLResponse(_login_page("That is not this boss's token."), 413)
        # A plain urlencoded form: parsed here rather than with python-multipart.
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip()
        credential = tokens.resolve(given)
        if credential is None or credential.kind not in (ADMIN_CREDENTIAL.kind, READ):
            return HTMLResponse(_login_page("That is not this boss's token."), status_code=401)
        kind = tokens.admin_session if credential.admin else session_kind(credential.token_id or 0)
        # A session ends no later than the token it logged in with.
        session, csrf = sessions.open(kind, until=credential.expires)
        response = RedirectResponse("/", status_code=303)
        lifetime = sessions.lifetime
        if credential.expires is not None:
            lifetime = min(lifetime, credential.expires - time.time())
        cookie: dict[str, Any] = {
            "max_age": max(1, int(lifetime)),
            "samesite": "strict",
            "secure": request.url.scheme == "https",
            "path": "/",
        }
        response.set_cookie(SESSION_COOKIE, session, httponly=True, **cookie)
        response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **cookie)
        return response

    async def logout(request: Request) -> Response:
        """Ends the session (the guard checked its origin and CSRF token)."""
        session = _Headers(request.scope).cookie(SESSION_COOKIE)
        if session:
            sessions.close(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    return [
        Route("/login", login_form, methods=["GET"], include_in_schema=False),
        Route("/login", login, methods=["POST"], include_in_schema=False),
        Route("/logout", logout, methods=["POST"], include_in_schema=False),
    ]


def _login_page(message: str) -> str:
    note = f'<p class="error">{escape(message)}</p>' if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>shoal — log in</title><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><form method="post" action="/login" class="card">
<h1>shoal</h1><p>Paste the boss's token (it is in <code>.shoal/token</code> where the boss runs)
or a read-only one (<code>shoal tokens add NAME --read</code>).</p>
{note}<input name="token" type="password" placeholder="token" autofocus required>
<button type="submit">Log in</button></form></body></html>"""
