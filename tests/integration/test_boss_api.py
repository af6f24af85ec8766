"""The boss over HTTP: token, protocol, datastore, runs — real SQLite, real server."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import resource
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shoal import protocol as p
from shoal import spec
from shoal.agent.client import AgentClient, BossRefused
from shoal.client import BossClient
from shoal.exceptions import BadInput, NotFound, Unauthorized
from tests.conftest import RunningBoss


def raw(
    boss: RunningBoss,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = "default",
) -> tuple[int, bytes]:
    parts = urlsplit(boss.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {boss.token if token == 'default' else token}"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/workers", "/v1/data/x", "/v1/runs/latest/tasks"])
def test_requests_without_the_token_are_refused(boss: RunningBoss, path: str) -> None:
    status, body = raw(boss, "GET", path, token=None)
    assert status == 401 and b"token" in body
    status, _ = raw(boss, "GET", path, token="wrong")
    assert status == 401
    with BossClient(boss.url, "wrong") as client, pytest.raises(Unauthorized):
        client.runs()


def test_openapi_describes_the_api(boss: RunningBoss) -> None:
    status, body = raw(boss, "GET", "/openapi.json", token=None)
    assert status == 200
    doc = json.loads(body)
    assert {"/v1/sync", "/v1/workers", "/v1/runs", "/v1/data/{path}"} <= set(doc["paths"])


@pytest.fixture
def client(boss: RunningBoss) -> Any:
    with BossClient(boss.url, boss.token) as c:
        yield c


@pytest.fixture
def agent(boss: RunningBoss) -> Any:
    a = AgentClient(boss.url, boss.token)
    yield a
    a.drop_connection()


def test_register_and_sync_in_one_round_trip(
    boss: RunningBoss, client: BossClient, agent: AgentClient
) -> None:
    rid = client.submit(
        spec.parse_text(
            "tasks:\n- {name: a, run: x, env: {K: v}}\n- {name: b, run: y, after: [a]}\n"
        )
    )
    reg = agent.register(p.Registration(name="w1", host="h", slots=2))
    assert reg.lease_seconds > 0
    (a,) = agent.sync(p.SyncRequest(worker_id=reg.worker_id, free_slots=2)).assignments
    assert (a.task, a.run_cmds, a.env["K"]) == ("a", ["x"], "v")
    done = p.Report(
        attempt_id=a.attempt_id,
        outcome=p.SUCCEEDED,
        exit_code=0,
        result=7,
        run_id=rid,
        task="a",
        log="hello\n",
    )
    (b,) = agent.sync(
        p.SyncRequest(worker_id=reg.worker_id, finished=[done], free_slots=2)
    ).assignments
    assert b.task == "b"
    assert client.results(rid) == {"a": 7}
    assert client.log(rid, "a") == "hello\n"
    assert client.workers()[0]["name"] == "w1"


def test_idle_sync_waits_for_work_and_wakes_when_it_appears(
    boss: RunningBoss, client: BossClient
) -> None:
    agent = AgentClient(boss.url, boss.token)
    wid = agent.register(p.Registration(name="w", host="h", slots=1)).worker_id
    got: list[Any] = []

    def poll() -> None:
        got.append(agent.sync(p.SyncRequest(worker_id=wid, free_slots=1, wait=10)))
        agent.drop_connection()

    t = threading.Thread(target=poll)
    t.start()
    client.submit(spec.parse_text("tasks:\n- {name: late, run: x}\n"))
    t.join(5)
    assert not t.is_alive(), "the long-poll was not woken by the new run"
    assert [a.task for a in got[0].assignments] == ["late"]
    agent.drop_connection()


def test_datastore_streams_large_files_both_ways(
    boss: RunningBoss, client: BossClient, agent: AgentClient, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for i in range(64):
            f.write(hashlib.sha256(str(i).encode()).digest() * 16384)  # 32 MiB in all
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    agent.upload("sets/big.bin", str(big))
    agent.download("sets/big.bin", str(tmp_path / "back.bin"))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    assert grown_mib < 24, f"the process grew by {grown_mib:.0f} MiB moving a 32 MiB file"
    assert "sets/big.bin" in client.get("/data", prefix="sets/")


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "%2e%2e/x"])
def test_datastore_refuses_paths_outside_it(boss: RunningBoss, path: str) -> None:
    status, _ = raw(boss, "PUT", f"/v1/data/{path}", body=b"x")
    assert status in (400, 404)
    assert not (boss.root / "escape").exists() and not (boss.root.parent / "b").exists()


def test_bad_submissions_are_refused_with_a_reason(client: BossClient, agent: AgentClient) -> None:
    with pytest.raises(BadInput, match="duplicate"):
        client.post(
            "/runs", {"spec": {"tasks": [{"name": "a", "run": "x"}, {"name": "a", "run": "y"}]}}
        )
    with pytest.raises(BadInput, match="bundle"):
        client.post("/runs", {"spec": {"tasks": [{"name": "a", "run": "x"}]}, "bundle": "f" * 32})
    with pytest.raises(NotFound):
        client.run(12345)
    with pytest.raises(BossRefused):
        agent.call("POST", "/sync", {"worker_id": 999})


def test_cancel_and_retry_through_the_api(client: BossClient) -> None:
    rid = client.submit(spec.parse_text("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    assert client.cancel(rid) == 2
    assert client.run(rid)["state"] == "cancelled"
    assert client.retry(rid) == 2
    assert client.run(rid)["counts"] == {"ready": 2}


def test_token_file_is_private(tmp_path: Path) -> None:
    from shoal.statedir import StateDir

    sd = StateDir(tmp_path / "state")
    token = sd.token()
    assert len(token) >= 32 and sd.token() == token
    assert os.stat(sd.token_file).st_mode & 0o777 == 0o600
    sd.write_boss("http://127.0.0.1:1", token)
    assert os.stat(sd.boss_file).st_mode & 0o777 == 0o600
