"""Holes found by probing the scoped credentials as an attacker would.

Each test is one hole: what a worker credential (or a revoked, expired or
replaced one) could still do that ``Who may call the boss`` says it may not.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shoal.boss.server import Boss
from shoal.boss.tokens import READ, WORKER
from tests.conftest import RunningBoss
from tests.integration.test_tokens import call, register, submit


@pytest.fixture
def boss(tmp_path: Path) -> Iterator[RunningBoss]:
    b = RunningBoss(tmp_path / "boss")
    yield b
    b.stop()


def read_log(boss: RunningBoss, path: str) -> bytes:
    with boss.boss.datastore.open_read(path) as f:
        data: bytes = f.read()
    return data


def test_a_workers_sync_cannot_write_the_log_of_another_workers_attempt(
    boss: RunningBoss,
) -> None:
    """A report's inline log lands only for an attempt the syncing worker holds."""
    pool = boss.boss.tokens.issue("pool", WORKER)
    honest, thief = register(boss, pool, "honest"), register(boss, pool, "thief")
    assert honest.token and thief.token
    run = submit(boss, [{"name": "make", "run": "true"}])
    status, got = call(
        boss, "POST", "/v1/sync", honest.token, {"worker_id": honest.worker_id, "free_slots": 1}
    )
    assert status == 200
    theirs = got["assignments"][0]["attempt_id"]
    now = time.time()
    honest_report = {
        "attempt_id": theirs,
        "outcome": "succeeded",
        "run_id": run,
        "task": "make",
        "exit_code": 0,
        "started": now - 1,
        "ended": now,
        "log": "the real log\n",
    }
    sync = {"worker_id": honest.worker_id, "finished": [honest_report]}
    assert call(boss, "POST", "/v1/sync", honest.token, sync)[0] == 200
    log = f"logs/{run}/make/{theirs}.log"
    assert read_log(boss, log) == b"the real log\n"

    forged = {**honest_report, "log": "forged by another worker\n"}
    planted = {**honest_report, "attempt_id": 999, "task": "make/deep", "log": "planted\n"}
    sync = {"worker_id": thief.worker_id, "finished": [forged, planted]}
    call(boss, "POST", "/v1/sync", thief.token, sync)

    # The attempt's log is still its own worker's, and nothing was planted.
    assert read_log(boss, log) == b"the real log\n"
    assert not boss.boss.datastore.exists(f"logs/{run}/make/deep/999.log")


def test_a_held_sync_ends_when_the_token_that_registered_its_worker_is_revoked(
    boss: RunningBoss,
) -> None:
    """`shoal tokens revoke NAME` refuses its workers at once: a sync held open gets no work."""
    pool = boss.boss.tokens.issue("pool", WORKER)
    worker = register(boss, pool)
    assert worker.token
    answer: dict[str, Any] = {}

    def held() -> None:
        body = {"worker_id": worker.worker_id, "free_slots": 1, "wait": 20}
        answer["sync"] = call(boss, "POST", "/v1/sync", worker.token, body)

    waiting = threading.Thread(target=held)
    waiting.start()
    time.sleep(1.5)  # the sync is held open, waiting for work
    assert call(boss, "DELETE", "/v1/tokens/pool", boss.token)[0] == 200
    run = submit(boss, [{"name": "after", "run": "true", "env": {"KEY": "s3cret"}}], "later")
    waiting.join(60)
    status, got = answer["sync"]
    handed = got.get("assignments") if status == 200 else []
    assert not handed, f"a worker whose token was revoked was handed {handed}"
    assert [t["state"] for t in boss.scheduler.tasks_view(run)] == ["ready"]


def _login(url: str, token: str) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/login",
            body=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 303
        cookies = resp.msg.get_all("set-cookie") or []
        return "; ".join(c.split(";")[0] for c in cookies)
    finally:
        conn.close()


def _get(url: str, path: str, cookie: str = "") -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_a_dashboard_session_ends_with_the_read_token_it_logged_in_with(
    boss: RunningBoss,
) -> None:
    """A read token that expires takes its dashboard sessions with it."""
    token = boss.boss.tokens.issue("brief", READ, expires_in=2)
    cookie = _login(boss.url, token)
    assert _get(boss.url, "/v1/runs", cookie) == 200
    time.sleep(3)
    assert call(boss, "GET", "/v1/runs", token)[0] == 401  # the token has expired
    assert _get(boss.url, "/v1/runs", cookie) == 401


def test_a_new_boss_token_ends_the_sessions_of_the_old_one(tmp_path: Path) -> None:
    """Replacing a leaked boss token must not leave its dashboard logins in charge."""
    root = tmp_path / "boss"
    first = Boss(db=root / "shoal.db", data=root / "data", token="the-leaked-token")
    first.start()
    try:
        cookie = _login(first.url, "the-leaked-token")
        assert _get(first.url, "/v1/tokens", cookie) == 200
    finally:
        first.stop()
    second = Boss(db=root / "shoal.db", data=root / "data", token="a-fresh-token")
    second.start()
    try:
        assert _get(second.url, "/v1/tokens", cookie) == 401
    finally:
        second.stop()


def test_the_login_page_style_sheet_needs_no_credential(boss: RunningBoss) -> None:
    """The login form links /static/style.css: a visitor not logged in gets it."""
    assert _get(boss.url, "/static/style.css") == 200
    assert _get(boss.url, "/static/app.js") in (303, 401)  # the rest stays behind the login
