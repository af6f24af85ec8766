"""What the boss does with bad, huge or repeated requests: a 4xx with one line, once.

Each case here was answered with a 500, or taken whole, before.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import RunningBoss
from tests.proxy import Proxy


@pytest.fixture
def small_boss(tmp_path: Path) -> Iterator[RunningBoss]:
    from shoal.boss.api import Limits
    from shoal.boss.server import Boss

    b = RunningBoss.__new__(RunningBoss)
    b.root, b.token = tmp_path, "test-token"
    b.boss = Boss(
        db=tmp_path / "shoal.db",
        data=tmp_path / "data",
        token=b.token,
        limits=Limits(max_body=1024 * 1024),
    )
    b.boss.start()
    b.url, b.scheduler = b.boss.url, b.boss.scheduler
    yield b
    b.stop()


def call(
    boss: RunningBoss, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, str]:
    parts = urlsplit(boss.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    headers.setdefault("Authorization", f"Bearer {boss.token}")
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def error(answer: tuple[int, str]) -> tuple[int, str]:
    status, text = answer
    return status, json.loads(text)["error"]


def test_a_body_over_the_limit_is_refused_with_the_limit_named(small_boss: RunningBoss) -> None:
    tasks = [{"name": f"t-{i}", "run": "x" * 200} for i in range(10_000)]
    body = json.dumps({"spec": {"tasks": tasks}}).encode()
    status, message = error(call(small_boss, "POST", "/v1/runs", body))
    assert status == 413 and "limit of 1 MiB" in message and "--max-body" in message
    # Refused from its declared length alone, before a byte of it is read.
    parts = urlsplit(small_boss.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.putrequest("POST", "/v1/runs")
    for k, v in {
        "Authorization": f"Bearer {small_boss.token}",
        "Content-Type": "application/json",
        "Content-Length": str(50 * 2**20),
    }.items():
        conn.putheader(k, v)
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert small_boss.scheduler.runs_view() == []


def test_bad_requests_get_a_4xx_and_one_line(boss: RunningBoss) -> None:
    deep = (
        b'{"worker_id": 1, "finished": [{"attempt_id": 1, "outcome": "failed", "result": '
        + (b"[" * 5000 + b"]" * 5000)
        + b"}]}"
    )
    cases = [
        ("GET", "/v1/runs/%C2%B2", None, 404),  # '²' is a digit to str.isdigit
        ("GET", f"/v1/runs/{2**63}", None, 404),
        ("DELETE", f"/v1/workers/{2**64}", None, 400),
        ("PUT", f"/v1/attempts/{2**63}/log", b"x", 400),
        ("POST", "/v1/sync", b'{"worker_id": 1, "finished": [{"attempt_id": 1, "log": 5}]}', 400),
        ("POST", "/v1/sync", b'{"worker_id": 1, "wait": 1e400}', 400),
        ("POST", "/v1/sync", deep, 413),
        ("POST", "/v1/workers", b'{"name": 1, "host": [], "slots": "2"}', 400),
        ("POST", "/v1/workers", b"[1, 2]", 400),
        ("POST", "/v1/workers", b'{"name": "w", "host": "h", "slots": NaN}', 400),
        ("GET", "/v1/runs/latest/page?limit=abc", None, 400),
        ("GET", "/v1/runs/latest/page?offset=abc", None, 400),
        ("GET", "/v1/runs/latest/tasks?state=sleeping", None, 400),
        ("GET", "/v1/data/a%00b", None, 400),
        ("GET", "/v1/data/" + "n" * 300, None, 400),
        ("PUT", "/v1/data/.", b"x", 400),
        ("PUT", "/v1/data/a/../b", b"x", 400),
    ]
    boss.boss.submit(_spec())
    for method, path, body, expected in cases:
        headers = {"Content-Type": "application/octet-stream"} if method == "PUT" else {}
        status, text = call(boss, method, path, body, **headers)
        message = json.loads(text)["error"]
        assert (status, "\n" in message) == (expected, False), (method, path, status, message)


def test_a_path_too_long_for_the_datastore_is_the_callers_mistake(boss: RunningBoss) -> None:
    # Every name short enough, the whole too long for the file system.
    path = "d/" * 2100 + "x"
    for method, where in (("GET", f"/v1/data/{path}"), ("GET", f"/v1/data?prefix={path}")):
        status, message = error(call(boss, method, where))
        assert status == 400 and "longer than 1024 bytes" in message, (where, message)
    status, message = error(
        call(boss, "PUT", f"/v1/data/{path}", b"x", **{"Content-Type": "application/octet-stream"})
    )
    assert status == 400, message
    # Nothing is wrong with the boss's disk, and it does not say there is.
    assert boss.boss.health.lines() == []


def _spec() -> object:
    from shoal.spec import spec_from_dict

    return spec_from_dict({"tasks": [{"name": "a", "run": "true"}]})


def test_a_submission_whose_answer_was_lost_makes_one_run(boss: RunningBoss) -> None:
    from shoal.client import BossClient

    parts = urlsplit(boss.url)
    proxy = Proxy((parts.hostname or "", parts.port or 0))
    try:
        # The boss stores the run, and its answer never arrives: twice in a
        # row, so that the client's own resend loses its answer too.
        proxy.drop_answers = 2
        with BossClient(proxy.url, boss.token) as client:
            run = client.submit(_spec())  # type: ignore[arg-type]
        assert proxy.requests >= 3  # the first send, and two more with the same key
        runs = boss.scheduler.runs_view()
        assert [r["run"] for r in runs] == [run]
    finally:
        proxy.close()


def test_the_same_idempotency_key_returns_the_first_run(boss: RunningBoss) -> None:
    body = json.dumps({"spec": {"tasks": [{"name": "a", "run": "true"}]}}).encode()
    key = {"Idempotency-Key": "k-0123456789"}
    first = json.loads(call(boss, "POST", "/v1/runs", body, **key)[1])["run"]
    again = json.loads(call(boss, "POST", "/v1/runs", body, **key)[1])["run"]
    other = json.loads(call(boss, "POST", "/v1/runs", body)[1])["run"]
    assert first == again != other
    assert call(boss, "POST", "/v1/runs", body, **{"Idempotency-Key": quote("bad key")})[0] == 400
