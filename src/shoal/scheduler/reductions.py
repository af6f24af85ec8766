"""Reductions: ``a + b + c`` over task results, computed by the boss.

A reduction without a command is a task the boss finishes itself, once its
operands have all succeeded: their results added together
(:func:`~shoal.scheduler.combine.combine`) are its result. While its
operands finish it shows its value so far (``partial``).
"""

from __future__ import annotations

import contextlib

from shoal.scheduler import runs
from shoal.scheduler.combine import ReduceError, combine
from shoal.store.contract import DecisionTx
from shoal.store.rows import Event

__all__ = ["reduce", "update_partials"]


def update_partials(tx: DecisionTx, sources: list[int]) -> None:
    """Reductions show their value so far as their operands (``sources``) succeed."""
    for r in tx.reducers_of(sources):
        operands = r.operands
        results = tx.results_by_name(r.run_id, operands)
        present = [(n, results[n]) for n in operands if n in results]
        # A mix of kinds is reported when the reduction completes.
        with contextlib.suppress(ReduceError):
            tx.set_partial(r.id, combine(present))


def reduce(
    tx: DecisionTx, task_ids: list[int], now: float, events: list[Event], ended: list[int]
) -> bool:
    """Compute the ready reductions; True if commands became ready.

    A reduction's success may make others ready: they are computed too.
    The runs this ends are added to ``ended``.
    """
    readied = False
    todo = list(task_ids)
    while todo:
        row = tx.task(todo.pop())
        if row is None or row.state != "ready":
            continue
        operands = row.operands
        results = tx.results_by_name(row.run_id, operands)
        try:
            value = combine([(n, results.get(n)) for n in operands])
        except ReduceError as e:
            events.append(Event(now, "task_failed", row.run_id, row.id, detail=str(e)))
            n = runs.fail_task(tx, row.id, row.name, now, f"reduction failed: {e}", events=events)
            runs.count_done(tx, row.run_id, n, now, events, ended)
            continue
        tx.finish_task(
            row.id, state="succeeded", now=now, exit_code=0, result=value, has_result=True
        )
        events.append(
            Event(now, "task_succeeded", row.run_id, row.id, detail="reduced by the boss")
        )
        for task_id, kind in tx.ready_dependents([row.id]):
            if kind == "reduce":
                todo.append(task_id)
            else:
                readied = True
        runs.count_done(tx, row.run_id, 1, now, events, ended)
    return readied
