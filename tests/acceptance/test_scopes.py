"""Scoped credentials as a user meets them: `shoal tokens`, a worker machine, the dashboard.

A worker machine holds a worker token: whoever takes the machine over can
register with it and sync, and nothing more: not submit a run, cancel one,
read another run's outputs or act as another worker. Launchers hand their
agents such a token, never the boss's own.
"""

from __future__ import annotations

import http.client
import json
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from shoal.launch.contract import Pool
from shoal.launch.up import up
from shoal.statedir import StateDir
from tests.conftest import (
    Procs,
    alive,
    descendants,
    shoal,
    shoal_json,
    start_boss,
    wait_for,
    write,
)

SLOW = """
tasks:
  - name: secret
    run: echo classified > s.txt
    outputs: [s.txt]
  - name: hold
    after: [secret]
    run: sleep 600
"""


def call(
    url: str, method: str, path: str, token: str | None = None, body: Any = None, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
        got["set-cookie"] = "\n".join(resp.msg.get_all("set-cookie") or [])
        if (resp.getheader("Content-Type") or "").startswith("application/json"):
            return resp.status, json.loads(raw), got
        return resp.status, raw, got
    finally:
        conn.close()


def refused(answer: tuple[int, Any, dict[str, str]]) -> str:
    """The one line a 403 says."""
    status, body, _ = answer
    assert status == 403, (status, body)
    assert isinstance(body["error"], str) and "\n" not in body["error"]
    return str(body["error"])


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def test_a_worker_credential_cannot_submit_cancel_or_read_another_runs_data(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    url, admin = info["url"], info["token"]
    added = shoal("tokens", "add", "rack-1", "--worker", "--out", "rack-1.token", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    token_file = tmp_path / "rack-1.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    worker_token = token_file.read_text().strip()
    assert worker_token and worker_token not in added.stdout + added.stderr

    # A real agent, started with the worker token, runs the other run.
    procs.start(
        "worker",
        "--boss",
        url,
        "--name",
        "real",
        cwd=tmp_path,
        env={"SHOAL_TOKEN_FILE": str(token_file)},
    )
    write(tmp_path / "t.yaml", SLOW)
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: any(
            t["state"] == "running"
            for t in shoal_json("tasks", cwd=tmp_path)
            if t["name"] == "hold"
        ),
        timeout=60,
        what="the real worker to run 'hold'",
    )
    run = shoal_json("status", cwd=tmp_path)["run"]
    real = next(w for w in shoal_json("workers", cwd=tmp_path) if w["name"] == "real")

    # The attacker on the worker's machine: the worker token registers, and no more.
    submit = {"spec": {"tasks": [{"name": "x", "run": "touch /tmp/pwned"}]}}
    for token in (worker_token,):
        assert "may only register a worker" in refused(call(url, "POST", "/v1/runs", token, submit))
        refused(call(url, "POST", f"/v1/runs/{run}/cancel", token))
    status, reg, _ = call(
        url, "POST", "/v1/workers", worker_token, {"name": "evil", "host": "h", "slots": 1}
    )
    assert status == 200 and reg["token"]
    own, evil_id = reg["token"], reg["worker_id"]

    # Its own token syncs as itself, and nothing more.
    assert call(url, "POST", "/v1/sync", own, {"worker_id": evil_id})[0] == 200
    refused(call(url, "POST", "/v1/runs", own, submit))
    refused(call(url, "POST", f"/v1/runs/{run}/cancel", own))
    refused(call(url, "GET", f"/v1/data/runs/{run}/secret/s.txt", own))
    refused(call(url, "GET", f"/v1/runs/{run}/results", own))
    refused(call(url, "POST", "/v1/sync", own, {"worker_id": real["id"], "free_slots": 1}))
    refused(call(url, "DELETE", f"/v1/workers/{real['id']}", own))

    # Nothing changed: the run goes on, on the real worker; the admin token reads the output.
    assert shoal_json("status", cwd=tmp_path)["state"] == "running"
    assert [w["state"] for w in shoal_json("workers", cwd=tmp_path) if w["name"] == "real"] == [
        "active"
    ]
    status, data, _ = call(url, "GET", f"/v1/data/runs/{run}/secret/s.txt", admin)
    assert (status, data) == (200, b"classified\n")
    assert shoal("cancel", str(run), cwd=tmp_path).returncode == 0  # the admin token may


def test_a_read_token_views_the_dashboard_and_metrics_and_cannot_cancel(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    url = info["url"]
    write(tmp_path / "t.yaml", SLOW)  # no worker: the run waits
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    added = shoal("tokens", "add", "wall-screen", "--read", "--expires", "30d", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    read = added.stdout.strip()

    status, metrics, _ = call(url, "GET", "/metrics", read)
    assert status == 200 and b"shoal_" in metrics
    assert call(url, "GET", "/v1/runs/latest", read)[0] == 200
    refused(call(url, "POST", "/v1/runs/latest/cancel", read))

    # Logged in to the dashboard with it: it reads, and can change nothing.
    form = urlencode({"token": read}).encode()
    status, _, headers = call(
        url, "POST", "/login", None, form, **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 303
    cookies = dict(line.split(";")[0].split("=", 1) for line in headers["set-cookie"].splitlines())
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status, page, _ = call(url, "GET", "/", None, Cookie=cookie)
    assert status == 200 and b"shoal" in page
    assert call(url, "GET", "/v1/runs", None, Cookie=cookie)[0] == 200
    same_page = {"Cookie": cookie, "Origin": url, "X-Shoal-CSRF": cookies["shoal_csrf"]}
    refused(call(url, "POST", "/v1/runs/latest/cancel", None, **same_page))
    assert shoal_json("status", cwd=tmp_path)["state"] == "running"

    # A worker token cannot log in at all.
    worker = shoal("tokens", "add", "w", "--worker", cwd=tmp_path).stdout.strip()
    form = urlencode({"token": worker}).encode()
    status, _, _ = call(
        url, "POST", "/login", None, form, **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 401


def test_tokens_add_ls_revoke_and_a_revoked_token_is_refused(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    url = info["url"]
    made = shoal("tokens", "add", "grafana", "--read", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    read = made.stdout.strip()
    assert call(url, "GET", "/metrics", read)[0] == 200

    listed = shoal_json("tokens", "ls", cwd=tmp_path)
    assert [(t["name"], t["kind"], t["revoked"]) for t in listed] == [("grafana", "read", None)]
    assert read not in json.dumps(listed)
    table = shoal("tokens", "ls", cwd=tmp_path).stdout
    header = table.splitlines()[0].split()
    assert header == ["name", "kind", "created", "expires", "last", "used", "revoked"]
    assert "grafana" in table and read not in table

    again = shoal("tokens", "add", "grafana", "--read", cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
    neither = shoal("tokens", "add", "x", cwd=tmp_path)
    assert neither.returncode == 2 and "--read or --worker" in neither.stderr
    bad = shoal("tokens", "add", "x", "--read", "--expires", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "--expires" in bad.stderr and "Traceback" not in bad.stderr

    revoked = shoal("tokens", "revoke", "grafana", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    status, body, _ = call(url, "GET", "/metrics", read)
    assert status == 401 and "token" in body["error"]
    assert shoal_json("tokens", "ls", cwd=tmp_path)[0]["revoked"] is not None
    unknown = shoal("tokens", "revoke", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no token named 'nope'" in unknown.stderr


def test_shoal_run_hands_its_workers_a_worker_token_not_the_boss_one(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "tasks:\n  - name: a\n    run: echo $SHOAL_WORKER\n")
    proc = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    admin = (tmp_path / ".shoal" / "token").read_text().strip()
    logs = "".join(p.read_text() for p in (tmp_path / ".shoal" / "logs").glob("*"))
    assert admin not in logs

    # The boss is gone with the run: its database says what the workers held.
    from shoal.boss.tokens import Tokens
    from shoal.store import Store

    store = Store(tmp_path / ".shoal" / "shoal.db")
    try:
        listed = Tokens(store, admin).listing(per_worker=True)
    finally:
        store.close()
    launch = [t for t in listed if t["kind"] == "worker"]
    assert len(launch) == 1 and launch[0]["name"].startswith("run-agents-")
    assert launch[0]["revoked"] is not None  # ended with the run
    assert {t["kind"] for t in listed} == {"worker", "per-worker"}


def test_shoal_up_hands_its_agents_a_worker_token_not_the_boss_one(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    state = StateDir(tmp_path / ".shoal")
    brought = up(
        state,
        [Pool(name="cpu", provider="local", count=1)],
        boss_url=info["url"],
        token=info["token"],
    )
    kept = json.loads((state.root / "up.json").read_text())
    procs.extra.append(kept["pid"])
    assert [(b.host, b.error) for b in brought] == [("cpu-1", None)]
    agents = [pid for pid in descendants(kept["pid"]) if alive(pid)]
    assert agents, "no agent under the keeper"
    # The token reaches them on stdin: none is in an environment a task could read.
    for pid in [kept["pid"], *agents]:
        assert not {"SHOAL_TOKEN", "SHOAL_TOKEN_FILE"} & environ(pid).keys()
    listed = shoal_json("tokens", "ls", cwd=tmp_path)
    assert [(t["kind"], t["revoked"]) for t in listed] == [("worker", None)]
    assert listed[0]["name"].startswith("up-agents-")
    # The agent registered with that worker token (the keeper only made it), not the boss's.
    assert listed[0]["last_used"] is not None
    workers = [t for t in shoal_json("tokens", "ls", "--all", cwd=tmp_path) if t["worker"]]
    assert [t["kind"] for t in workers] == ["per-worker"]
    assert shoal("down", cwd=tmp_path).returncode == 0
    wait_for(lambda: not alive(kept["pid"]), what="the keeper to stop")
    assert shoal_json("tokens", "ls", cwd=tmp_path)[0]["revoked"] is not None
