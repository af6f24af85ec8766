"""Watching a run and reading it back (issue 17 items 4-8, 15): what a user sees.

The terminal ones run under a pty of their own, as a user's shell would be.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import (
    SRC,
    Procs,
    boss_info,
    shoal,
    shoal_json,
    start_boss,
    wait_for,
    write,
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SWEEP = """\
name: sweep
tasks:
  - name: prep
    run: echo prepared
  - name: sim-{lr}-{depth}
    after: prep
    matrix:
      lr: [0.1, 0.2]
      depth: [1, 2, 3]
    run: |
      echo '{{"loss": {depth}}}'
"""


def _terminal(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``shoal ARGS`` with a pty of its own (80 columns) as its terminal; the pty's reading end."""
    controller, terminal = os.openpty()
    os.set_blocking(controller, False)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    full = dict(os.environ, PYTHONPATH=SRC, TERM="xterm-256color", **(env or {}))
    for name in ("SHOAL_BOSS", "SHOAL_TOKEN", "COLUMNS", "LINES", "NO_COLOR"):
        full.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env=full,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    return proc, controller


def _read(fd: int, seen: bytearray, until: float) -> None:
    """What the terminal shows, until ``until`` (monotonic) or it closes."""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            seen += chunk


def _read_until(fd: int, pattern: str, seen: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, _plain(seen)):
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {pattern!r} in: {_plain(seen)[-3000:]!r}"
        _read(fd, seen, time.monotonic() + min(left, 0.5))


def _plain(seen: bytes | bytearray) -> str:
    return _ANSI.sub("", bytes(seen).decode("utf-8", "replace"))


def _stop(proc: subprocess.Popen[bytes], fd: int) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    os.close(fd)


def test_status_watch_shows_pace_and_elapsed_and_ends_on_the_final_state_when_the_boss_is_gone(
    tmp_path: Path, procs: Procs
) -> None:
    write(
        tmp_path / "job.yaml",
        """\
name: naps
tasks:
  - {name: quick-1, run: "true"}
  - {name: quick-2, run: "true"}
  - {name: quick-3, run: "true"}
  - {name: nap-1, run: sleep 6, after: [quick-1, quick-2, quick-3]}
  - {name: nap-2, run: sleep 6, after: [quick-1, quick-2, quick-3]}
""",
    )
    run = procs.start("run", "job.yaml", "-j", "2", cwd=tmp_path)

    def napping() -> bool:
        if boss_info(tmp_path / ".shoal") is None:
            return False
        got = shoal("tasks", "--only", "running", "--json", cwd=tmp_path)
        return got.returncode == 0 and got.stdout.count('"nap-') == 2

    wait_for(napping, timeout=90, what="both naps to run")
    watch, fd = _terminal(["status", "--watch"], tmp_path)
    seen = bytearray()
    try:
        # The summary: counts, pace and time left; each running task with its time so far.
        _read_until(fd, r"3/5 done in \S+ +\([\d.,]+ tasks/s\) +about \S+ left", seen)
        _read_until(fd, r"nap-1 +running +1 +\d+(\.\d)?(ms|s)", seen)
        # The run ends and its boss with it while the watch is not looking.
        watch.send_signal(signal.SIGSTOP)
        assert run.wait(120) == 0, procs.log(run)
        watch.send_signal(signal.SIGCONT)
        _read(fd, seen, time.monotonic() + 60)
        assert watch.wait(60) == 0, _plain(seen)[-3000:]
    finally:
        _stop(watch, fd)
    text = _plain(seen)
    assert "cannot reach the boss" not in text
    assert "the boss is gone: as recorded in" in text  # read from the state folder
    last = text[text.rindex("run 1 naps") :]
    assert re.search(r"run 1 naps +succeeded +5/5 done", last), last
    assert "5 succeeded" in last


def test_logs_of_a_cached_task_come_from_the_run_that_made_it_and_attempt_n_is_named(
    tmp_path: Path,
) -> None:
    tries = tmp_path / "tries"
    write(
        tmp_path / "job.yaml",
        f"""\
name: twice
tasks:
  - name: made
    run: echo made by the first run
  - name: flaky
    retries: 1
    retry_delay: 0s
    run: echo try >> {tries}; n=$(wc -l < {tries}); echo attempt-$n; exit $((2 + n))
""",
    )
    assert shoal("run", "job.yaml", "-j", "1", cwd=tmp_path).returncode == 1

    first = shoal("logs", "flaky", "--attempt", "1", cwd=tmp_path)
    assert first.stdout.strip() == "attempt-1", first.stderr
    assert "attempt 1 of 2" in first.stderr
    assert "attempt 1 on local-1: exit code 3" in first.stderr
    assert "attempt 2" not in first.stderr

    assert shoal("run", "job.yaml", "-j", "1", cwd=tmp_path).returncode == 1
    assert shoal_json("tasks", cwd=tmp_path)[0]["cached"] is True
    cached = shoal("logs", "made", cwd=tmp_path)
    assert cached.returncode == 0, cached.stderr
    assert cached.stdout == "made by the first run\n"
    assert "reused from run 1" in cached.stderr


