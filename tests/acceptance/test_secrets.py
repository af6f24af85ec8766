"""Secrets: no task sees the boss's token, the state folder is private, --token warns."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.launch.zipapp import agent_zipapp
from tests.conftest import (
    Procs,
    RunningBoss,
    shoal,
    shoal_json,
    start_boss,
    start_worker,
    wait_for,
    write,
)

# A task that prints its whole environment, as an attacker's task would.
ENV_TASKS = "name: spy\ntasks:\n  - {name: spy, run: env}\n  - {name: last, run: 'env | sort'}\n"


@pytest.fixture
def user_umask() -> Iterator[None]:
    """The umask most users have (022): files are world-readable unless shoal says not."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def assert_no_credential(text: str, *tokens: str) -> None:
    assert "SHOAL_TASK=" in text  # the task did print its environment
    assert "SHOAL_TOKEN" not in text  # SHOAL_TOKEN and SHOAL_TOKEN_FILE alike
    for token in tokens:
        assert token not in text


def test_a_task_under_shoal_run_sees_no_token(tmp_path: Path) -> None:
    spare = write(tmp_path / "spare-token", "spare-token-value\n")
    write(tmp_path / "t.yaml", ENV_TASKS)
    users = {"SHOAL_TOKEN": "users-own-token", "SHOAL_TOKEN_FILE": str(spare)}
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path, env=users)
    assert proc.returncode == 0, proc.stderr
    token = (tmp_path / ".shoal" / "token").read_text().strip()
    for task in ("spy", "last"):
        log = shoal("logs", task, cwd=tmp_path)
        assert log.returncode == 0, log.stderr
        assert_no_credential(log.stdout, token, "users-own-token", "spare-token-value")
    results = shoal("results", "--json", cwd=tmp_path).stdout
    assert token not in results and "SHOAL_TOKEN" not in results


def test_a_task_on_shoal_worker_sees_no_token(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info)  # SHOAL_TOKEN in its environment
    write(tmp_path / "t.yaml", ENV_TASKS)
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=60,
        what="the run on the worker",
    )
    for task in ("spy", "last"):
        log = shoal("logs", task, cwd=tmp_path)
        assert_no_credential(log.stdout, info["token"])


def test_a_task_on_the_zipapp_agent_sees_no_token(tmp_path: Path, boss: RunningBoss) -> None:
    """What an ssh host runs: the zipapp, its token in SHOAL_TOKEN (read from stdin by the shell)."""
    from shoal import spec

    run_id = boss.boss.submit(spec.parse_text(ENV_TASKS, path="t.yaml"))
    pyz = agent_zipapp(tmp_path / "agent")
    env = dict(os.environ, SHOAL_TOKEN=boss.token)
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-I", "-S", str(pyz), "--boss", boss.url, "--idle-exit", "3"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(
            lambda: boss.scheduler.run_view(run_id)["state"] == "succeeded",
            what="the run on the zipapp worker",
        )
        for task in ("spy", "last"):
            view = boss.scheduler.task_view(run_id, task)
            with boss.boss.datastore.open_read(view["attempt_list"][-1]["log"]) as log_file:
                assert_no_credential(log_file.read().decode(), boss.token)
    finally:
        worker.terminate()
        worker.wait(15)


def private_tree(root: Path) -> list[str]:
    """What in the folder others could read: a folder not 0700, a file not 0600."""
    loose = []
    if stat.S_IMODE(root.stat().st_mode) != 0o700:
        loose.append(f"{root}: {oct(root.stat().st_mode)}")
    for path in root.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_file() and mode & 0o077:
            loose.append(f"{path.relative_to(root)}: {oct(mode)}")
    return loose


def test_the_state_folder_is_private_after_shoal_run(tmp_path: Path, user_umask: None) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n"
        "  - {name: out, run: 'echo made > out.txt', outputs: [out.txt]}\n"
        "  - {name: long, run: 'seq 1 100000'}\n",  # a log past the inline limit: uploaded
    )
    proc = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / ".shoal"
    names = {p.name for p in state.rglob("*") if p.is_file()}
    assert {"shoal.db", "token", "out.txt", "worker-1.log"} <= names
    assert any(name.endswith(".log") and name[0].isdigit() for name in names)  # a task's log
    assert private_tree(state) == []
    # A command reading the folder afterwards leaves its SQLite files private too.
    assert shoal("status", cwd=tmp_path).returncode == 0
    assert private_tree(state) == []


def test_a_boss_makes_its_folder_private_and_tightens_an_old_one(
    tmp_path: Path, procs: Procs, user_umask: None
) -> None:
    state = tmp_path / ".shoal"
    state.mkdir(mode=0o755)
    write(state / "token", "an-older-token\n").chmod(0o644)  # as an older shoal left it
    info = start_boss(procs, tmp_path)
    assert info["token"] == "an-older-token"
    start_worker(procs, tmp_path, info)
    write(tmp_path / "t.yaml", "tasks:\n  - {name: a, run: 'seq 1 50000'}\n")
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=60,
        what="the run",
    )
    # While the boss serves, SQLite's -wal and -shm files are there.
    assert {"shoal.db-wal", "shoal.db-shm", "boss.json"} <= {p.name for p in state.iterdir()}
    assert private_tree(state) == []


WARNING = "shows in 'ps' to every user of this machine"


def test_a_token_on_the_command_line_works_with_a_warning(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    status = shoal("status", "all", "--boss", info["url"], "--token", info["token"], cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert WARNING in status.stderr and "SHOAL_TOKEN" in status.stderr
    worker = shoal(
        "worker",
        "--boss",
        info["url"],
        "--token",
        info["token"],
        "--idle-exit",
        "0.5",
        cwd=tmp_path,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    assert WARNING in worker.stderr and "--token-file" in worker.stderr
    quiet = shoal(
        "status", "all", "--boss", info["url"], cwd=tmp_path, env={"SHOAL_TOKEN": info["token"]}
    )
    assert quiet.returncode == 0 and WARNING not in quiet.stderr


def test_a_token_file_is_a_safe_way_to_give_the_token(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    token_file = write(tmp_path / "tok", info["token"] + "\n")
    worker = shoal(
        "worker",
        "--boss",
        info["url"],
        "--token-file",
        str(token_file),
        "--idle-exit",
        "0.5",
        cwd=tmp_path,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    assert WARNING not in worker.stderr and '"registered"' in worker.stderr
    by_env = shoal(
        "status",
        "all",
        "--boss",
        info["url"],
        cwd=tmp_path,
        env={"SHOAL_TOKEN_FILE": str(token_file)},
    )
    assert by_env.returncode == 0, by_env.stderr
    missing = shoal(
        "worker",
        "--boss",
        info["url"],
        "--token-file",
        str(tmp_path / "nope"),
        cwd=tmp_path,
        timeout=60,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("shoal: cannot read the token file")
