"""Leases and backups: lost attempts run again, stragglers get a second attempt.

An attempt holds a lease that its worker's syncs renew. The housekeeping
sweep (:func:`expire`) ends the attempts whose lease ran out: their task is
ready again, unless another attempt of it still runs, and fails once it has
been lost ``max_losses`` times. A worker with nothing ready to take may be
given a backup of a straggler (:func:`stragglers`): the first of the two
attempts to finish wins the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.scheduler import runs
from shoal.scheduler.placement import has_labels
from shoal.store.contract import DecisionTx
from shoal.store.rows import ActiveWorker, Event, ReadyTask

if TYPE_CHECKING:
    from shoal.scheduler.core import Scheduler

__all__ = ["expire", "stragglers"]


def expire(s: Scheduler, gone: tuple[int, str] | None = None) -> bool:
    """End the attempts whose lease ran out; True if tasks became ready again.

    ``gone``: a worker known gone (its machine was preempted) and why: its
    running attempts end now, lost for that reason.
    """
    now = s.clock()
    readied = False
    with s.store.transaction() as tx:
        tx.mark_workers_lost(now - s.lease_seconds)
        events: list[Event] = []
        if gone is not None:
            tx.set_worker_state(gone[0], "lost")
            tx.end_worker_leases(gone[0], now - 1.0)
        for a in tx.expired_attempts(now):
            silent = now - a.last_sync if a.last_sync is not None else s.lease_seconds
            cause = f"lost: no sync for {silent:.0f}s from worker {a.worker_name}"
            if gone is not None and a.worker_id == gone[0]:
                cause = f"lost: {gone[1]}"
            elif silent < s.lease_seconds:
                cause = f"lost: its assignment never reached worker {a.worker_name}"
            tx.end_attempt(a.id, "lost", cause, now)
            events.append(Event(now, "attempt_lost", a.run_id, a.task_id, a.id, a.worker_id, cause))
            if a.task_state != "running" or tx.others_running(a.task_id, a.id):
                continue
            losses = tx.count_loss(a.task_id)
            if losses < s.max_losses:
                tx.set_task_ready(a.task_id)
                readied = True
                continue
            events.append(Event(now, "task_failed", a.run_id, a.task_id, a.id, a.worker_id, cause))
            ended = runs.fail_task(
                tx,
                a.task_id,
                a.task_name,
                now,
                f"{cause} ({losses} attempts lost)",
                events=events,
            )
            runs.count_done(tx, a.run_id, ended, now, events)
        tx.add_events(events)
        if not readied:
            readied = tx.any_ready()
        if readied:
            tx.notify_work(s.origin)
    return readied


def stragglers(
    s: Scheduler,
    tx: DecisionTx,
    worker: ActiveWorker,
    now: float,
    max_seconds: float | None = None,
) -> list[ReadyTask]:
    """Tasks worth a backup attempt on this idle worker (at most one).

    A task qualifies when its only attempt, on another worker, has run
    longer than ``speculate_factor`` times the median duration of the
    finished tasks of its run and matrix group, and longer than
    ``speculate_min`` seconds; and when this worker may take it (slots,
    host, labels, and a timeout within ``max_seconds`` where it is given).
    """
    running = tx.lone_running_attempts(worker.id, now - s.speculate_min)
    medians: dict[tuple[int, str | None], float | None] = {}
    labels = worker.labels
    for r in running:
        if r.slots > worker.slots or (r.host is not None and r.host != worker.name):
            continue
        if r.requires_json and not has_labels(r.requires, labels):
            continue
        timeout = r.spec.get("timeout")
        if max_seconds is not None and timeout is not None and timeout > max_seconds:
            continue
        group = (r.run_id, r.grp)
        if group not in medians:
            durations = sorted(tx.group_durations(r.run_id, r.grp or r.name))
            medians[group] = durations[len(durations) // 2] if len(durations) >= 2 else None
        median = medians[group]
        assigned = r.assigned if r.assigned is not None else now
        if median is not None and now - assigned > s.speculate_factor * median:
            return [r]
    return []
