"""A run's end, on the in-memory store: counted to zero; cancel, retry, fail, abandon."""

from __future__ import annotations

import pytest

from shoal import protocol as p
from shoal.exceptions import NotFound
from shoal.scheduler import WorkerShape
from tests.scheduling import clock, kinds, memory, on_memory, report, run_of, states, take, worker

DIAMOND = (
    "tasks:\n- {name: top, run: x}\n- {name: left, run: x, after: [top]}\n"
    "- {name: right, run: x, after: [top]}\n- {name: bottom, run: x, after: [left, right]}\n"
)


def test_a_run_ends_with_its_last_task_succeeded_if_all_did() -> None:
    s = on_memory()
    rid = s.submit(run_of(DIAMOND))
    w = worker(s, slots=2)
    unfinished = []
    (top,) = take(s, w, free=2)
    pending = [top]
    while pending:
        out = report(s, w, pending.pop(0), free=2)
        pending += out.response.assignments
        unfinished.append(s.run_view(rid)["unfinished"])
        assert out.finished_runs == ([rid] if not pending else [])
    assert unfinished == [3, 2, 1, 0]
    view = s.run_view(rid)
    assert (view["state"], view["active"], view["counts"]) == ("succeeded", 0, {"succeeded": 4})
    assert view["finished"] == clock(s).now
    assert kinds(s, rid)[-2:] == ["task_succeeded", "run_succeeded"]


def test_a_run_with_any_task_not_succeeded_fails_when_the_last_one_ends() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: bad, run: x}\n- {name: good, run: x}\n"))
    w = worker(s, slots=2)
    bad, good = take(s, w, free=2)
    report(s, w, bad, code=1)
    assert s.run_view(rid)["state"] == "running"  # good still runs
    report(s, w, good)
    assert s.run_view(rid)["state"] == "failed"


def test_cancel_ends_the_unfinished_tasks_and_their_attempts() -> None:
    s = on_memory()
    rid = s.submit(run_of(DIAMOND + "- {name: alone, run: x}\n"))
    w = worker(s, slots=2)
    top, alone = take(s, w, free=2)
    report(s, w, alone)
    assert s.cancel(rid) == 4  # top (running), left, right, bottom (waiting)
    view = s.run_view(rid)
    assert (view["state"], view["unfinished"]) == ("cancelled", 0)
    assert states(s, rid) == {
        "top": "cancelled",
        "left": "cancelled",
        "right": "cancelled",
        "bottom": "cancelled",
        "alone": "succeeded",
    }
    attempt = s.task_view(rid, "top")["attempt_list"][0]
    assert (attempt["state"], attempt["cause"]) == ("cancelled", "cancelled")
    assert s.events_view(rid)[-1]["detail"] == "4 tasks"
    answer = s.sync(p.SyncRequest(worker_id=w, running=[top.attempt_id], free_slots=2)).response
    assert answer.cancel == [top.attempt_id] and answer.assignments == []


def test_cancelling_a_finished_run_changes_nothing() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a)
    assert s.cancel(rid) == 0
    assert s.run_view(rid)["state"] == "succeeded"
    with pytest.raises(NotFound, match="no run 99"):
        s.cancel(99)


def test_retry_runs_the_failed_the_upstream_failed_and_the_cancelled_again() -> None:
    s = on_memory()
    s.origin = "me"
    rid = s.submit(run_of(DIAMOND + "- {name: fine, run: x}\n- {name: later, run: x}\n"))
    w = worker(s, slots=3)
    top, fine, _later = take(s, w, free=3)  # later runs on
    report(s, w, fine)
    report(s, w, top, code=1)  # left, right, bottom: upstream_failed
    s.cancel(rid)  # later: cancelled
    assert s.run_view(rid)["state"] == "cancelled"
    notices = len(memory(s).notices)
    assert s.retry(rid) == 5
    assert states(s, rid) == {
        "top": "ready",
        "left": "waiting",
        "right": "waiting",
        "bottom": "waiting",
        "fine": "succeeded",
        "later": "ready",
    }
    view = s.run_view(rid)
    assert (view["state"], view["unfinished"], view["finished"]) == ("running", 5, None)
    assert len(memory(s).notices) == notices + 1
    assert kinds(s, rid)[-1] == "run_retried"
    top_task = s.task_view(rid, "top")
    assert (top_task["cause"], top_task["exit_code"]) == (None, None)
    # The retried tasks run to the end: the run succeeds this time.
    got = take(s, w, free=3)
    assert sorted(a.task for a in got) == ["later", "top"]
    pending = list(got)
    while pending:
        pending += report(s, w, pending.pop(0), free=3).response.assignments
    assert s.run_view(rid)["state"] == "succeeded"


