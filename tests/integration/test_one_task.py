"""One task cancelled or run again by hand, and a task's neighbours, on SQLite and PostgreSQL.

What the dashboard's task page and ``shoal cancel/retry RUN --task NAME`` ask of the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal import protocol as p
from shoal.exceptions import BadInput, NotFound
from shoal.scheduler import Scheduler
from shoal.store import Store
from tests.scheduling import Clock, report, run_of, states, take, worker

CHAIN = (
    "tasks:\n- {name: a, run: x, outputs: [o.txt]}\n- {name: b, run: x, after: [a]}\n"
    "- {name: c, run: x, after: [b]}\n- {name: d, run: x}\n"
)


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    store = Store(db_url)
    yield Scheduler(store, clock=Clock())
    store.close()


def test_cancelling_one_running_task_ends_it_and_what_runs_after_it(sched: Scheduler) -> None:
    rid = sched.submit(run_of(CHAIN))
    w = worker(sched, slots=2)
    a, d = take(sched, w, free=2)
    assert sched.cancel_task(rid, "a") == 3
    assert states(sched, rid) == {
        "a": "cancelled",
        "b": "upstream_failed",
        "c": "upstream_failed",
        "d": "running",
    }
    # Its worker is told to stop it; the other task goes on.
    answer = sched.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id, d.attempt_id]))
    assert answer.response.cancel == [a.attempt_id]
    assert sched.task_view(rid, "b")["cause"] == "upstream a cancelled"
    report(sched, w, d)
    assert sched.run_view(rid)["state"] == "failed"
    assert [e["kind"] for e in sched.task_events(rid, "a")][-1] == "task_cancelled"
    with pytest.raises(BadInput, match="task 'd' has already succeeded"):
        sched.cancel_task(rid, "d")
    with pytest.raises(NotFound):
        sched.cancel_task(rid, "nope")


def test_retrying_one_task_runs_it_and_what_its_end_stopped_again(sched: Scheduler) -> None:
    rid = sched.submit(run_of(CHAIN))
    w = worker(sched, slots=2)
    a, d = take(sched, w, free=2)
    report(sched, w, a, code=4)
    report(sched, w, d)
    assert sched.run_view(rid)["state"] == "failed"
    with pytest.raises(BadInput, match="only a failed or cancelled task runs again"):
        sched.retry_task(rid, "b")  # upstream failed: its upstream is what to retry
    with pytest.raises(BadInput, match="only a failed or cancelled task"):
        sched.retry_task(rid, "d")
    assert sched.retry_task(rid, "a") == 3
    assert states(sched, rid) == {"a": "ready", "b": "waiting", "c": "waiting", "d": "succeeded"}
    assert sched.run_view(rid)["state"] == "running"
    for name in ("a", "b", "c"):
        (t,) = take(sched, w)
        assert t.task == name
        report(sched, w, t)
    assert sched.run_view(rid)["state"] == "succeeded"


def test_a_task_is_not_run_again_while_what_it_runs_after_failed(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"))
    w = worker(sched)
    (a,) = take(sched, w)
    sched.cancel_task(rid, "a")
    report(sched, w, a)  # too late: dropped
    sched.sync(p.SyncRequest(worker_id=w))
    assert states(sched, rid) == {"a": "cancelled", "b": "upstream_failed"}
    assert sched.retry_task(rid, "a") == 2


def test_a_task_names_what_it_runs_after_with_their_outputs_and_what_runs_after_it(
    sched: Scheduler,
) -> None:
    rid = sched.submit(run_of(CHAIN))
    w = worker(sched)
    (a,) = take(sched, w)
    report(sched, w, a, outputs=["o.txt"])
    links = sched.task_links(rid, "b")
    assert links == {
        "deps": [{"name": "a", "state": "succeeded", "run": rid, "outputs": ["o.txt"]}],
        "dependents": [{"name": "c", "state": "waiting"}],
        "more_dependents": 0,
    }
    assert sched.task_links(rid, "d") == {"deps": [], "dependents": [], "more_dependents": 0}
