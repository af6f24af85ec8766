"""`shoal run` of a task file with a new user's mistake: refused before anything runs.

Each is one line naming the file, the line and the task, exit 2, and what an
earlier run stored is kept.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shoal, shoal_json, write

SWEEP = """\
tasks:
  - name: prep
    run: echo 1
  - name: sim-{lr}-{depth}
    matrix:
      lr: [0.1, 0.2]
      depth: [2, 4, 8]
%s
    run: %s
"""

MISTAKES = {
    "indented.yaml": (
        SWEEP % ("      after: [prep]", "echo {lr} {depth}"),
        ":8: task 'sim-{lr}-{depth}': matrix key 'after' is used by no field of the task "
        "(indented too far? 'after:' belongs beside 'matrix:', not under it)",
    ),
    "typo.yaml": (
        SWEEP % ("    after: [prep]", "echo {lr} {dept}"),
        ":9: task 'sim-{lr}-{depth}': 'run' has '{dept}', which is no matrix key "
        "(did you mean '{depth}'?)",
    ),
    "number.yaml": (
        "tasks:\n  - name: a\n    run: [make, 3]\n",
        ":3: task 'a': 'run' entry 2 is the number 3, not a command (quote it if it is one)",
    ),
    "reduce.yaml": (
        "tasks:\n  - {name: a, run: echo 1}\n  - {name: total, reduce: [a, b]}\n",
        ":3: task 'total': 'reduce' names no task 'b'",
    ),
}


def test_mistakes_exit_2_with_one_line_before_anything_runs(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "tasks:\n  - {name: kept, run: echo 42}\n")
    assert shoal("run", "good.yaml", "-j", "1", cwd=tmp_path).returncode == 0
    for name, (text, expected) in MISTAKES.items():
        write(tmp_path / name, text)
        proc = shoal("run", name, "-j", "1", cwd=tmp_path)
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"shoal: {name}{expected}"], (name, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout
    assert shoal_json("results", cwd=tmp_path) == {"kept": 42}
    assert len(shoal_json("status", "all", cwd=tmp_path)) == 1


def test_a_retry_delay_of_zero_retries_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    write(
        tmp_path / "retry.yaml",
        "tasks:\n  - name: flaky\n    retries: 1\n    retry_delay: 0s\n"
        f"    run: test -e {marker} && echo 7 || (touch {marker}; exit 1)\n",
    )
    proc = shoal("run", "retry.yaml", "-j", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (task,) = shoal_json("tasks", cwd=tmp_path)
    assert (task["state"], task["attempts"], task["result"]) == ("succeeded", 2, 7)
