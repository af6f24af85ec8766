"""What a new user saw wrong when watching and reading back (issue 17's probe): pure parts."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, RenderableType

from shoal.cli import render
from shoal.cli.watch import _sweep_table


def _text(thing: RenderableType, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, emoji=False).print(thing)
    return out.getvalue()


def _row(task: str, result: Any, **matrix: Any) -> dict[str, Any]:
    return {
        "task": task,
        "result": result,
        "matrix": matrix,
        "after": [],
        "started": None,
        "ended": None,
    }


def test_results_table_does_not_repeat_matrix_keys_and_names_a_differing_one_result_key() -> None:
    same = [_row(f"sim-{d}", {"lr": 0.1, "depth": d, "n": 5}, lr=0.1, depth=d) for d in (1, 2)]
    head = _text(_sweep_table(same)).splitlines()[0].split()
    assert head == ["task", "lr", "depth", "n"], head
    differs = [
        _row("sim-1", {"lr": 0.05, "loss": 1}, lr=0.1),
        _row("sim-2", {"lr": 0.2, "loss": 2}, lr=0.2),
    ]
    lines = _text(_sweep_table(differs)).splitlines()
    assert lines[0].split() == ["task", "lr", "result.lr", "loss"], lines
    assert lines[1].split() == ["sim-1", "0.1", "0.05", "1"], lines


def test_a_task_ready_or_running_again_shows_nothing_of_its_earlier_attempt() -> None:
    from tests.scheduling import clock, on_memory, report, run_of, take, worker

    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: t, run: x, retries: 2, retry_delay: 0s}\n"))
    w1 = worker(s, "w1")
    (a,) = take(s, w1)
    clock(s).now += 55.5
    report(s, w1, a, code=3)
    (ready,) = s.tasks_view(rid)
    assert ready["state"] == "ready"
    assert (ready["worker"], ready["duration"], ready["started"]) == (None, None, None), ready
    w2 = worker(s, "w2")
    take(s, w2)
    (running,) = s.tasks_view(rid)
    assert running["state"] == "running" and running["worker"] == "w2"
    assert (running["exit_code"], running["cause"]) == (None, None), running
    shown = _text(render.task_table([running], now=running["started"] + 1, width=100))
    assert "exit code 3" not in shown and " 3 " not in shown, shown
    clock(s).now += 10
    s.worker_lost(w2, "its machine is gone")
    (lost,) = s.tasks_view(rid)
    assert lost["state"] == "ready"
    assert (lost["worker"], lost["duration"]) == (None, None), lost


def test_the_bar_counts_what_did_not_succeed_in_the_summarys_words() -> None:
    from shoal.cli.progress import ended_badly

    counts = {"failed": 1, "upstream_failed": 1, "succeeded": 4}
    assert ended_badly(counts).plain == render.counts_text(counts).plain.replace(
        "  4 succeeded", ""
    )
    assert ended_badly(counts).plain == "1 failed  1 upstream_failed"
    assert ended_badly({"succeeded": 2, "running": 1}).plain == "0 failed"


def _task(
    name: str, state: str, cause: str | None = None, code: int | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "attempts": 1 if code is not None else 0,
        "exit_code": code,
        "duration": 0.002 if code is not None else None,
        "started": None,
        "worker": "local-2" if code is not None else None,
        "cause": cause,
        "result": None,
    }


def test_causes_that_do_not_fit_beside_follow_the_table_whole_and_names_stay_whole() -> None:
    tasks = [
        _task("sim-0.01-8", "failed", "exit code 3", 3),
        _task("upstream", "upstream_failed", "upstream sim-0.01-8 failed"),
    ]
    lines = _text(render.task_table(tasks, width=80)).splitlines()
    assert "upstream: upstream sim-0.01-8 failed" in lines, lines
    assert "sim-0.01-8: exit code 3" in lines, lines
    long = [_task("simulation-with-a-long-name-0.001-16", "upstream_failed", "upstream x failed")]
    shown = _text(render.task_table(long, width=80), width=80)
    assert "simulation-with-a-long-name-0.001-16" in shown.split(), shown
    assert all(len(line) <= 80 for line in shown.splitlines()), shown


def test_the_current_workers_are_listed_by_name_numbers_as_numbers() -> None:
    from shoal.cli.watch import current_workers

    def worker(wid: int, name: str) -> dict[str, Any]:
        return {"id": wid, "name": name, "state": "active", "last_sync": 100.0}

    # Local workers register in whatever order they start.
    rows = [worker(1, "local-2"), worker(2, "local-10"), worker(3, "local-1")]
    assert [w["name"] for w in current_workers(rows, 100.0)] == ["local-1", "local-2", "local-10"]
