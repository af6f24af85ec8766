"""`shoal boss`, `shoal worker` and the commands that talk to them, as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import (
    SRC,
    Procs,
    boss_info,
    shoal,
    shoal_json,
    start_boss,
    start_worker,
    wait_for,
    write,
)


def test_boss_workers_and_two_runs_submitted_at_once(tmp_path: Path, procs: Procs) -> None:
    state = tmp_path / ".shoal"
    boss = procs.start("boss", "--listen", "127.0.0.1:0", cwd=tmp_path)
    info = wait_for(lambda: boss_info(state), what="the boss to start")
    token = (state / "token").read_text().strip()
    assert info["token"] == token and oct((state / "token").stat().st_mode & 0o777) == "0o600"
    for i in (1, 2):
        start_worker(procs, tmp_path, info, f"w{i}", slots=2)
    wait_for(lambda: len(shoal_json("workers", cwd=tmp_path)) == 2, what="two workers")

    write(
        tmp_path / "a.yaml",
        "name: alpha\ntasks:\n  - name: a-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6]}\n    run: echo {i}\n",
    )
    write(
        tmp_path / "b.yaml",
        "name: beta\ntasks:\n  - {name: first, run: echo 1}\n  - {name: second, run: 'echo $((1 + 1))', after: [first]}\n",
    )
    submits = [
        subprocess.Popen(
            [sys.executable, "-m", "shoal", "submit", "-q", f],
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=SRC),
            stdout=subprocess.PIPE,
            text=True,
        )
        for f in ("a.yaml", "b.yaml")
    ]
    run_ids = sorted(int(p.communicate(timeout=30)[0].strip()) for p in submits)
    assert all(p.returncode == 0 for p in submits)

    for rid in run_ids:
        wait_for(
            lambda rid=rid: shoal_json("status", str(rid), cwd=tmp_path)["state"] == "succeeded",
            what=f"run {rid}",
        )
    assert shoal_json("results", "alpha", cwd=tmp_path) == {f"a-{i}": i for i in range(1, 7)}
    assert shoal_json("results", "beta", cwd=tmp_path) == {"first": 1, "second": 2}
    runs = shoal_json("status", "all", cwd=tmp_path)
    assert {r["name"] for r in runs} == {"alpha", "beta"}
    workers = shoal_json("workers", cwd=tmp_path)
    assert sum(w["done"] for w in workers) == 8 and {w["name"] for w in workers} == {"w1", "w2"}

    table = shoal("tasks", "beta", cwd=tmp_path)
    assert table.returncode == 0 and "second" in table.stdout and "succeeded" in table.stdout
    assert shoal("logs", "second", "--run", "beta", cwd=tmp_path).stdout == "2\n"
    events = shoal_json("events", "beta", cwd=tmp_path)
    assert (
        next(e["kind"] for e in events) == "run_submitted" and events[-1]["kind"] == "run_succeeded"
    )

    # Cancel a long run, then retry it.
    write(
        tmp_path / "slow.yaml",
        "name: slow\ntasks:\n  - {name: nap, run: sleep 30}\n  - {name: after-nap, run: 'true', after: [nap]}\n",
    )
    rid = shoal("submit", "-q", "slow.yaml", cwd=tmp_path).stdout.strip()
    wait_for(
        lambda: shoal_json("status", rid, cwd=tmp_path)["counts"].get("running") == 1,
        what="nap to start",
    )
    out = shoal("cancel", rid, cwd=tmp_path)
    assert out.returncode == 0 and "2 tasks cancelled" in out.stdout
    assert shoal_json("status", rid, cwd=tmp_path)["state"] == "cancelled"
    wait_for(
        lambda: all(w["running"] == 0 for w in shoal_json("workers", cwd=tmp_path)),
        what="the attempt to stop",
    )
    out = shoal("retry", rid, cwd=tmp_path)
    assert "2 tasks will run again" in out.stdout
    assert shoal_json("status", rid, cwd=tmp_path)["state"] == "running"
    shoal("cancel", rid, cwd=tmp_path)

    boss.send_signal(signal.SIGTERM)
    assert boss.wait(15) in (0, 130, -signal.SIGTERM)


def test_wrong_token_and_no_boss(tmp_path: Path, procs: Procs) -> None:
    proc = shoal("status", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and "no shoal state in" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    info = start_boss(procs, tmp_path)
    bad = shoal("status", "--boss", info["url"], "--token", "wrong", cwd=tmp_path)
    assert bad.returncode == 2 and "refused the token" in bad.stderr
    worker = shoal("worker", "--boss", info["url"], "--token", "wrong", cwd=tmp_path, timeout=30)
    assert worker.returncode == 2 and "refused" in worker.stderr
    second = shoal("boss", "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert second.returncode == 2 and "already serves" in second.stderr
    dead = shoal("status", "--boss", "http://127.0.0.1:9", "--token", "x", cwd=tmp_path)
    assert dead.returncode == 1 and "cannot reach the boss" in dead.stderr


def test_worker_idle_exit(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    start = time.monotonic()
    proc = shoal(
        "worker",
        "--boss",
        info["url"],
        "--idle-exit",
        "1",
        cwd=tmp_path,
        env={"SHOAL_TOKEN": info["token"]},
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 15
    assert '"event": "idle_exit"' in proc.stderr
    assert shoal_json("workers", cwd=tmp_path)[0]["state"] == "stopped"


def test_logs_follow_a_running_task(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info)
    gate = tmp_path / "gate"
    write(
        tmp_path / "talk.yaml",
        f"name: talk\ntasks:\n  - name: talker\n    run: echo first line; while [ ! -e {gate} ]; do sleep 0.1; done; echo last line\n",
    )
    shoal("submit", "talk.yaml", cwd=tmp_path)
    env = dict(os.environ, PYTHONPATH=SRC)
    follower = subprocess.Popen(
        [sys.executable, "-m", "shoal", "logs", "talker", "-f"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        # The first line arrives while the task still runs (it waits for the gate).
        assert follower.stdout.readline() == "first line\n"
        assert shoal_json("status", "talk", cwd=tmp_path)["counts"] == {"running": 1}
        gate.touch()
        assert follower.stdout.readline() == "last line\n"
        assert follower.wait(20) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        if follower.stdout:
            follower.stdout.close()
