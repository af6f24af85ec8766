"""What a new user trips on at the command line (issue 17): found tokens, refused states, clear output."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Procs, shoal, shoal_json, start_boss, start_worker, wait_for, write


def test_worker_with_boss_url_finds_the_state_folders_token(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    write(tmp_path / "t.yaml", "name: one\ntasks:\n  - {name: hello, run: echo 1}\n")
    submitted = shoal("submit", "t.yaml", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    # No SHOAL_TOKEN, no --token: the boss's own folder holds it, as for every other command.
    worker = shoal("worker", "--boss", info["url"], "--idle-exit", "2", cwd=tmp_path, timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert "no token" not in worker.stderr
    assert shoal_json("results", "one", cwd=tmp_path) == {"hello": 1}


def test_worker_elsewhere_without_a_token_still_asks_for_one(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    away = tmp_path / "away"
    away.mkdir()
    worker = shoal("worker", "--boss", info["url"], cwd=away, timeout=30)
    assert worker.returncode == 2
    assert "no token given" in worker.stderr and "Traceback" not in worker.stderr


def test_tasks_refuses_an_unknown_state(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "name: one\ntasks:\n  - {name: hello, run: echo 1}\n")
    assert shoal("run", "t.yaml", "-j", "1", "-q", cwd=tmp_path).returncode == 0
    proc = shoal("tasks", "--only", "bogus", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "bogus" in proc.stderr
    assert "failed" in proc.stderr and "upstream_failed" in proc.stderr  # the states, listed
    # --state is the state folder: one that is not there is said so, not a boss to start.
    folder = shoal("tasks", "--state", "bogus", cwd=tmp_path)
    assert folder.returncode == 2 and folder.stderr.count("\n") == 1
    assert "no shoal state in" in folder.stderr and "bogus" in folder.stderr


def test_status_where_there_is_no_state_says_so(tmp_path: Path) -> None:
    proc = shoal("status", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr == (
        f"shoal: no shoal state in {tmp_path}: run 'shoal run FILE' or 'shoal boss' there first\n"
    )
    assert not (tmp_path / ".shoal").exists()  # nothing made by asking


def test_dir_of_the_package_lists_the_api() -> None:
    import shoal as package

    names = dir(package)
    assert {"Run", "Task", "Result", "Handle", "BadInput", "SpecError"} <= set(names)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(names)


def test_quiet_run_still_prints_what_failed(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "name: q\ntasks:\n"
        "  - {name: good, run: echo 1}\n"
        "  - {name: broken, run: 'echo the-last-words; exit 3'}\n",
    )
    proc = shoal("run", "t.yaml", "-j", "1", "-q", cwd=tmp_path)
    assert proc.returncode == 1
    shown = proc.stdout + proc.stderr
    assert "broken" in shown and "the-last-words" in shown and "Traceback" not in shown
    # A quiet run that went well stays quiet.
    write(tmp_path / "ok.yaml", "name: ok\ntasks:\n  - {name: fine, run: echo 1}\n")
    ok = shoal("run", "ok.yaml", "-j", "1", "-q", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == ""


SWEEP = (
    "name: sweep\ntasks:\n  - {name: prep, run: echo 1}\n"
    "  - name: sim-{lr}-{depth}\n    matrix: {lr: [1, 2], depth: [1, 2, 3]}\n"
    "    run: echo {lr}\n    after: [prep]\n"
)


def test_submit_says_what_it_submitted_and_that_no_worker_will_run_it(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    write(tmp_path / "sweep.yaml", SWEEP)
    alone = shoal("submit", "sweep.yaml", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == "run 1 sweep: 7 tasks submitted\n"
    warning = [line for line in alone.stderr.splitlines() if "no worker" in line]
    assert len(warning) == 1 and f"shoal worker --boss {info['url']}" in warning[0]

    # Scripts ask for the id alone; with a worker connected there is nothing to warn about.
    start_worker(procs, tmp_path, info, "w1")
    wait_for(lambda: len(shoal_json("workers", cwd=tmp_path)) == 1, what="the worker")
    served = shoal("submit", "-q", "sweep.yaml", cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    assert served.stdout == "2\n" and "no worker" not in served.stderr
    again = shoal("submit", "sweep.yaml", cwd=tmp_path)
    assert again.stdout == "run 3 sweep: 7 tasks submitted\n" and "no worker" not in again.stderr