def test_events_name_the_task_attempt_and_worker_and_record_upstream_failed(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "job.yaml",
        """\
name: broken
tasks:
  - {name: prep, run: exit 3}
  - {name: use-prep, run: "true", after: prep}
""",
    )
    assert shoal("run", "job.yaml", "-j", "1", cwd=tmp_path).returncode == 1
    rows = shoal_json("events", cwd=tmp_path)
    started = next(e for e in rows if e["kind"] == "attempt_started")
    assert (started["task_name"], started["attempt_number"], started["worker_name"]) == (
        "prep",
        1,
        "local-1",
    )
    skipped = [e for e in rows if e["kind"] == "upstream_failed"]
    assert [(e["task_name"], e["detail"]) for e in skipped] == [
        ("use-prep", "upstream prep failed")
    ]
    table = shoal("events", cwd=tmp_path, env={"COLUMNS": "100"}).stdout
    assert re.search(r"attempt_started +prep +1 +local-1", table), table
    assert re.search(r"upstream_failed +use-prep", table), table


def test_tasks_and_results_carry_matrix_after_and_times_and_results_table_has_a_column_per_key(
    tmp_path: Path,
) -> None:
    write(tmp_path / "sweep.yaml", SWEEP)
    assert shoal("run", "sweep.yaml", "-j", "2", cwd=tmp_path).returncode == 0
    by_name = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    sim = by_name["sim-0.2-3"]
    assert sim["matrix"] == {"lr": 0.2, "depth": 3}
    assert sim["after"] == ["prep"]
    assert by_name["prep"]["matrix"] == {} and by_name["prep"]["after"] == []
    assert sim["started"] <= sim["ended"]

    rows = shoal_json("results", "--table", cwd=tmp_path)
    row = next(r for r in rows if r["task"] == "sim-0.1-2")
    assert row["result"] == {"loss": 2}
    assert (row["matrix"], row["after"]) == ({"lr": 0.1, "depth": 2}, ["prep"])
    assert row["started"] <= row["ended"]
    # Plain --json stays a map of results by task.
    assert shoal_json("results", cwd=tmp_path)["sim-0.1-2"] == {"loss": 2}

    table = shoal("results", "--table", cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["task", "lr", "depth", "loss", "result"], table
    assert "sim-0.2-3 0.2 3 3" in [" ".join(line.split()) for line in table]
    assert "prep prepared" in [" ".join(line.split()) for line in table]


def test_a_cached_rerun_has_no_absurd_rate_and_a_cancelled_run_is_not_all_done(
    tmp_path: Path, procs: Procs
) -> None:
    write(tmp_path / "sweep.yaml", SWEEP)
    assert shoal("run", "sweep.yaml", "-j", "2", cwd=tmp_path).returncode == 0
    again = shoal("run", "sweep.yaml", "-j", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "7/7 done" in again.stdout
    assert "tasks/s" not in again.stdout, again.stdout

    other = tmp_path / "other"
    write(other / "sweep.yaml", SWEEP)
    start_boss(procs, other)
    assert shoal("submit", "sweep.yaml", cwd=other).returncode == 0  # no worker: nothing runs
    assert shoal("cancel", "sweep", cwd=other).returncode == 0
    status = shoal("status", cwd=other).stdout
    assert "0/7 done" in status, status
    assert "7 cancelled" in status


def test_piped_output_at_80_columns_wraps_causes_whole_and_keeps_states_whole(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "job.yaml",
        """\
name: narrow
tasks:
  - name: fetch-the-measurements
    run: exit 3
  - name: analyse-station-{station}
    after: fetch-the-measurements
    matrix:
      station: [north-ridge-observatory, south-valley-observatory]
    run: "true"
""",
    )
    got = shoal("run", "job.yaml", "-j", "1", cwd=tmp_path, env={"COLUMNS": "80"})
    assert got.returncode == 1, got.stderr
    lines = got.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), got.stdout
    rows = [line for line in lines if re.search(r"upstream_failed +0 ", line)]
    assert len(rows) == 2, got.stdout  # the state whole, on the task's line
    # Every word of the cause is whole on some line: wrapped, never cut or shortened.
    words = {w for line in lines for w in line.split()}
    assert {"upstream", "fetch-the-measurements", "failed"} <= words, got.stdout
    assert "…" not in got.stdout


def test_run_bar_turns_red_when_a_task_fails(tmp_path: Path) -> None:
    write(
        tmp_path / "job.yaml",
        """\
name: red
tasks:
  - {name: ok, run: "true"}
  - {name: bad, run: exit 3}
""",
    )
    proc, fd = _terminal(["run", "job.yaml", "-j", "1"], tmp_path)
    seen = bytearray()
    try:
        _read(fd, seen, time.monotonic() + 120)
        assert proc.wait(60) == 1, _plain(seen)[-2000:]
    finally:
        _stop(proc, fd)
    raw = bytes(seen).decode("utf-8", "replace")
    bars = re.findall(r"\x1b\[([0-9;]*)m━", raw)
    assert bars, raw[-2000:]
    assert bars[-1] == "31", bars  # red: the last frame drawn


def test_help_of_the_watching_commands_names_values_and_ends_with_examples(
    tmp_path: Path,
) -> None:
    for command in ("status", "tasks", "logs", "results", "events"):
        got = shoal(command, "--help", cwd=tmp_path, env={"COLUMNS": "80"})
        assert got.returncode == 0, got.stderr
        assert "run_ref" not in got.stdout and "<int" not in got.stdout, got.stdout
        examples = got.stdout[got.stdout.index("Examples:") :]
        assert f"shoal {command} " in examples, got.stdout
    assert "[RUN]" in shoal("status", "--help", cwd=tmp_path).stdout
    missing = shoal("logs", cwd=tmp_path)
    assert missing.returncode == 2
    assert "Missing argument 'TASK'" in missing.stderr, missing.stderr
