"""Nothing lost: dead workers, a killed boss, stragglers, stops and re-runs.

Every test runs the real `shoal` commands as processes and checks what a user
would: every task succeeded exactly once, with the expected result.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    SRC,
    Procs,
    alive,
    boss_info,
    descendants,
    free_port,
    shoal,
    shoal_json,
    sleeps_under,
    start_boss,
    start_worker,
    wait_for,
    write,
)


def kill_machine(procs: Procs, worker: subprocess.Popen[str]) -> None:
    """SIGKILL a worker and everything it started, as if its machine died."""
    victims = descendants(worker.pid)
    worker.kill()
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.wait()


def succeeded_once(cwd: Path, run: str) -> dict[str, dict[str, Any]]:
    """Each task of the run, checked to have exactly one succeeded attempt."""
    tasks = {t["name"]: t for t in shoal_json("tasks", run, cwd=cwd)}
    events = shoal_json("events", run, cwd=cwd)
    wins = Counter(e["task_id"] for e in events if e["kind"] == "task_succeeded")
    assert all(n == 1 for n in wins.values()), [t for t, n in wins.items() if n != 1]
    assert len(wins) == len(tasks)
    return tasks


def test_workers_killed_at_random_lose_nothing(tmp_path: Path, procs: Procs) -> None:
    rng = random.Random(7)
    ledger = tmp_path / "ledger"
    naps = {i: round(rng.uniform(0.2, 1.0), 2) for i in range(300)}
    tasks = [
        {"name": f"t{i}", "run": f"sleep {nap}; echo t{i} >> {ledger}; echo t{i}", "retries": 0}
        for i, nap in naps.items()
    ]
    write(tmp_path / "chaos.json", json.dumps({"name": "chaos", "tasks": tasks}))
    # A machine dies every second here: far more than the default 3 losses
    # a task may suffer before it fails; allow enough that none is unlucky.
    info = start_boss(procs, tmp_path, "--lease", "2", "--max-losses", "50")
    workers = [start_worker(procs, tmp_path, info, f"w{i}", slots=4) for i in range(3)]
    assert shoal("submit", "chaos.json", cwd=tmp_path).returncode == 0
    deadline = time.monotonic() + 240
    killed = 0
    while shoal_json("status", "chaos", cwd=tmp_path)["state"] == "running":
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(1)
        victim = rng.randrange(len(workers))
        kill_machine(procs, workers[victim])
        killed += 1
        workers[victim] = start_worker(procs, tmp_path, info, f"w{victim}-{killed}", slots=4)
    assert killed >= 5
    assert shoal_json("status", "chaos", cwd=tmp_path)["state"] == "succeeded"
    done = succeeded_once(tmp_path, "chaos")
    assert {name: t["result"] for name, t in done.items()} == {f"t{i}": f"t{i}" for i in range(300)}
    # At least once: every task left its line; the lost ones may have left two.
    assert set(ledger.read_text().split()) == {f"t{i}" for i in range(300)}
    lost = [t for t in done.values() if t["attempts"] > 1]
    assert lost, "no worker was killed while it held a task"
    attempts = shoal_json_task(tmp_path, "chaos", lost[0]["name"])["attempt_list"]
    assert any(
        a["state"] == "lost" and a["cause"].startswith("lost: no sync for") for a in attempts
    )


def shoal_json_task(cwd: Path, run: str, task: str) -> dict[str, Any]:
    from shoal.client import OfflineClient
    from shoal.statedir import StateDir

    info = boss_info(cwd / ".shoal")
    if info is not None and alive(int(info["pid"])):
        from shoal.client import BossClient

        with BossClient(info["url"], info["token"]) as client:
            return client.task(run, task)
    offline = OfflineClient(StateDir(cwd / ".shoal"))
    try:
        return offline.task(run, task)
    finally:
        offline.close()


def test_boss_killed_and_restarted_carries_on(tmp_path: Path, procs: Procs) -> None:
    port = free_port()
    ledger = tmp_path / "ledger"
    write(
        tmp_path / "steady.yaml",
        f"name: steady\ntasks:\n  - name: t-{{i}}\n    matrix: {{i: {list(range(60))}}}\n"
        f"    run: sleep 0.3; echo t-{{i}} >> {ledger}; echo {{i}}\n",
    )
    info = start_boss(procs, tmp_path, listen=f"127.0.0.1:{port}")
    for i in range(2):
        start_worker(procs, tmp_path, info, f"w{i}", slots=2)
    assert shoal("submit", "steady.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: len(ledger.read_text().split()) >= 15 if ledger.exists() else False, what="progress"
    )
    first_boss = procs.procs[0]
    first_boss.kill()
    first_boss.wait()
    time.sleep(2)  # the workers keep running and retry their syncs meanwhile
    start_boss(procs, tmp_path, listen=f"127.0.0.1:{port}")
    wait_for(
        lambda: shoal_json("status", "steady", cwd=tmp_path)["state"] != "running",
        timeout=90,
        what="the run to finish after the restart",
    )
    assert shoal_json("status", "steady", cwd=tmp_path)["state"] == "succeeded"
    done = succeeded_once(tmp_path, "steady")
    assert sorted(t["result"] for t in done.values()) == list(range(60))
    assert set(ledger.read_text().split()) == {f"t-{i}" for i in range(60)}
    assert {w["name"] for w in shoal_json("workers", cwd=tmp_path)} == {"w0", "w1"}


def test_stopped_worker_gets_a_backup_and_its_late_report_is_dropped(
    tmp_path: Path, procs: Procs
) -> None:
    write(
        tmp_path / "group.yaml",
        "name: group\ntasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6]}\n    run: sleep 1; echo {i}\n",
    )
    info = start_boss(procs, tmp_path, "--lease", "120", "--speculate-min", "1")
    workers = {f"w{i}": start_worker(procs, tmp_path, info, f"w{i}") for i in range(3)}
    assert shoal("submit", "group.yaml", cwd=tmp_path).returncode == 0

    def a_task_on_a_worker_after_two_finished() -> tuple[str, str] | None:
        tasks = shoal_json("tasks", "group", cwd=tmp_path)
        if sum(t["state"] == "succeeded" for t in tasks) < 2:
            return None
        running = [t for t in tasks if t["state"] == "running" and t["worker"]]
        return (running[0]["name"], running[0]["worker"]) if running else None

    task, worker = wait_for(a_task_on_a_worker_after_two_finished, what="a task to stop")
    stopped = workers[worker]
    os.kill(stopped.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_for(
            lambda: shoal_json("status", "group", cwd=tmp_path)["state"] != "running",
            timeout=30,
            what="the backup attempt to finish the run",
        )
        took = time.monotonic() - stopped_at
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    assert shoal_json("status", "group", cwd=tmp_path)["state"] == "succeeded"
    assert took < 15, f"the run needed {took:.1f}s after the worker stopped"
    attempts = shoal_json_task(tmp_path, "group", task)["attempt_list"]
    assert sorted(a["state"] for a in attempts) == ["succeeded", "superseded"]
    assert [a["worker"] for a in attempts if a["state"] == "superseded"] == [worker]
    # The stopped worker wakes, finishes or is told to stop; what it says is dropped.
    wait_for(
        lambda: (
            any(e["kind"] == "report_dropped" for e in shoal_json("events", "group", cwd=tmp_path))
            or not any(w["running"] for w in shoal_json("workers", cwd=tmp_path))
        ),
        what="the late report",
    )
    succeeded_once(tmp_path, "group")
    assert shoal_json("results", "group", cwd=tmp_path) == {f"t-{i}": i for i in range(1, 7)}


def test_sigterm_drains_and_a_second_sigterm_or_sigusr1_interrupts(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    worker = start_worker(procs, tmp_path, info, "drainer")
    write(
        tmp_path / "nap.yaml", "name: nap\ntasks:\n  - {name: nap, run: 'sleep 1.5; echo rested'}\n"
    )
    shoal("submit", "nap.yaml", cwd=tmp_path)
    wait_for(
        lambda: shoal_json("status", "nap", cwd=tmp_path)["counts"].get("running") == 1, what="nap"
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert shoal_json("results", "nap", cwd=tmp_path) == {"nap": "rested"}
    assert shoal_json("workers", cwd=tmp_path)[0]["state"] == "stopped"

    write(tmp_path / "long.yaml", "name: long\ntasks:\n  - {name: long, run: sleep 60}\n")
    shoal("submit", "long.yaml", cwd=tmp_path)
    second = start_worker(procs, tmp_path, info, "impatient")
    wait_for(
        lambda: shoal_json("status", "long", cwd=tmp_path)["counts"].get("running") == 1,
        what="long",
    )
    sleeper = sleeps_under(second.pid)
    second.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
    assert not any(alive(p) for p in sleeper)
    task = shoal_json_task(tmp_path, "long", "long")
    assert task["state"] == "ready"  # at once, not after a lease
    assert task["attempt_list"][0]["state"] == "interrupted"

    # SIGUSR1 interrupts with one signal (two SIGTERMs sent together may arrive as one).
    third = start_worker(procs, tmp_path, info, "hasty")
    wait_for(
        lambda: shoal_json("status", "long", cwd=tmp_path)["counts"].get("running") == 1,
        what="long again",
    )
    sleeper = sleeps_under(third.pid)
    third.send_signal(signal.SIGUSR1)
    assert third.wait(20) == 0
    assert not any(alive(p) for p in sleeper)
    states = [a["state"] for a in shoal_json_task(tmp_path, "long", "long")["attempt_list"]]
    assert states == ["interrupted", "interrupted"]


def test_interrupted_run_resumes_only_unfinished_tasks(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    write(
        tmp_path / "t.yaml",
        f"""
