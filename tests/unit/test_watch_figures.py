"""The figures `shoal status`, `shoal run`'s bar and `shoal tasks` show (issue 17 items 6-8)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from shoal.cli import render
from shoal.cli.progress import bar_style
from tests.scheduling import kinds, on_memory, report, run_of, take, worker


def _view(**changes: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "run": 1,
        "name": "sweep",
        "state": "succeeded",
        "counts": {"succeeded": 300},
        "total": 300,
        "active": 0,
        "created": 1000.0,
        "finished": 1000.0,
        "cached": 0,
        "slots": None,
    }
    view.update(changes)
    return view


def _summary(view: dict[str, Any]) -> str:
    return " ".join(line.plain for line in render.run_summary_lines(view, 2000.0))


def test_a_rerun_that_reused_every_task_has_no_pace() -> None:
    view = _view(cached=300, finished=1000.0 + 3e-8)
    assert render.pace(view, 2000.0) == (None, None)
    assert "tasks/s" not in _summary(view)
    assert "300/300 done" in _summary(view)


def test_pace_counts_only_the_tasks_that_ran_and_says_the_time_left() -> None:
    view = _view(
        state="running",
        counts={"succeeded": 150, "running": 2, "ready": 98},
        active=100,
        cached=100,
        finished=None,
        created=1990.0,
    )
    assert render.pace(view, 2000.0) == (5.0, 20.0)  # 50 ran in 10s; 100 left
    assert "(5.0 tasks/s)  about 20.0s left" in _summary(view)


def test_a_cancelled_run_is_not_all_done() -> None:
    view = _view(state="cancelled", counts={"succeeded": 12, "cancelled": 288}, finished=1010.0)
    assert render.done_count(view) == 12
    assert "12/300 done" in _summary(view)


def test_the_bar_turns_red_on_a_failure_and_yellow_on_a_cancel() -> None:
    assert bar_style({"succeeded": 3, "running": 1}) == "green"
    assert bar_style({"succeeded": 3, "upstream_failed": 1}) == "red"
    assert bar_style({"succeeded": 3, "cancelled": 2}) == "yellow"


def test_running_is_at_most_the_workers_slots_with_tasks_queued_ahead() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n" + "".join(f"- {{name: t{i}, run: x}}\n" for i in range(6))))
    w = worker(s, slots=1)
    assert len(take(s, w, free=3)) == 3  # one runs, two wait on the worker
    view = s.run_view(rid)
    assert (view["counts"]["running"], view["slots"]) == (3, 1)
    assert render.running_shown(view) == 1


def test_tasks_carry_their_matrix_values_after_and_times() -> None:
    s = on_memory()
    rid = s.submit(
        run_of(
            "tasks:\n- {name: prep, run: x}\n"
            "- name: sim-{lr}\n  after: prep\n  matrix: {lr: [0.1, 0.2]}\n  run: x {lr}\n"
        )
    )
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a)
    tasks = {t["name"]: t for t in s.tasks_view(rid)}
    assert (tasks["sim-0.2"]["matrix"], tasks["sim-0.2"]["after"]) == ({"lr": 0.2}, ["prep"])
    assert (tasks["prep"]["matrix"], tasks["prep"]["after"]) == ({}, [])
    assert tasks["prep"]["started"] is not None and tasks["prep"]["ended"] is not None
    assert tasks["sim-0.2"]["started"] is None and tasks["sim-0.2"]["ended"] is None


def test_a_task_skipped_for_a_failed_dependency_has_an_event() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: a}\n"))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a, code=3)
    assert "upstream_failed" in kinds(s, rid)
    (event,) = [e for e in s.events_view(rid) if e["kind"] == "upstream_failed"]
    assert event["detail"] == "upstream a failed"


def test_a_running_task_shows_its_time_so_far_and_a_cause_is_never_cut() -> None:
    cause = "needs labels accelerator=gpu-a100-80gb that no connected worker has"
    tasks = [
        {
            "name": "train-a-rather-large-model-on-the-whole-dataset",
            "state": "running",
            "attempts": 1,
            "exit_code": None,
            "duration": None,
            "started": 1990.0,
            "worker": "w",
            "cause": None,
            "result": None,
        },
        {
            "name": "evaluate-the-model-on-the-held-out-data",
            "state": "upstream_failed",
            "attempts": 0,
            "exit_code": None,
            "duration": None,
            "started": None,
            "worker": None,
            "cause": cause,
            "result": None,
        },
    ]
    out = Console(width=80, file=io.StringIO())
    out.print(render.task_table(tasks, now=2000.0, width=80))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "10.0s" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert set(cause.split()) <= set(text.split()), text
    assert any("upstream_failed" in line.split() for line in text.splitlines())
