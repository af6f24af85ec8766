"""`shoal run` starts its local workers while its boss loads: what that must not change."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import shoal, wait_for, write


def _agents_of(state: Path) -> list[int]:
    """The worker agents started for this state folder, found by their --workdir."""
    mark = f"--workdir={state}/work".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if mark in cmdline.split(b"\0"):
                found.append(int(entry))
    return found


def test_a_run_whose_database_cannot_be_opened_leaves_no_worker_behind(tmp_path: Path) -> None:
    tasks = write(tmp_path / "tasks.yaml", "tasks:\n  - {name: a, run: 'true'}\n")
    write(tmp_path / "a-file", "not a folder\n")
    state = tmp_path / "state"
    done = shoal(
        "run", str(tasks), "-j", "2", "--state", str(state), "--db", str(tmp_path / "a-file" / "x.db"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "cannot use the database" in done.stderr
    assert "Traceback" not in done.stderr
    # The workers were started before the database was opened: they are gone.
    wait_for(lambda: not _agents_of(state), timeout=30, what="the workers to end")
    # The mistyped database is not remembered: the next run uses the folder's own.
    again = shoal("run", str(tasks), "-j", "1", "--state", str(state), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (state / "shoal.db").exists()


def test_each_worker_of_a_run_starts_once_and_runs_tasks(tmp_path: Path) -> None:
    tasks = write(
        tmp_path / "tasks.yaml",
        "tasks:\n" + "".join(f"  - {{name: t{i}, run: 'true'}}\n" for i in range(6)),
    )
    state = tmp_path / "state"
    done = shoal("run", str(tasks), "-j", "2", "--state", str(state), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    logs = sorted(p.name for p in (state / "logs").glob("worker-*.log"))
    assert logs == ["worker-1.log", "worker-2.log"]
    for log in logs:
        assert (state / "logs" / log).read_text().count('"event": "started"') == 1
    assert not _agents_of(state)
