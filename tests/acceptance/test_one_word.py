"""One word per concept on the command line: ``--state`` is the state folder in
every command, ``--only`` filters tasks by state, and a task's log is found the
same way with a boss or without one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from shoal.cli import app
from tests.conftest import Procs, shoal, shoal_json, start_boss, wait_for, write

TASKS = """
tasks:
  - {name: good, run: echo 6}
  - {name: bad, run: "echo oops; exit 3"}
"""


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every command under a group, by its full name (Typer has a copy of click of its own)."""
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((prefix + name, command))
    return found


def test_the_state_folder_is_named_state_in_every_command() -> None:
    commands = _commands(typer.main.get_group(app))
    with_state = []
    for name, command in commands:
        for param in command.params:
            assert "--state-dir" not in param.opts, f"'shoal {name}' still spells it --state-dir"
            if param.name == "state":
                assert param.opts == ["--state"], f"'shoal {name}': {param.opts}"
                with_state.append(name)
    # Every command reads or writes a state folder (the ssh host tools: with --pool NAME).
    assert sorted(with_state) == sorted(n for n, _ in commands)


def test_every_command_reads_the_state_folder_given_with_state(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", TASKS)
    assert shoal("run", "t.yaml", "-j", "1", "--state", "st", "-q", cwd=tmp_path).returncode == 1
    assert not (tmp_path / ".shoal").exists()
    at = ("--state", "st")
    assert shoal_json("status", *at, cwd=tmp_path)["counts"] == {"succeeded": 1, "failed": 1}
    assert [t["name"] for t in shoal_json("tasks", *at, "--only", "failed", cwd=tmp_path)] == [
        "bad"
    ]
    assert shoal_json("results", *at, cwd=tmp_path)["good"] == 6
    assert "oops" in shoal("logs", "bad", *at, cwd=tmp_path).stdout
    assert any(e["kind"] for e in shoal_json("events", *at, cwd=tmp_path))
    assert shoal_json("workers", *at, cwd=tmp_path)
    # The environment names it too, for 'shoal run' as for the others.
    env = {"SHOAL_STATE": str(tmp_path / "env-state")}
    assert shoal("run", "t.yaml", "-j", "1", "-q", cwd=tmp_path, env=env).returncode == 1
    assert shoal_json("status", cwd=tmp_path, env=env)["total"] == 2


def test_only_takes_a_task_state_and_refuses_others_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", TASKS)
    shoal("run", "t.yaml", "-j", "1", "-q", cwd=tmp_path)
    both = shoal_json("tasks", "--only", "failed", "--only", "succeeded", cwd=tmp_path)
    assert sorted(t["name"] for t in both) == ["bad", "good"]
    typo = shoal("tasks", "--only", "runing", cwd=tmp_path)
    assert typo.returncode == 2
    assert typo.stderr == (
        "shoal: --only 'runing': no such task state (did you mean 'running'?); the states are "
        "waiting, ready, running, succeeded, failed, cancelled, upstream_failed\n"
    )
    # The old spelling of the filter now names a folder; the line says what to write instead.
    old = shoal("tasks", "--state", "failed", cwd=tmp_path)
    assert old.returncode == 2
    assert old.stderr == (
        "shoal: --state names the state folder, and there is no folder 'failed': "
        "to list the failed tasks, use --only failed\n"
    )


def test_a_missing_attempt_is_named_with_a_boss_and_without_one(
    tmp_path: Path, procs: Procs
) -> None:
    write(tmp_path / "t.yaml", TASKS)
    shoal("run", "t.yaml", "-j", "1", "-q", cwd=tmp_path)
    offline = shoal("logs", "bad", "--attempt", "5", cwd=tmp_path)
    assert (offline.returncode, offline.stderr) == (2, "shoal: task 'bad' has no attempt 5\n")
    assert "oops" in shoal("logs", "bad", "--attempt", "1", cwd=tmp_path).stdout

    start_boss(procs, tmp_path)
    wait_for(lambda: shoal("status", cwd=tmp_path).returncode == 0, what="the boss to answer")
    online = shoal("logs", "bad", "--attempt", "5", cwd=tmp_path)
    assert (online.returncode, online.stderr) == (2, "shoal: task 'bad' has no attempt 5\n")
    assert "oops" in shoal("logs", "bad", "--attempt", "1", cwd=tmp_path).stdout
    assert os.environ.get("SHOAL_BOSS") is None  # the boss was found in the state folder
