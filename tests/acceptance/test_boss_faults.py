"""The boss's own failures: a state folder it cannot write, a path blocked by a file.

A report is recorded even when a side write fails; what cannot be written
becomes an event and a line in `shoal status`, and the run finishes once the
boss can write again. Nothing a worker finished is lost, no worker is wedged.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Procs, shoal, shoal_json, start_boss, start_worker, wait_for, write

TASKS = """
tasks:
  - name: make
    run: echo made; echo payload > out.txt
    outputs: [out.txt]
"""


def test_a_read_only_state_folder_is_named_and_the_run_ends_once_writable(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    state = tmp_path / ".shoal"
    write(tmp_path / "tasks.yaml", TASKS)
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        assert shoal("submit", "tasks.yaml", cwd=tmp_path).returncode == 0
        start_worker(procs, tmp_path, info, "w1")

        def named() -> str:
            out = shoal("status", cwd=tmp_path).stdout
            return out if "Read-only file system" in out else ""

        said = wait_for(named, 60, "shoal status to name the boss's error")
        assert "cannot write" in said and "in its datastore" in said, said
    finally:
        subprocess.run(["umount", str(state)], check=True)

    def finished() -> bool:
        return bool(shoal_json("status", cwd=tmp_path)["state"] == "succeeded")

    wait_for(finished, 90, "the run to finish once the folder is writable")
    assert (state / "data" / "runs" / "1" / "make" / "out.txt").read_text() == "payload\n"
    assert "Read-only" not in shoal("status", cwd=tmp_path).stdout
    assert shoal("logs", "make", cwd=tmp_path).stdout.strip() == "made"


def test_a_log_the_boss_cannot_write_does_not_lose_the_report(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    # A file where the run's log folder must go.
    write(tmp_path / ".shoal" / "data" / "logs" / "1", "in the way")
    write(tmp_path / "tasks.yaml", "tasks:\n  - {name: talk, run: echo said}\n")
    assert shoal("submit", "tasks.yaml", cwd=tmp_path).returncode == 0
    start_worker(procs, tmp_path, info, "w1")

    def finished() -> bool:
        return bool(shoal_json("status", cwd=tmp_path)["state"] == "succeeded")

    wait_for(finished, 60, "the run to finish without its log")
    lost = [e for e in shoal_json("events", cwd=tmp_path) if e["kind"] == "log_lost"]
    assert len(lost) == 1 and "was not stored" in lost[0]["detail"], lost
    assert shoal_json("results", cwd=tmp_path) == {"talk": "said"}
