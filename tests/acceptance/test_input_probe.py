"""What a new user's probe found: a run left without a boss, bad numbers, worker logs, wording."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import (
    SRC,
    Procs,
    descendants,
    free_port,
    read_until,
    shoal,
    shoal_json,
    start_boss,
    start_worker,
    wait_for,
    write,
)

SLEEPS = "tasks:\n  - name: s-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 60\n"


def _running(cwd: Path) -> list[dict[str, object]]:
    proc = shoal("tasks", "--only", "running", "--json", cwd=cwd)
    return json.loads(proc.stdout) if proc.returncode == 0 else []  # type: ignore[no-any-return]


def test_a_run_whose_boss_was_killed_says_so_and_cancels_without_one(
    tmp_path: Path, procs: Procs
) -> None:
    write(tmp_path / "sweep.yaml", SLEEPS)
    run = procs.start("run", "sweep.yaml", "-j", "1", cwd=tmp_path)
    wait_for(lambda: _running(tmp_path), timeout=60, what="a task to run")
    below = descendants(run.pid)
    procs.extra.extend(below)
    run.send_signal(signal.SIGKILL)
    run.wait()
    for pid in below:  # its workers and their sleeps: as a killed terminal would leave them
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    status = shoal("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert (
        "no boss runs this run: 'shoal boss' carries it on, 'shoal cancel 1' ends it\n"
        in status.stdout
    )

    cancel = shoal("cancel", "sweep", cwd=tmp_path)
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.strip() == ("run 1: 4 tasks cancelled in .shoal (no boss runs it)")
    after = shoal_json("status", cwd=tmp_path)
    assert after["state"] == "cancelled"
    assert "no_boss" not in after
    assert "no boss runs" not in shoal("status", cwd=tmp_path).stdout


def test_cancel_still_goes_to_the_boss_that_serves_the_state_folder(
    tmp_path: Path, procs: Procs
) -> None:
    write(tmp_path / "sweep.yaml", SLEEPS)
    info = start_boss(procs, tmp_path)
    submitted = shoal("submit", "sweep.yaml", cwd=tmp_path, env={"SHOAL_TOKEN": info["token"]})
    assert submitted.returncode == 0, submitted.stderr
    # The state folder names the boss: the command goes to it, and it cancels.
    cancel = shoal("cancel", "sweep", cwd=tmp_path)
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.strip() == "run 1: 4 tasks cancelled"


BAD_NUMBERS = [
    (("run", "sweep.yaml", "--lease", "0"), "--lease 0: must be more than zero (e.g. --lease 30)"),
    (
        ("run", "sweep.yaml", "--speculate-min", "-5"),
        "--speculate-min -5: must be more than zero (e.g. --speculate-min 30)",
    ),
    (("run", "sweep.yaml", "--slots", "0"), "--slots must be 1 or more (got 0)"),
    (("boss", "--lease", "-1"), "--lease -1: must be more than zero (e.g. --lease 30)"),
    (("boss", "--max-losses", "0"), "--max-losses must be 1 or more (got 0)"),
    (("worker", "--slots", "0"), "--slots must be 1 or more (got 0)"),
    (
        ("worker", "--idle-exit", "0"),
        "--idle-exit 0: must be more than zero (e.g. --idle-exit 60)",
    ),
]


def test_zero_or_negative_leases_and_slots_are_refused_up_front(tmp_path: Path) -> None:
    write(tmp_path / "sweep.yaml", SLEEPS)
    for args, expected in BAD_NUMBERS:
        proc = shoal(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().splitlines() == [f"shoal: {expected}"], args
    assert not (tmp_path / ".shoal").exists()  # nothing ran, nothing was made


def test_a_worker_at_a_terminal_logs_text_and_json_when_piped(tmp_path: Path, procs: Procs) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens: the worker says so
    controller, terminal = os.openpty()
    worker = subprocess.Popen(
        [sys.executable, "-m", "shoal", "worker", "--boss", url],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=SRC, TERM="xterm", SHOAL_TOKEN="t" * 20),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = bytearray()
    try:
        read_until(controller, b"boss unreachable", seen)
    finally:
        worker.kill()
        worker.wait()
        os.close(controller)
    text = seen.decode()
    assert "boss unreachable: " in text
    assert not any(line.lstrip().startswith("{") for line in text.splitlines())

    piped = procs.start("worker", "--boss", url, cwd=tmp_path, env={"SHOAL_TOKEN": "t" * 20})
    wait_for(lambda: '"event": "boss_unreachable"' in procs.log(piped), what="a JSON log line")


def test_drain_now_interrupts_with_a_cause_that_names_it_and_the_worker_says_so(
    tmp_path: Path, procs: Procs
) -> None:
    write(tmp_path / "one.yaml", "tasks:\n  - {name: long, run: sleep 60}\n")
    info = start_boss(procs, tmp_path)
    token = {"SHOAL_TOKEN": info["token"]}
    worker = start_worker(procs, tmp_path, info, name="w1")
    assert shoal("submit", "one.yaml", cwd=tmp_path, env=token).returncode == 0
    wait_for(lambda: _running(tmp_path), timeout=60, what="the task to run")
    drained = shoal("drain", "w1", "--now", cwd=tmp_path, env=token)
    assert drained.returncode == 0, drained.stderr

    def interrupted() -> list[dict[str, object]]:
        events = shoal_json("events", cwd=tmp_path, env=token)
        return [e for e in events if e["kind"] == "attempt_interrupted"]

    [event] = wait_for(interrupted, timeout=60, what="the attempt to end")
    assert "its worker was stopped (shoal drain --now)" in str(event["detail"])
    assert "cancelled" not in str(event["detail"])
    worker.wait(60)
    assert '"event": "told_to_stop"' in procs.log(worker)
    assert '"order": "stop now"' in procs.log(worker)


TASK_FILE_MISTAKES = {
    "jq.yaml": (
        "tasks:\n  - name: a\n    run: echo '{\"a\": 1}' | jq .a\n",
        ":3: invalid YAML: mapping values are not allowed in this context "
        "(quote the whole value, as in run: \"...\", or write 'run: |' "
        "and the command on the next line, indented)",
    ),
    "same-name.yaml": (
        "tasks:\n  - name: sim-{lr}\n    matrix:\n      lr: [1, 2]\n      seed: [1, 2]\n"
        "    run: echo {lr} {seed}\n",
        ":2: task 'sim-1': task name 'sim-{lr}' does not use matrix key 'seed', so every task "
        "of the matrix gets the same name 'sim-1' (put it in the name, e.g. name: sim-{lr}-{seed})",
    ),
}


def test_task_file_mistakes_say_how_to_fix_them(tmp_path: Path) -> None:
    for name, (text, expected) in TASK_FILE_MISTAKES.items():
        write(tmp_path / name, text)
        proc = shoal("run", name, "-j", "1", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"shoal: {name}{expected}"]


def test_wording_of_a_finished_task_and_of_pools_that_say_nothing(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 1\n",
    )
    assert shoal("run", "t.yaml", "-j", "2", cwd=tmp_path).returncode == 0
    assert shoal_json("machines", cwd=tmp_path)  # its local workers were recorded
    status = shoal("status", cwd=tmp_path)
    assert status.returncode == 0 and "4 succeeded" in status.stdout
    assert "pools:" not in status.stdout  # 'pools: local 0' told nothing
    refused = shoal("cancel", "latest", "--task", "t-1", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "shoal: task 't-1' has already succeeded: only an unfinished task can be cancelled"
    )
