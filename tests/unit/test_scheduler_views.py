"""The read views the scheduler holds, on the in-memory store."""

from __future__ import annotations

import pytest

from shoal.exceptions import Fenced, NotFound
from tests.scheduling import on_memory, report, run_of, take, worker


def test_a_run_is_found_by_id_by_name_or_as_the_latest() -> None:
    s = on_memory()
    with pytest.raises(NotFound, match="no runs yet: start one with 'shoal run FILE'"):
        s.resolve_run(None)
    first = s.submit(run_of("name: nightly\ntasks:\n- {name: a, run: x}\n"))
    second = s.submit(run_of("name: nightly\ntasks:\n- {name: a, run: x}\n"))
    other = s.submit(run_of("name: other\ntasks:\n- {name: a, run: x}\n"))
    assert s.resolve_run(None) == s.resolve_run("") == other
    assert s.resolve_run("nightly") == second  # a name: its latest run
    assert s.resolve_run(str(first)) == s.resolve_run(first) == first
    with pytest.raises(NotFound, match="no run 'weekly' \\(see 'shoal status'"):
        s.resolve_run("weekly")
    with pytest.raises(NotFound):
        s.resolve_run("99999999999999999999")  # too long for an id, and no such name
    assert [r["run"] for r in s.runs_view()] == [other, second, first]
    assert [r["run"] for r in s.runs_view(limit=1)] == [other]


def test_an_attempt_may_write_its_outputs_only_while_it_holds_its_task() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    assert s.attempt_writing(a.attempt_id, outputs=True) == (rid, "a")
    report(s, w, a)
    with pytest.raises(Fenced, match="the attempt is succeeded, the task succeeded"):
        s.attempt_writing(a.attempt_id, outputs=True)
    assert s.attempt_writing(a.attempt_id, outputs=False) == (rid, "a")  # its log, still
    with pytest.raises(NotFound, match="no attempt 77"):
        s.attempt_writing(77, outputs=False)
    assert s.running_attempts([a.attempt_id, 77]) == set()


def test_the_run_view_names_what_no_connected_worker_can_take() -> None:
    s = on_memory()
    rid = s.submit(
        run_of(
            "tasks:\n- {name: big, run: x, slots: 16}\n- {name: gpu, run: x, requires: {gpu: true}}\n"
            "- {name: plain, run: x}\n"
        )
    )
    assert "warnings" not in s.run_view(rid)  # no worker yet: the tasks wait for one
    worker(s, "small", slots=4)
    view = s.run_view(rid)
    assert view["warnings"] == [
        "task 'big' needs 16 slots, more slots than any worker has (4 at most)",
        "task 'gpu' needs labels gpu=true that no worker has",
    ]
    assert [u["tasks"] for u in view["unplaceable"]] == [["big"], ["gpu"]]


def test_task_and_worker_views_show_what_the_user_reads() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: [one, two], priority: 3}\n"))
    w = worker(s, "box", slots=2, zone="eu")
    (a,) = take(s, w)
    (view,) = s.workers_view()
    assert (view["name"], view["labels"], view["running"], view["host"]) == (
        "box",
        {"zone": "eu"},
        1,
        "h",
    )
    report(s, w, a, result=[1, 2], outputs=["x.txt"], started=5.0, ended=7.5)
    task = s.task_view(rid, "a")
    assert task["spec"]["run"] == ["one", "two"]
    assert (task["priority"], task["kind"], task["slots"], task["duration"]) == (
        3,
        "command",
        1,
        2.5,
    )
    assert task["attempt_list"][0]["worker"] == "box"
    assert s.results(rid) == {"a": [1, 2]}
    assert s.tasks_view(rid, ["failed"]) == []
    with pytest.raises(NotFound, match="no task 'b' in run"):
        s.task_view(rid, "b")
    with pytest.raises(NotFound):
        s.tasks_view(rid + 1)
    with pytest.raises(NotFound):
        s.results(rid + 1)
    assert s.run_state(rid) == "succeeded"
    assert s.bosses_view() == []
