"""What a new user saw wrong when watching a run and reading it back (issue 17's probe)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Procs, shoal, shoal_json, start_boss, start_worker, wait_for, write


def _words(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


def test_workers_lists_the_current_workers_and_all_lists_every_one(tmp_path: Path) -> None:
    # Each task waits until the other has started: both workers of each run take one
    # (a run of one quick task may end before its second worker has registered).
    meet = tmp_path / "meet"
    meet.mkdir()
    write(
        tmp_path / "t.yaml",
        "tasks:\n"
        + "".join(
            f"  - name: {me}\n"
            f"    run: touch {meet}/$SHOAL_RUN_ID.{me}; "
            f"until [ -e {meet}/$SHOAL_RUN_ID.{other} ]; do sleep 0.05; done\n"
            for me, other in (("a", "b"), ("b", "a"))
        ),
    )
    for _ in range(2):
        assert shoal("run", "t.yaml", "-j", "2", "--fresh", cwd=tmp_path).returncode == 0
    every = shoal_json("workers", "--all", cwd=tmp_path)
    assert sorted(w["name"] for w in every) == ["local-1", "local-1", "local-2", "local-2"]
    current = shoal_json("workers", cwd=tmp_path)
    newest = sorted(every, key=lambda w: w["id"])[2:]
    assert sorted(w["id"] for w in current) == [w["id"] for w in newest]
    rows = _words(shoal("workers", cwd=tmp_path, env={"COLUMNS": "120"}).stdout)
    assert [r[0] for r in rows[1:]] == ["local-1", "local-2"], rows


def test_a_drained_worker_shows_as_draining(tmp_path: Path, procs: Procs) -> None:
    write(tmp_path / "t.yaml", "name: long\ntasks:\n  - {name: nap, run: sleep 60}\n")
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, name="w5")
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("tasks", cwd=tmp_path)[0]["state"] == "running",
        timeout=60,
        what="the task to run",
    )
    assert shoal("drain", "w5", cwd=tmp_path).returncode == 0
    rows = _words(shoal("workers", cwd=tmp_path, env={"COLUMNS": "120"}).stdout)
    row = next(r for r in rows if r[0] == "w5")
    assert "draining" in row and "active" not in row, rows
    assert row[1] == "-", rows  # started by hand: no machine of shoal's
    assert shoal("cancel", "long", cwd=tmp_path).returncode == 0


def test_logs_of_a_task_that_will_not_run_says_so_and_why(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "name: broken\ntasks:\n  - {name: prep, run: exit 3}\n"
        "  - {name: use-prep, run: 'true', after: prep}\n",
    )
    started = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert started.returncode == 1
    assert "2 tasks on " in started.stderr, started.stderr
    got = shoal("logs", "use-prep", cwd=tmp_path)
    assert got.returncode == 2
    assert got.stderr == (
        "shoal: task 'use-prep' will not run, so it has no log: upstream prep failed\n"
    ), got.stderr
    write(tmp_path / "one.yaml", "name: one\ntasks:\n  - {name: a, run: 'true'}\n")
    one = shoal("run", "one.yaml", "-j", "1", cwd=tmp_path)
    assert "run 2 one: 1 task on " in one.stderr, one.stderr


PROBE = """\
name: probe
tasks:
  - {name: prep, run: "true"}
  - name: simulation-with-a-long-name-{lr}-{depth}
    after: prep
    matrix: {lr: [0.001, 0.01], depth: [8, 16]}
    run: |
      if [ {depth} = 8 ] && [ {lr} = 0.01 ]; then exit 3; fi
      echo '{{"lr": {lr}, "depth": {depth}}}'
  - {name: combine, run: "true", after: [simulation-with-a-long-name-0.01-8]}
  - name: sim-{lr}-{depth}
    after: prep
    matrix: {lr: [0.01], depth: [8]}
    run: exit 4
  - {name: upstream, run: "true", after: [sim-0.01-8]}
"""
NAMES = [
    "prep",
    "simulation-with-a-long-name-0.001-8",
    "simulation-with-a-long-name-0.001-16",
    "simulation-with-a-long-name-0.01-8",
    "simulation-with-a-long-name-0.01-16",
    "combine",
    "sim-0.01-8",
    "upstream",
]


def test_at_80_columns_events_and_the_run_summary_cut_no_name_time_or_cause(
    tmp_path: Path,
) -> None:
    write(tmp_path / "probe.yaml", PROBE)
    ran = shoal("run", "probe.yaml", "-j", "2", cwd=tmp_path, env={"COLUMNS": "80"})
    assert ran.returncode == 1, ran.stderr
    lines = ran.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), ran.stdout
    assert "…" not in ran.stdout
    words = {w.rstrip(":") for line in lines for w in line.split()}
    failed = ["simulation-with-a-long-name-0.01-8", "combine", "sim-0.01-8", "upstream"]
    assert set(failed) <= words, ran.stdout  # no name split
    # Each cause whole on one line, after its task's name.
    assert "  upstream sim-0.01-8 failed" in lines, ran.stdout
    assert "  upstream simulation-with-a-long-name-0.01-8 failed" in lines, ran.stdout

    events = shoal("events", cwd=tmp_path, env={"COLUMNS": "80"})
    assert events.returncode == 0, events.stderr
    shown = events.stdout.splitlines()
    assert all(len(line) <= 80 for line in shown) and "…" not in events.stdout, events.stdout
    assert set(NAMES) <= {w for line in shown for w in line.split()}, events.stdout
    times = [line.split()[0] for line in shown[1:] if line[:1].isdigit()]
    assert times and all(len(t) == 8 and t.count(":") == 2 for t in times), events.stdout
    # Every detail is there, whole.
    for detail in ("upstream simulation-with-a-long-name-0.01-8 failed", "exit code 3"):
        assert any(line.strip() == detail or line.endswith(detail) for line in shown), shown
