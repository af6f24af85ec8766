"""A worker whose time ends (``--end-at``: a Slurm job's walltime) against a real boss.

It takes no task whose timeout would outlast its time, drains before the
end, interrupts before the end what has no timeout (so that it runs again
elsewhere rather than being killed halfway), and exits on its own in time.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from shoal import spec
from shoal.client import BossClient
from tests.conftest import AgentThread, RunningBoss, sleeps_under, wait_for, write

TASKS = """
tasks:
  - {name: long, run: "true", timeout: 1h, priority: 9}
  - {name: short, run: sleep 0.2, timeout: 3s, priority: 5}
  - name: untimed
    run: '[ "$SHOAL_ATTEMPT" -gt 1 ] || sleep 60'
"""


def test_a_worker_near_its_end_drains_and_leaves_what_it_cannot_finish_to_others(
    boss: RunningBoss, tmp_path: Path
) -> None:
    with BossClient(boss.url, boss.token) as client:
        rid = client.submit(spec.load(write(tmp_path / "t.yaml", TASKS)))
        end_at = time.time() + 10.0  # drains 1 s before, interrupts 0.5 s before
        ending = AgentThread(
            boss.url, boss.token, tmp_path / "ending", slots=2, name="ending", end_at=end_at
        )
        ending.thread.join(30)
        assert not ending.thread.is_alive(), "the worker did not end on its own"
        assert ending.code == 0
        assert time.time() < end_at, "it was still there when its time was up"

        tasks = {t["name"]: t for t in client.tasks(rid)}
        assert tasks["short"]["state"] == "succeeded"
        # Never given the hour-long task; the untimed one interrupted, not killed.
        assert tasks["long"]["state"] == "ready" and tasks["long"]["attempts"] == 0
        assert tasks["untimed"]["state"] == "ready" and tasks["untimed"]["attempts"] == 1
        untimed = tasks["untimed"]["id"]
        kinds = [e["kind"] for e in client.events(rid) if e["task_id"] == untimed]
        assert "attempt_interrupted" in kinds, kinds
        # Its goodbye says why it left.
        with sqlite3.connect(boss.root / "shoal.db") as db:
            said = db.execute("SELECT detail FROM events WHERE kind = 'worker_stopped'").fetchall()
        assert said == [("its time ran out (--end-at): it drained",)]

        # Nothing is lost: a worker with time finishes the run.
        other = AgentThread(boss.url, boss.token, tmp_path / "other", slots=2, name="other")
        try:
            deadline = time.monotonic() + 60
            while client.run(rid)["state"] == "running" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.run(rid)["state"] == "succeeded"
        finally:
            other.stop()


def test_end_at_must_be_a_time(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shoal.agent", "--boss=http://127.0.0.1:9", "--end-at=-5"],
        env={**os.environ, "SHOAL_TOKEN": "t"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "shoal worker: --end-at must be a time (seconds since 1970)"


def test_a_task_killed_along_with_its_stopping_worker_runs_again_elsewhere(
    boss: RunningBoss, tmp_path: Path
) -> None:
    # As when Slurm cancels a job: every process of it is sent SIGTERM, the
    # task's command and the worker alike, in no particular order.
    with BossClient(boss.url, boss.token) as client:
        rid = client.submit(
            spec.load(
                write(
                    tmp_path / "t.yaml",
                    "tasks:\n  - {name: doomed, run: 'sleep 60'}\n"
                    "  - {name: alone, run: 'sleep 60'}\n",
                )
            )
        )
        w = AgentThread(boss.url, boss.token, tmp_path / "w", slots=2, name="w")
        try:
            sleeps = wait_for(lambda: sleeps_under(os.getpid()), what="the tasks to start")
            wait_for(lambda: len(sleeps_under(os.getpid())) == 2, what="both tasks to start")
            sleeps = sleeps_under(os.getpid())
            # One task killed alone: its own failure, as before.
            os.kill(sleeps[0], signal.SIGTERM)
            wait_for(
                lambda: any(t["state"] == "failed" for t in client.tasks(rid)),
                what="a task to fail",
            )
            # The other killed as its worker is stopped: it went down with it.
            os.kill(sleeps[1], signal.SIGTERM)
            w.agent.request_stop()
            w.thread.join(30)
        finally:
            w.stop()
        tasks = {t["name"]: t for t in client.tasks(rid)}
        states = sorted(t["state"] for t in tasks.values())
        assert states == ["failed", "ready"], tasks
        (again,) = [t for t in tasks.values() if t["state"] == "ready"]
        kinds = [e["kind"] for e in client.events(rid) if e["task_id"] == again["id"]]
        assert "attempt_interrupted" in kinds, kinds
