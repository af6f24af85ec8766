"""Flows, reductions and the Python API, as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import SRC, shoal, shoal_json, write

ROOT = Path(__file__).resolve().parents[2]


def test_cloudmesh_example_with_shoal_flow(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = shoal(
        "flow",
        "(a | b | c); d; a + b + c + d",
        "--defs",
        "examples/flow/tasks.py",
        "-j",
        "2",
        "-q",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "10"
    tasks = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    assert tasks["sum-1"]["result"] == 10 and tasks["sum-1"]["kind"] == "reduce"
    assert tasks["sum-1"]["worker"] is None  # the boss computed it, not a worker
    events = shoal_json("events", cwd=tmp_path)
    order = [e["task_id"] for e in events if e["kind"] == "task_succeeded"]
    assert order.index(tasks["d"]["id"]) > max(order.index(tasks[n]["id"]) for n in "abc")
    assert shoal_json("status", cwd=tmp_path)["result"] == 10


def test_flow_in_a_task_file(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = shoal("run", "examples/flow.yaml", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "result 10" in proc.stdout


def test_flow_errors_point_at_the_column_and_name_unknown_tasks(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bad = shoal("flow", "(a | b; c", "--defs", "examples/flow/tasks.py", cwd=tmp_path)
    assert bad.returncode == 2 and "column 10: ')' is missing" in bad.stderr
    unknown = shoal("flow", "a; e", "--defs", "examples/flow/tasks.py", cwd=tmp_path)
    assert unknown.returncode == 2 and "no task named 'e'" in unknown.stderr
    write(tmp_path / "f.yaml", "flow: 'a +'\ntasks:\n  - {name: a, run: echo 1}\n")
    in_file = shoal("run", "f.yaml", cwd=tmp_path)
    assert in_file.returncode == 2 and "f.yaml:1: flow column 4" in in_file.stderr


def test_mixing_kinds_fails_the_reduction_naming_both(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - {name: n, run: echo 1}\n  - {name: s, run: echo hello}\n  - {name: both, reduce: [n, s]}\n",
    )
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert proc.returncode == 1
    both = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}["both"]
    assert both["state"] == "failed"
    assert (
        both["cause"] == "reduction failed: cannot add a string (task 's') to a number (task 'n')"
    )


def test_partial_value_is_visible_while_operands_run(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        f"""
flow: quick | slow; quick + slow
tasks:
  - {{name: quick, run: echo 5}}
  - {{name: slow, run: 'while [ ! -e {tmp_path}/go ]; do sleep 0.05; done; echo 7'}}
""",
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", "t.yaml", "-j", "2", "-q"], cwd=tmp_path, env=env
    )
    try:
        from tests.conftest import wait_for

        wait_for(
            lambda: (
                (tmp_path / ".shoal" / "boss.json").exists()
                and shoal_json("status", cwd=tmp_path).get("partial") == {"sum-1": 5}
            ),
            what="the partial sum",
        )
        status = shoal("status", cwd=tmp_path)
        assert "sum-1 so far 5" in status.stdout
        (tmp_path / "go").touch()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert shoal_json("status", cwd=tmp_path)["result"] == 12


def test_reducer_command_reads_operands_on_stdin(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        """
tasks:
  - name: part-{i}
    matrix: {i: [1, 2, 3]}
    run: echo {i}
  - name: biggest
    reduce: ["part-*"]
    run: python3 -c "import json, sys; print(max(json.load(sys.stdin).values()))"
""",
    )
    assert shoal("run", "t.yaml", "-j", "2", cwd=tmp_path).returncode == 0
    assert shoal_json("results", cwd=tmp_path)["biggest"] == 3


def test_python_api_example_runs_as_written(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "api.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "succeeded 385 shoal runs tasks"
    assert proc.stderr == ""


def test_python_api_submit_to_a_boss_and_outputs(tmp_path: Path) -> None:
    import shoal as api
    from tests.conftest import AgentThread, RunningBoss

    boss = RunningBoss(tmp_path / "boss")
    agent = AgentThread(boss.url, boss.token, tmp_path / "work", slots=2)
    try:
        run = api.Run("api")
        made = run.task("make", "echo 21 > n.txt; cat n.txt", outputs=["n.txt"])
        run.task("double", "echo $(( $(cat inputs/make/n.txt) * 2 ))", after=made)
        handle = run.submit(boss=boss.url, token=boss.token)
        result = handle.wait(timeout=60)
        assert result.ok and result.results == {"make": 21, "double": 42}
        assert result.task("make")["outputs"] == ["n.txt"]
        handle.client.close()
    finally:
        agent.stop()
        boss.stop()
    local = api.Run("local")
    local.task("make", "echo 3 > n.txt", outputs=["n.txt"])
    out = local.execute(workers=1, state=tmp_path / "state")
    assert out.output("make", "n.txt").read_text() == "3\n"
