"""A run's end: counted as its tasks finish; cancel, retry, fail what cannot run, abandon.

A run keeps a count of its unfinished tasks; the transaction that brings it
to zero ends the run, ``succeeded`` if every task did, else ``failed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shoal.exceptions import BadInput, NotFound
from shoal.scheduler.placement import WorkerShape
from shoal.scheduler.views import Unplaceable, unplaceable
from shoal.store.contract import DecisionTx
from shoal.store.rows import Event

if TYPE_CHECKING:
    from shoal.scheduler.core import Scheduler

__all__ = [
    "abandon_running",
    "cancel",
    "cancel_task",
    "count_done",
    "fail_task",
    "fail_unplaceable",
    "retry",
    "retry_task",
]

# A task in one of these states may be run again by hand.
_RETRYABLE = ("failed", "cancelled")


def count_done(
    tx: DecisionTx,
    run_id: int,
    n: int,
    now: float,
    events: list[Event],
    ended: list[int] | None = None,
) -> None:
    """``n`` more of the run's tasks finished; the last one ends the run.

    The run's own event goes after those of the tasks that ended it; its id
    is added to ``ended``.
    """
    if tx.count_unfinished(run_id, -n) > 0:
        return
    run = tx.run(run_id)
    if run is None or run.state != "running":
        return
    state = "failed" if tx.failed_count(run_id) else "succeeded"
    tx.set_run_state(run_id, state, now)
    events.append(Event(now, f"run_{state}", run_id))
    if ended is not None:
        ended.append(run_id)


def fail_task(
    tx: DecisionTx,
    task_id: int,
    name: str,
    now: float,
    cause: str,
    *,
    exit_code: int | None = None,
    result: Any = None,
    outputs: list[str] | None = None,
    worker_id: int | None = None,
) -> int:
    """Fail a task, and every task downstream of it; how many tasks that ended.

    Each task downstream gets an ``upstream_failed`` event: ``shoal events``
    and the task's page say why it never ran.
    """
    tx.finish_task(
        task_id,
        state="failed",
        now=now,
        exit_code=exit_code,
        cause=cause,
        result=result,
        has_result=result is not None,
        outputs=outputs,
        worker_id=worker_id,
    )
    cause_down = f"upstream {name} failed"
    marked = tx.fail_downstream(task_id, cause_down, now)
    tx.add_events(
        [Event(now, "upstream_failed", run, down, detail=cause_down) for down, run in marked]
    )
    return 1 + len(marked)


def cancel(s: Scheduler, run_id: int) -> int:
    """Cancel every unfinished task of the run; how many were cancelled."""
    now = s.clock()
    with s.store.transaction() as tx:
        run = tx.run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        n = tx.cancel_tasks(run_id, now)
        tx.cancel_attempts(run_id, now)
        if run.state == "running":
            tx.count_unfinished(run_id, -n)
            tx.set_run_state(run_id, "cancelled", now)
        tx.add_events([Event(now, "run_cancelled", run_id, detail=f"{n} tasks")])
    return n


def retry(s: Scheduler, run_id: int) -> int:
    """Run the run's failed, upstream-failed and cancelled tasks again; how many."""
    now = s.clock()
    with s.store.transaction() as tx:
        if tx.run(run_id) is None:
            raise NotFound(f"no run {run_id}")
        ids = tx.reset_failed_tasks(run_id)
        if ids:
            tx.notify_work(s.origin)
            tx.reset_unfinished(run_id)
            tx.set_run_state(run_id, "running", None)
            tx.add_events([Event(now, "run_retried", run_id, detail=f"{len(ids)} tasks")])
    return len(ids)


def cancel_task(s: Scheduler, run_id: int, name: str) -> int:
    """Cancel one unfinished task (what runs after it does not run); how many tasks that ended.

    Its running attempt ends at once; its worker is told to stop it on its next sync.
    """
    now = s.clock()
    with s.store.transaction() as tx:
        task = tx.task_by_name(run_id, name)
        if task is None:
            raise NotFound(f"no task '{name}' in run {run_id}")
        if task.state not in ("waiting", "ready", "running"):
            raise BadInput(f"task '{name}' is {task.state} already: only an unfinished task stops")
        tx.finish_task(task.id, state="cancelled", now=now, cause="cancelled")
        tx.cancel_task_attempts(task.id, now)
        cause_down = f"upstream {name} cancelled"
        marked = tx.fail_downstream(task.id, cause_down, now)
        n = 1 + len(marked)
        events = [Event(now, "task_cancelled", run_id, task.id)]
        events += [
            Event(now, "upstream_failed", run, down, detail=cause_down) for down, run in marked
        ]
        count_done(tx, run_id, n, now, events)
        tx.add_events(events)
    return n


def retry_task(s: Scheduler, run_id: int, name: str) -> int:
    """Run one failed or cancelled task again, and what its end stopped; how many tasks.

    Refused while a task it runs after has not succeeded or will not: it
    would wait for ever (retry that one first).
    """
    now = s.clock()
    with s.store.transaction() as tx:
        task = tx.task_by_name(run_id, name)
        if task is None:
            raise NotFound(f"no task '{name}' in run {run_id}")
        if task.state not in _RETRYABLE:
            hint = " (retry the task it runs after)" if task.state == "upstream_failed" else ""
            raise BadInput(
                f"task '{name}' is {task.state.replace('_', ' ')}: "
                f"only a failed or cancelled task runs again{hint}"
            )
        stuck = [
            d
            for d in tx.task_deps(task.id)
            if d.state in ("failed", "upstream_failed", "cancelled")
        ]
        if stuck:
            raise BadInput(
                f"task '{name}' runs after '{stuck[0].name}', which is "
                f"{stuck[0].state.replace('_', ' ')}: retry that one first"
            )
        ids = tx.reset_task(task.id)
        tx.notify_work(s.origin)
        tx.reset_unfinished(run_id)
        tx.set_run_state(run_id, "running", None)
        tx.add_events([Event(now, "task_restarted", run_id, task.id, detail=f"{len(ids)} tasks")])
    return len(ids)


def fail_unplaceable(
    s: Scheduler, run_id: int, workers: Sequence[WorkerShape]
) -> list[Unplaceable]:
    """Fail the run's ready tasks that none of ``workers`` can ever take; what was failed."""
    with s.store.read() as tx:  # the usual answer, nothing: no write lock taken
        if not unplaceable(tx, run_id, workers, names=0):
            return []
    now = s.clock()
    with s.store.transaction() as tx:
        found = unplaceable(tx, run_id, workers, names=None)
        events: list[Event] = []
        for need in found:
            for r in tx.ready_of_shape(run_id, need.slots, need.host, need.requires, None):
                ended = fail_task(tx, r.id, r.name, now, need.reason)
                events.append(Event(now, "task_failed", run_id, r.id, detail=need.reason))
                count_done(tx, run_id, ended, now, events)
        tx.add_events(events)
    return found


def abandon_running(s: Scheduler, cause: str) -> list[int]:
    """End every run still running: its boss and workers are gone; the runs' ids."""
    now = s.clock()
    with s.store.transaction() as tx:
        ids = tx.running_runs()
        for run_id in ids:
            tx.interrupt_attempts(run_id, cause, now)
            n = tx.cancel_tasks(run_id, now, cause=cause)
            tx.count_unfinished(run_id, -n)
            tx.set_run_state(run_id, "cancelled", now)
            tx.add_events([Event(now, "run_abandoned", run_id, detail=cause)])
    return ids
