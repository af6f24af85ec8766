"""A run's end: counted as its tasks finish; cancel, retry, fail what cannot run, abandon.

A run keeps a count of its unfinished tasks; the transaction that brings it
to zero ends the run, ``succeeded`` if every task did, else ``failed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shoal import protocol as p
from shoal.exceptions import BadInput, NotFound
from shoal.scheduler.placement import WorkerShape
from shoal.scheduler.views import Unplaceable, unplaceable
from shoal.store.contract import DecisionTx, StoreTx
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
    "fail_where_setup_failed",
    "retry",
    "retry_task",
]

# A task in one of these states may be run again by hand.
_RETRYABLE = ("failed", "cancelled")

# How many of a run's latest events are searched for its setup failures: they
# come just before the goodbye that looks for them.
SETUP_EVENTS = 500


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
    events: list[Event],
) -> int:
    """Fail a task, and every task downstream of it; how many tasks that ended.

    Each task downstream gets an ``upstream_failed`` event, added to
    ``events`` (after the caller's own event of the failure, so that
    ``shoal events`` reads cause before effect): the task's page says why
    it never ran.
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
    events += [Event(now, "upstream_failed", run, down, detail=cause_down) for down, run in marked]
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
            raise BadInput(
                f"task '{name}' {_has_ended(task.state)}: only an unfinished task can be cancelled"
            )
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
                events.append(Event(now, "task_failed", run_id, r.id, detail=need.reason))
                ended = fail_task(tx, r.id, r.name, now, need.reason, events=events)
                count_done(tx, run_id, ended, now, events)
        tx.add_events(events)
    return found


def fail_where_setup_failed(
    tx: StoreTx, worker_id: int | None, reason: str, now: float
) -> list[int]:
    """A worker stopped as its setup of a run's bundle failed: fail the runs no worker can take.

    When no connected worker is left and none is still coming (a machine
    asked for whose agent has not registered), the run's ready tasks would
    wait forever for one that can set the bundle up: they fail with the
    reason (and what depends on them, upstream_failed), which ends the run.
    A worker that comes later runs them after ``shoal retry``. With
    ``worker_id`` None, every run whose setup failed somewhere is looked at
    (the session's periodic look: the last machine may fail to start after
    the last goodbye). Answers the runs ended.
    """
    if worker_id is not None and not reason.startswith(p.SETUP_FAILED):
        return []
    if tx.active_workers() or tx.machines_coming():
        return []
    ended: list[int] = []
    events: list[Event] = []
    for run_id in tx.running_runs():
        run = tx.run(run_id)
        if run is None or run.bundle is None:
            continue
        failed_on, last = _setup_failed_on(tx, run_id)
        if not failed_on or (worker_id is not None and worker_id not in failed_on):
            continue
        names = ", ".join(failed_on[w] for w in sorted(failed_on))
        cause = f"{reason if worker_id is not None else last} (on every worker: {names})"
        for task in tx.list_tasks(run_id, ["ready"]):
            current = tx.task(task.id)
            if current is None or current.state != "ready":
                continue  # failed meanwhile, downstream of another
            events.append(Event(now, "task_failed", run_id, task.id, detail=cause))
            n = fail_task(tx, task.id, task.name, now, cause, events=events)
            count_done(tx, run_id, n, now, events, ended)
    tx.add_events(events)
    return ended


def _setup_failed_on(tx: StoreTx, run_id: int) -> tuple[dict[int, str], str]:
    """The workers whose setup of the run's bundle failed, by id: their names; the latest why."""
    names = {w.id: w.name for w in tx.list_workers()}
    failed = [
        e
        for e in tx.list_events(run_id, SETUP_EVENTS)
        if e.kind == "attempt_interrupted"
        and e.worker_id is not None
        and (e.detail or "").startswith(p.SETUP_FAILED)
    ]
    ids = [int(e.worker_id) for e in failed if e.worker_id is not None]
    by_id = {w: names.get(w, str(w)) for w in ids}
    return by_id, (failed[-1].detail or "") if failed else ""


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


def _has_ended(state: str) -> str:
    """How a finished task ended, in words: ``has already succeeded``."""
    if state == "upstream_failed":
        return "will not run: a task it runs after failed"
    return f"has already {state}"