tasks:
  - name: quick-{{i}}
    matrix: {{i: [1, 2, 3, 4]}}
    run: echo quick-{{i}} >> {ledger}; echo {{i}}
  - name: slow
    after: ["quick-*"]
    run: sleep ${{NAP:-60}}; echo slow >> {ledger}; echo slept
""",
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", "t.yaml", "-j", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: ledger.exists() and len(ledger.read_text().split()) == 4, what="quick tasks"
        )
        wait_for(lambda: sleeps_under(proc.pid), what="slow to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    again = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path, env={"NAP": "0"})
    assert again.returncode == 0, again.stderr
    assert "4 cached" in again.stdout
    assert sorted(ledger.read_text().split()) == [
        "quick-1",
        "quick-2",
        "quick-3",
        "quick-4",
        "slow",
    ]
    tasks = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    assert all(
        tasks[f"quick-{i}"]["cached"] and tasks[f"quick-{i}"]["result"] == i for i in range(1, 5)
    )
    assert tasks["slow"]["result"] == "slept" and not tasks["slow"]["cached"]
    fresh = shoal("run", "t.yaml", "-j", "2", "--fresh", "-q", cwd=tmp_path, env={"NAP": "0"})
    assert fresh.returncode == 0
    assert len(ledger.read_text().split()) == 10


@pytest.mark.parametrize("kill", ["SIGKILL"])
def test_shoal_run_killed_then_run_again_finishes_the_work(tmp_path: Path, kill: str) -> None:
    ledger = tmp_path / "ledger"
    write(
        tmp_path / "t.yaml",
        f"tasks:\n  - name: t-{{i}}\n    matrix: {{i: [1, 2, 3, 4, 5, 6, 7, 8]}}\n"
        f"    run: sleep 0.4; echo t-{{i}} >> {ledger}\n",
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", "t.yaml", "-j", "2", "-q"], cwd=tmp_path, env=env
    )
    wait_for(lambda: ledger.exists() and len(ledger.read_text().split()) >= 3, what="some tasks")
    family = descendants(proc.pid)
    proc.send_signal(getattr(signal, kill))
    proc.wait()
    # Its workers notice that `shoal run` is gone and stop, with their tasks.
    wait_for(lambda: not any(alive(p) for p in family), timeout=20, what="the orphans to stop")
    recorded = [
        t["name"] for t in shoal_json("tasks", "1", cwd=tmp_path) if t["state"] == "succeeded"
    ]
    assert recorded
    again = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    # What the boss recorded before it died is not run again.
    assert f"{len(recorded)} cached" in again.stdout
    assert set(ledger.read_text().split()) == {f"t-{i}" for i in range(1, 9)}
    runs = shoal_json("status", "all", cwd=tmp_path)
    assert [r["state"] for r in runs] == ["succeeded", "cancelled"]
