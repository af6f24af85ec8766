"""`shoal run` as a user runs it: the real command, real processes, real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SRC, alive, descendants, shoal, shoal_json, sleeps_under, wait_for, write

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_estimates_pi(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = shoal("run", "examples/quickstart.yaml", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "succeeded" in proc.stdout and "pi" in proc.stdout
    result = shoal_json("results", cwd=tmp_path)["pi"]
    assert result["chunks"] == 16 and result["darts"] == 16 * 200000
    assert abs(result["pi"] - 3.14159) < 0.01
    status = shoal_json("status", cwd=tmp_path)
    assert status["state"] == "succeeded" and status["counts"] == {"succeeded": 18}
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert len(tasks) == 18
    for t in tasks:
        assert {"name", "state", "attempts", "exit_code", "result", "worker", "duration"} <= set(t)
        assert t["state"] == "succeeded" and t["attempts"] == 1 and t["exit_code"] == 0
    assert (tmp_path / ".shoal" / "shoal.db").exists()


def test_run_json_form(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: a-{i}\n    matrix: {i: [1, 2, 3]}\n    run: echo {i}\n",
    )
    proc = shoal("run", "t.yaml", "-j", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["state"] == "succeeded" and out["counts"] == {"succeeded": 3}
    assert out["results"] == {"a-1": 1, "a-2": 2, "a-3": 3}


BAD_INPUTS = {
    "syntax.yaml": ("tasks:\n  - name: a\n    run: [x\n", ":4: invalid YAML"),
    "syntax.json": ('[{"name": "a", "run": "x",}]', ":1: invalid JSON"),
    "unknown.yaml": (
        "tasks:\n  - name: a\n    run: x\n    retires: 2\n",
        ":4: task 'a': unknown field 'retires' (did you mean 'retries'?)",
    ),
    "duplicate.yaml": (
        "tasks:\n  - {name: a, run: x}\n  - {name: a, run: y}\n",
        ":3: task 'a': duplicate task name",
    ),
    "after.yaml": (
        "tasks:\n  - {name: a, run: x, after: [b]}\n",
        ":2: task 'a': 'after' names no task 'b'",
    ),
    "cycle.yaml": (
        "tasks:\n  - {name: a, run: x, after: [b]}\n  - {name: b, run: x, after: [a]}\n",
        "dependency cycle a -> b -> a",
    ),
    "matrix.yaml": (
        "tasks:\n  - name: a\n    matrix: [1, 2]\n    run: x\n",
        ":3: task 'a': 'matrix' must be a mapping of lists",
    ),
    "timeout.yaml": (
        "tasks:\n  - name: a\n    run: x\n    timeout: 10 years\n",
        ":4: task 'a': 'timeout': bad duration",
    ),
    "bundle.yaml": (
        "bundle: missing-folder\ntasks:\n  - {name: a, run: x}\n",
        ":1: bundle folder 'missing-folder' does not exist",
    ),
    "slots.yaml": (
        "tasks:\n  - {name: big, run: x, slots: 4}\n",
        "task 'big' needs 4 slots but each local worker has 1",
    ),
}


def test_bad_input_exits_2_with_one_line_and_keeps_what_was_stored(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "tasks:\n  - {name: kept, run: echo 42}\n")
    assert shoal("run", "good.yaml", "-j", "1", cwd=tmp_path).returncode == 0
    for name, (text, expected) in BAD_INPUTS.items():
        write(tmp_path / name, text)
        proc = shoal("run", name, "-j", "1", cwd=tmp_path)
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (name, proc.stderr)
        assert lines[0].startswith(f"shoal: {name}"), lines[0]
        assert expected in lines[0], (name, lines[0])
        assert "Traceback" not in proc.stderr + proc.stdout
    assert shoal_json("results", cwd=tmp_path) == {"kept": 42}
    assert len(shoal_json("status", "all", cwd=tmp_path)) == 1


def test_missing_file_and_bad_option(tmp_path: Path) -> None:
    proc = shoal("run", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "nope.yaml: no such file" in proc.stderr
    proc = shoal("run", "nope.yaml", "--jobz", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_failing_task_fails_the_run_while_unrelated_tasks_finish(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        """
tasks:
  - name: broken
    run: [echo step one, echo the disk is full >&2, exit 3]
  - name: downstream
    after: [broken]
    run: echo never
  - name: other-{i}
    matrix: {i: [1, 2, 3, 4]}
    run: echo {i}
""",
    )
    proc = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    assert "broken" in out and "exit code 3" in out and "the disk is full" in out
    assert out.index("broken") < out.index("1 failed")
    tasks = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    assert tasks["broken"]["state"] == "failed" and tasks["broken"]["exit_code"] == 3
    assert tasks["downstream"]["state"] == "upstream_failed"
    assert all(tasks[f"other-{i}"]["state"] == "succeeded" for i in range(1, 5))
    log = shoal("logs", "broken", cwd=tmp_path)
    assert (
        "step one" in log.stdout
        and "the disk is full" in log.stdout
        and "exit code 3" in log.stderr
    )
    failed = shoal_json("tasks", "--only", "failed", cwd=tmp_path)
    assert [t["name"] for t in failed] == ["broken"]


def test_retries_and_timeouts(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        f"""
tasks:
  - name: flaky
    retries: 2
    run: echo try >> {tmp_path}/tries; test $(wc -l < {tmp_path}/tries) -ge 2
  - name: stuck
    timeout: 1s
    run: sleep 30
""",
    )
    start = time.monotonic()
    proc = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 1
    assert time.monotonic() - start < 20
    tasks = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    assert tasks["flaky"]["state"] == "succeeded" and tasks["flaky"]["attempts"] == 2
    assert tasks["stuck"]["state"] == "failed" and tasks["stuck"]["cause"] == "timeout after 1s"


def test_ctrl_c_cancels_cleanly_and_leaves_no_process(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: s-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 60 & sleep 60; wait\n",
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", "t.yaml", "-j", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(sleeps_under(proc.pid)) >= 4, what="the tasks to start")
        everything = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted" in err
        deadline = time.monotonic() + 10
        while any(alive(p) for p in everything) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in everything if alive(p)]
        assert not left, f"processes left behind: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status = shoal_json("status", cwd=tmp_path)
    assert status["state"] == "cancelled"
    assert status["counts"] == {"cancelled": 4}


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_jobs_sets_the_number_of_local_workers(tmp_path: Path, jobs: str) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6]}\n    run: sleep 0.3\n",
    )
    assert shoal("run", "t.yaml", "-j", jobs, "-q", cwd=tmp_path).returncode == 0
    workers = shoal_json("workers", cwd=tmp_path)
    assert len(workers) == int(jobs)
    assert sum(w["done"] for w in workers) == 6
