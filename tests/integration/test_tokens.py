"""Scoped credentials: the route table, each kind of token against the routes, tokens at rest.

A worker machine taken over by an attacker holds a worker token (and the
per-worker token its agent got): neither may submit, cancel, read another
run's files or act as another worker. The database holds only hashes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.routing import Route

from shoal import protocol as p
from shoal.boss.auth import ACCESS, route_key
from shoal.boss.tokens import PER_WORKER, READ, WORKER, Tokens
from shoal.spec import spec_from_dict
from shoal.store import Store
from tests.conftest import AgentThread, RunningBoss, wait_for, write


@pytest.fixture
def boss(tmp_path: Path) -> Iterator[RunningBoss]:
    b = RunningBoss(tmp_path / "boss")
    yield b
    b.stop()


def call(
    boss: RunningBoss, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    parts = urlsplit(boss.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        kind = resp.getheader("Content-Type") or ""
        return resp.status, json.loads(raw) if kind.startswith("application/json") else raw
    finally:
        conn.close()


REG = {"name": "x", "host": "h", "slots": 1}


def register(boss: RunningBoss, token: str, name: str = "w") -> p.Registered:
    status, answer = call(boss, "POST", "/v1/workers", token, {**REG, "name": name})
    assert status == 200, answer
    return p.Registered.from_dict(answer)


def submit(boss: RunningBoss, tasks: list[dict[str, Any]], name: str = "r") -> int:
    return boss.boss.submit(spec_from_dict({"name": name, "tasks": tasks}, path="t.yaml"))


def forbidden(status: int, answer: Any) -> bool:
    return status == 403 and isinstance(answer["error"], str) and "\n" not in answer["error"]


def test_every_route_says_who_may_call_it(boss: RunningBoss) -> None:
    starlette = boss.boss.app.app  # type: ignore[attr-defined]
    keys = [route_key(r) for r in starlette.routes if isinstance(r, Route)]
    assert len(keys) > 30
    missing = [k for k in keys if k not in ACCESS]
    assert missing == [], f"routes without an entry in ACCESS: {missing}"
    assert set(ACCESS) == set(keys), "entries in ACCESS for routes that do not exist"


def test_a_read_token_views_and_changes_nothing(boss: RunningBoss) -> None:
    run = submit(boss, [{"name": "a", "run": "true"}])
    read = boss.boss.tokens.issue("dash", READ)
    assert call(boss, "GET", "/v1/runs", read)[0] == 200
    assert call(boss, "GET", f"/v1/runs/{run}/tasks", read)[0] == 200
    assert call(boss, "GET", "/metrics", read)[0] == 200
    assert call(boss, "GET", "/", read)[0] == 200
    assert forbidden(*call(boss, "POST", f"/v1/runs/{run}/cancel", read))
    assert forbidden(*call(boss, "POST", "/v1/runs", read, {"spec": {"tasks": []}}))
    assert forbidden(*call(boss, "POST", "/v1/workers", read, REG))
    assert forbidden(*call(boss, "GET", "/v1/tokens", read))
    assert boss.scheduler.run_view(run)["state"] != "cancelled"


def test_a_worker_token_only_registers(boss: RunningBoss) -> None:
    run = submit(boss, [{"name": "a", "run": "true"}])
    worker = boss.boss.tokens.issue("pool", WORKER)
    answer = register(boss, worker)
    assert answer.token and answer.token != worker
    assert forbidden(*call(boss, "GET", "/v1/runs", worker))
    assert forbidden(*call(boss, "POST", f"/v1/runs/{run}/cancel", worker))
    status, refusal = call(boss, "POST", "/v1/sync", worker, {"worker_id": answer.worker_id})
    assert forbidden(status, refusal)
    assert "may only register a worker" in refusal["error"]


def test_a_workers_own_token_acts_only_for_that_worker(boss: RunningBoss) -> None:
    """What an attacker on a worker machine can do with what its agent holds."""
    ds = boss.boss.datastore
    write(Path(ds.root) / "in" / "mine.txt", "mine")  # type: ignore[attr-defined]
    other = submit(boss, [{"name": "secret", "run": "true", "outputs": ["s.txt"]}], "other")
    write(Path(ds.root) / p.output_prefix(other, "secret") / "s.txt", "secret")  # type: ignore[attr-defined]
    worker = boss.boss.tokens.issue("pool", WORKER)
    me, them = register(boss, worker, "me"), register(boss, worker, "them")
    # `them` takes the other run's task; then `me` gets one of its own.
    take = {"worker_id": them.worker_id, "free_slots": 1}
    status, got = call(boss, "POST", "/v1/sync", them.token, take)
    assert status == 200 and len(got["assignments"]) == 1
    held_by_them = got["assignments"][0]["attempt_id"]
    run = submit(boss, [{"name": "a", "run": "true", "inputs": ["in/mine.txt"]}], "mine")
    take = {"worker_id": me.worker_id, "free_slots": 1}
    status, got = call(boss, "POST", "/v1/sync", me.token, take)
    assert status == 200 and got["assignments"][0]["task"] == "a"
    mine = got["assignments"][0]["attempt_id"]
    token = me.token

    # What its attempt needs, it reads; its own attempt's log it sends.
    status, data = call(boss, "GET", "/v1/data/in/mine.txt", token)
    assert (status, data) == (200, b"mine")
    assert call(boss, "PUT", f"/v1/attempts/{mine}/log", token, "log")[0] == 200

    # Nothing else.
    assert forbidden(*call(boss, "POST", "/v1/runs", token, {"spec": {"tasks": []}}))
    assert forbidden(*call(boss, "POST", f"/v1/runs/{run}/cancel", token))
    assert forbidden(*call(boss, "POST", f"/v1/runs/{other}/cancel", token))
    assert forbidden(*call(boss, "GET", f"/v1/data/runs/{other}/secret/s.txt", token))
    assert forbidden(*call(boss, "GET", "/v1/data", token))
    assert forbidden(*call(boss, "GET", f"/v1/runs/{other}/results", token))
    assert forbidden(*call(boss, "POST", "/v1/sync", token, {"worker_id": them.worker_id}))
    assert forbidden(*call(boss, "DELETE", f"/v1/workers/{them.worker_id}", token))
    assert forbidden(*call(boss, "PUT", f"/v1/attempts/{held_by_them}/log", token, "forged"))
    assert forbidden(*call(boss, "POST", "/v1/workers", token, REG))
    assert forbidden(*call(boss, "GET", "/v1/tokens", token))
    assert boss.scheduler.run_view(other)["state"] == "running"
    assert [w["state"] for w in boss.scheduler.workers_view()] == ["active", "active"]


def test_tokens_are_stored_hashed(boss: RunningBoss) -> None:
    read = boss.boss.tokens.issue("dash", READ)
    own = register(boss, boss.token).token
    assert own is not None
    boss.stop()
    stored = b"".join(f.read_bytes() for f in boss.root.glob("shoal.db*"))
    for token in (read, own):
        assert token.encode() not in stored
        assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    boss.boss = type(boss.boss)(db=boss.root / "shoal.db", data=boss.root / "data", token="t")
    boss.boss.start()  # for the fixture to stop


def test_a_revoked_token_is_refused_at_once_and_so_are_its_workers(boss: RunningBoss) -> None:
    worker = boss.boss.tokens.issue("pool", WORKER)
    own = register(boss, worker).token
    assert call(boss, "POST", "/v1/workers", worker, REG)[0] == 200
    assert call(boss, "GET", "/v1/runs", boss.token)[0] == 200
    status, _ = call(boss, "DELETE", "/v1/tokens/pool", boss.token)
    assert status == 200
    assert call(boss, "POST", "/v1/workers", worker, REG)[0] == 401
    assert call(boss, "POST", "/v1/sync", own, {"worker_id": 1})[0] == 401
    listed = {t["name"]: t for t in call(boss, "GET", "/v1/tokens", boss.token)[1]}
    assert listed["pool"]["revoked"] is not None
    assert call(boss, "DELETE", "/v1/tokens/nope", boss.token)[0] == 404


def test_a_workers_token_ends_when_it_stops_or_its_launcher_says_it_is_gone(
    boss: RunningBoss,
) -> None:
    leaving, gone = register(boss, boss.token, "a"), register(boss, boss.token, "b")
    sync = {"worker_id": leaving.worker_id}
    assert call(boss, "POST", "/v1/sync", leaving.token, sync)[0] == 200
    assert call(boss, "DELETE", f"/v1/workers/{leaving.worker_id}", leaving.token)[0] == 200
    assert call(boss, "POST", "/v1/sync", leaving.token, sync)[0] == 401
    assert call(boss, "POST", f"/v1/workers/{gone.worker_id}/lost", boss.token, {})[0] == 200
    assert call(boss, "POST", "/v1/sync", gone.token, {"worker_id": gone.worker_id})[0] == 401


def test_tokens_expire(tmp_path: Path) -> None:
    now = [1000.0]
    store = Store(tmp_path / "shoal.db")
    tokens = Tokens(store, "admin", clock=lambda: now[0])
    short = tokens.issue("short", READ, expires_in=60)
    assert tokens.resolve(short) is not None
    now[0] += 61
    assert tokens.resolve(short) is None  # the cached credential too
    assert Tokens(store, "admin", clock=lambda: now[0]).resolve(short) is None
    assert [t["name"] for t in tokens.listing()] == ["short"]
    store.close()


def test_any_boss_on_the_database_takes_a_token_another_issued(db_url: str) -> None:
    """On SQLite and PostgreSQL: two bosses (two stores) on one database."""
    first, second = Store(db_url), Store(db_url)
    one, other = Tokens(first, "admin"), Tokens(second, "admin", ttl=0)
    read = one.issue("dash", READ)
    found = other.resolve(read)
    assert found is not None and found.kind == READ
    with first.transaction() as tx:
        worker_id = tx.insert_worker(
            name="w", host="h", slots=1, labels={}, now=1.0, pid=1, python="", version=""
        )
    pool = one.issue("pool", WORKER)
    parent = other.resolve(pool)
    assert parent is not None
    own = other.issue_for_worker(worker_id, "w", parent)
    mine = one.resolve(own)
    assert mine is not None and (mine.kind, mine.worker_id) == (PER_WORKER, worker_id)
    assert one.may_read(worker_id, "in/x") is False  # it runs nothing
    one.revoke("dash")
    one.revoke("pool")
    assert other.resolve(read) is None
    assert other.resolve(own) is None  # revoked with the token that registered it
    assert other.resolve("shoal_made-up") is None
    assert [t["revoked"] is not None for t in other.listing(per_worker=True)] == [True] * 3
    first.close()
    second.close()


def test_a_known_token_costs_no_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "shoal.db")
    tokens = Tokens(store, "admin")
    read = tokens.issue("dash", READ)
    assert tokens.resolve(read) is not None
    reads = []
    original = store.read
    monkeypatch.setattr(store, "read", lambda: reads.append(1) or original())
    for _ in range(100):
        assert tokens.resolve(read) is not None
        assert tokens.resolve("admin") is not None
    assert reads == []
    store.close()


def test_a_name_is_unique_and_checked(tmp_path: Path) -> None:
    from shoal.exceptions import BadInput

    store = Store(tmp_path / "shoal.db")
    tokens = Tokens(store, "admin")
    tokens.issue("dash", READ)
    with pytest.raises(BadInput, match="exists: revoke it first"):
        tokens.issue("dash", WORKER)
    with pytest.raises(BadInput, match="is not allowed"):
        tokens.issue("a b", READ)
    with pytest.raises(BadInput, match="no token kind"):
        tokens.issue("x", PER_WORKER)
    tokens.revoke("dash")
    tokens.issue("dash", WORKER)  # a revoked token's name is free again
    assert [(t["name"], t["kind"]) for t in tokens.listing()] == [("dash", WORKER)]
    store.close()


def test_an_agent_with_a_worker_token_runs_tasks_and_registers_again_when_its_own_ends(
    boss: RunningBoss, tmp_path: Path
) -> None:
    ds_root = Path(boss.boss.datastore.root)  # type: ignore[attr-defined]
    write(ds_root / "in" / "x.txt", "x")  # an input, which its own token may read
    worker = boss.boss.tokens.issue("pool", WORKER)
    agent = AgentThread(boss.url, worker, tmp_path / "work")
    try:
        first = submit(boss, [{"name": "a", "run": "cat in/x.txt", "inputs": ["in/x.txt"]}], "one")
        wait_for(lambda: boss.scheduler.run_view(first)["state"] != "running", what="run one")
        assert boss.scheduler.run_view(first)["state"] == "succeeded"
        assert agent.agent.client.own_token and agent.agent.client.token != worker
        # Its launcher says it is gone: its token ends, and it comes back as a new worker.
        gone = agent.agent.worker_id
        status, _ = call(boss, "POST", f"/v1/workers/{gone}/lost", boss.token, {})
        assert status == 200
        second = submit(boss, [{"name": "b", "run": "true"}], "two")
        wait_for(lambda: boss.scheduler.run_view(second)["state"] == "succeeded", what="run two")
        assert agent.agent.worker_id != gone
    finally:
        agent.stop()
    assert agent.code == 0


def test_an_older_boss_sends_no_token_and_the_agent_keeps_its_credential() -> None:
    from shoal.agent.client import AgentClient

    old = p.Registered.from_dict({"worker_id": 3, "lease_seconds": 30, "heartbeat_seconds": 5})
    assert old.token is None
    client = AgentClient("http://127.0.0.1:1", "given")
    client.call = lambda *a, **kw: old.to_dict()  # type: ignore[method-assign]
    client.register(p.Registration(name="w", host="h", slots=1))
    assert client.token == "given" and not client.own_token


def test_a_route_missing_from_the_table_is_the_boss_tokens_only() -> None:
    import asyncio

    from starlette.responses import PlainTextResponse

    from shoal.boss.auth import CREDENTIAL, scoped
    from shoal.boss.tokens import ADMIN_CREDENTIAL, Credential

    async def handler(request: Any) -> PlainTextResponse:
        return PlainTextResponse("done")

    (route,) = scoped([Route("/v1/new-thing", handler, methods=["POST"])])
    assert isinstance(route, Route)

    def status_for(credential: Credential) -> int:
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/new-thing",
            "headers": [],
            "query_string": b"",
            CREDENTIAL: credential,
        }
        asyncio.run(route.app(scope, receive, send))
        return int(sent[0]["status"])

    assert status_for(ADMIN_CREDENTIAL) == 200
    for kind in (READ, WORKER, PER_WORKER):
        assert status_for(Credential(kind, "x", worker_id=1)) == 403