def test_retry_gives_a_task_its_retries_again() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: f, run: x, retries: 1, retry_delay: 0}\n"))
    w = worker(s)
    for _ in range(2):
        (a,) = take(s, w)
        report(s, w, a, code=1)
    assert states(s, rid) == {"f": "failed"}
    s.retry(rid)
    (a,) = take(s, w)
    report(s, w, a, code=1)
    assert states(s, rid) == {"f": "ready"}  # one more try, as the first time


def test_retry_of_a_run_that_succeeded_does_nothing() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a)
    assert s.retry(rid) == 0
    assert s.run_view(rid)["state"] == "succeeded"
    assert "run_retried" not in kinds(s, rid)
    with pytest.raises(NotFound):
        s.retry(42)


def test_tasks_no_worker_of_the_run_can_take_are_failed_with_why() -> None:
    s = on_memory()
    rid = s.submit(
        run_of(
            "tasks:\n- {name: big, run: x, slots: 4}\n- {name: after-big, run: x, after: [big]}\n"
            "- {name: pinned, run: x, host: nowhere}\n- {name: fine, run: x}\n"
        )
    )
    shapes = [WorkerShape("local-1", 2), WorkerShape("local-2", 2)]
    found = s.fail_unplaceable(rid, shapes)
    assert [(u.names, u.count) for u in found] == [(["big"], 1), (["pinned"], 1)]
    tasks = {t["name"]: t for t in s.tasks_view(rid)}
    assert tasks["big"]["cause"] == "needs 4 slots, more slots than any worker has (2 at most)"
    assert tasks["pinned"]["cause"] == "is pinned to host 'nowhere', no such worker"
    assert (tasks["after-big"]["state"], tasks["fine"]["state"]) == ("upstream_failed", "ready")
    assert s.run_view(rid)["unfinished"] == 1
    w = worker(s, "local-1", slots=2)
    (fine,) = take(s, w)
    report(s, w, fine)
    assert s.run_view(rid)["state"] == "failed"


def test_when_every_task_can_be_placed_nothing_is_written() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x, requires: {gpu: true}}\n"))
    before = memory(s).tables
    assert s.fail_unplaceable(rid, [WorkerShape("g", 1, {"gpu": True})]) == []
    assert memory(s).tables is before  # not even a transaction
    assert s.fail_unplaceable(rid, []) == []  # no workers: nothing to judge by


def test_abandoning_ends_every_running_run_and_interrupts_its_attempts() -> None:
    s = on_memory()
    one = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"))
    two = s.submit(run_of("name: two\ntasks:\n- {name: c, run: x}\n"))
    done = s.submit(run_of("name: done\ntasks:\n- {name: d, run: x}\n"))
    w = worker(s, slots=3)
    got = {a.task: a for a in take(s, w, free=3)}
    report(s, w, got["d"])
    assert s.abandon_running("the boss of this run is gone") == [one, two]
    for rid in (one, two):
        view = s.run_view(rid)
        assert (view["state"], view["unfinished"]) == ("cancelled", 0)
        assert s.events_view(rid)[-1]["kind"] == "run_abandoned"
    attempt = s.task_view(one, "a")["attempt_list"][0]
    assert (attempt["state"], attempt["cause"]) == ("interrupted", "the boss of this run is gone")
    assert s.task_view(one, "b")["cause"] == "the boss of this run is gone"
    assert s.run_view(done)["state"] == "succeeded"
