"""Who may call the boss: the token, dashboard sessions, and no cross-site requests.

Two kinds of caller:

* programs (workers, the command line, the Python API) send the boss's token
  in ``Authorization: Bearer TOKEN``; a browser never sends that header by
  itself, so these requests need no more checks;
* the dashboard logs in once with the token and then holds a session cookie
  (``HttpOnly``, ``SameSite=Strict``, ``Secure`` under HTTPS, with an expiry).
  A browser sends that cookie with any request to this host, whichever page
  made it (``SameSite`` is per site, not per port), so a request it
  authenticates may change something only when it comes from this origin
  (``Origin``, else ``Sec-Fetch-Site``) and carries the session's CSRF token
  in ``X-Shoal-CSRF``. Reading is allowed with the cookie alone.

Open without credentials: ``/openapi.json``, the login form and its style sheet.
"""

from __future__ import annotations

import hmac
import json
from html import escape
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.sessions import Sessions

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "SESSION_COOKIE", "Guard", "login_routes"]

SESSION_COOKIE = "shoal_session"
# Readable by the dashboard's script, which sends it back in CSRF_HEADER.
CSRF_COOKIE = "shoal_csrf"
CSRF_HEADER = "x-shoal-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/openapi.json", "/login", "/static/style.css"})
# The most a form or cookie header of the login path is read.
LOGIN_BODY_LIMIT = 4096


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


class Guard:
    """Refuses every request without the token or a session; cookie changes need the origin."""

    def __init__(self, app: ASGIApp, token: str, sessions: Sessions) -> None:
        self.app = app
        self.bearer = f"Bearer {token}".encode()
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        """Why this request may not go on, as the answer to give; None if it may."""
        headers = _Headers(scope)
        given = headers.get("authorization")
        if given:
            if hmac.compare_digest(given.encode("latin-1"), self.bearer):
                return None
            return self.unauthenticated(scope)
        session = headers.cookie(SESSION_COOKIE)
        csrf = self.sessions.csrf(session) if session else None
        if csrf is None:
            return self.unauthenticated(scope)
        if scope["method"] in SAFE_METHODS:
            return None
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
        return None

    @staticmethod
    def unauthenticated(scope: Scope) -> Response:
        if scope["method"] == "GET" and not scope["path"].startswith(("/v1/", "/metrics")):
            return RedirectResponse("/login", status_code=303)
        return _json_error(
            "missing or wrong token: pass the boss's token "
            "(SHOAL_TOKEN, or the state folder's token file)",
            401,
        )


def login_routes(token: str, sessions: Sessions) -> list[Route]:
    """The login form, logging in (a session from the token) and logging out."""

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
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(_login_page("That is not this boss's token."), status_code=401)
        session, csrf = sessions.open()
        response = RedirectResponse("/", status_code=303)
        cookie: dict[str, Any] = {
            "max_age": int(sessions.lifetime),
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
<h1>shoal</h1><p>Paste the boss's token: it is in <code>.shoal/token</code> where the boss runs.</p>
{note}<input name="token" type="password" placeholder="token" autofocus required>
<button type="submit">Log in</button></form></body></html>"""
