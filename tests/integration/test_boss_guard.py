"""Who may call the boss: a dashboard session acts only from the dashboard's own pages.

A page on another port of the same host is the same *site* for a browser, so
SameSite cookies go with its requests; the boss must refuse what such a page
asks with the dashboard's session: a plain HTML form that submits a run, a
script that cancels one.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import RunningBoss


@pytest.fixture
def boss(tmp_path: Path) -> Iterator[RunningBoss]:
    b = RunningBoss(tmp_path / "boss")
    yield b
    b.stop()


def request(
    boss: RunningBoss, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(boss.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        headers["set-cookie"] = "\n".join(resp.msg.get_all("set-cookie") or [])
        return resp.status, headers, resp.read()
    finally:
        conn.close()


def log_in(boss: RunningBoss) -> dict[str, str]:
    """The cookies a browser keeps after logging in from the login form."""
    status, headers, _ = request(
        boss,
        "POST",
        "/login",
        urlencode({"token": boss.token}).encode(),
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 303
    cookies = {}
    for line in headers["set-cookie"].splitlines():
        name, _, rest = line.partition("=")
        cookies[name] = rest.split(";")[0]
    assert set(cookies) == {"shoal_session", "shoal_csrf"}
    return cookies


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def runs(boss: RunningBoss) -> list[Any]:
    return boss.scheduler.runs_view()


SPEC = json.dumps({"spec": {"tasks": [{"name": "x", "run": "touch /tmp/pwned"}]}})


def test_a_form_on_another_port_of_the_host_cannot_submit_a_run(boss: RunningBoss) -> None:
    cookies = log_in(boss)
    # What a browser sends for <form method=post enctype=text/plain> on
    # http://127.0.0.1:9999 (another service): the session cookie comes along.
    status, _, body = request(
        boss,
        "POST",
        "/v1/runs",
        SPEC.encode(),
        Cookie=cookie_header(cookies),
        Origin="http://127.0.0.1:9999",
        **{"Content-Type": "text/plain", "Sec-Fetch-Site": "same-site"},
    )
    assert status == 403 and b"cross-site request refused" in body
    # The same request from the dashboard's origin still needs the session's CSRF token...
    origin = boss.url
    status, _, body = request(
        boss,
        "POST",
        "/v1/runs/latest/cancel",
        Cookie=cookie_header(cookies),
        Origin=origin,
    )
    assert status == 403 and b"CSRF" in body
    # ... and a JSON route reads only JSON, whoever asks.
    status, _, body = request(
        boss,
        "POST",
        "/v1/runs",
        SPEC.encode(),
        Authorization=f"Bearer {boss.token}",
        **{"Content-Type": "text/plain"},
    )
    assert status == 415 and b"application/json" in body
    assert runs(boss) == []
    # The dashboard itself: same origin, with the token its script reads.
    status, _, body = request(
        boss,
        "POST",
        "/v1/runs",
        SPEC.encode(),
        Cookie=cookie_header(cookies),
        Origin=origin,
        **{"Content-Type": "application/json", "X-Shoal-CSRF": cookies["shoal_csrf"]},
    )
    assert status == 200, body
    assert len(runs(boss)) == 1


def test_the_cookie_holds_a_session_that_logging_out_ends(boss: RunningBoss) -> None:
    status, headers, _ = request(
        boss,
        "POST",
        "/login",
        urlencode({"token": boss.token}).encode(),
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    set_cookie = headers["set-cookie"]
    assert boss.token not in set_cookie  # a session id, never the token
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert "Max-Age=43200" in set_cookie  # it expires
    cookies = log_in(boss)
    session = cookie_header(cookies)
    assert request(boss, "GET", "/v1/runs", Cookie=session)[0] == 200
    # Logging out is a change: from the dashboard's page, with its token.
    assert request(boss, "POST", "/logout", Cookie=session, Origin="http://evil.test")[0] == 403
    status, _, _ = request(
        boss,
        "POST",
        "/logout",
        Cookie=session,
        Origin=boss.url,
        **{"X-Shoal-CSRF": cookies["shoal_csrf"]},
    )
    assert status == 303
    assert request(boss, "GET", "/v1/runs", Cookie=session)[0] == 401
    # A boss restarted on the same database still knows a live session.
    again = log_in(boss)
    boss.stop()
    restarted = RunningBoss(boss.root)
    try:
        assert request(restarted, "GET", "/v1/runs", Cookie=cookie_header(again))[0] == 200
    finally:
        restarted.stop()
        boss.boss = restarted.boss  # the fixture stops it again, harmlessly


def test_requests_without_credentials_are_refused(boss: RunningBoss) -> None:
    assert request(boss, "GET", "/v1/runs")[0] == 401
    assert request(boss, "GET", "/v1/runs", Authorization="Bearer wrong")[0] == 401
    assert request(boss, "GET", "/v1/runs", Cookie="shoal_session=guess")[0] == 401
    assert request(boss, "GET", "/", Cookie="shoal_session=guess")[0] == 303  # to the login form
    assert request(boss, "GET", "/openapi.json")[0] == 200


def test_the_login_pages_style_sheet_is_served_before_and_after_logging_in(
    boss: RunningBoss,
) -> None:
    # Without it the login form is unstyled and the dashboard's log is no scroll box.
    status, headers, body = request(boss, "GET", "/static/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css") and body
    cookies = log_in(boss)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status, _, again = request(boss, "GET", "/static/style.css", Cookie=cookie)
    assert status == 200 and again == body
    # Other static files still need a credential.
    assert request(boss, "GET", "/static/app.js")[0] in (401, 303)
