"""Submit: a whole run, its DAG, in one transaction.

A task with no dependency is ready at once; the others wait for theirs. With
``reuse``, a task whose definition (:mod:`~shoal.scheduler.keys`) succeeded
before in this database, and whose dependencies are reused too, is stored
as succeeded with that success's result and outputs (``cached``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.scheduler import reductions, runs
from shoal.scheduler.keys import definition_keys, topological
from shoal.spec import RunSpec, TaskSpec
from shoal.store.rows import CachedTask, Event, NewTask

if TYPE_CHECKING:
    from shoal.scheduler.core import Scheduler

__all__ = ["submit"]

_CHUNK = 10_000  # tasks stored per statement when a run is submitted


def submit(s: Scheduler, spec: RunSpec, *, bundle: str | None, reuse: bool, key: str | None) -> int:
    """Store a whole run; its id (the first run made with ``key``, if one was)."""
    if key is not None:
        with s.store.read() as tx:
            made = tx.run_by_submit_key(key)
        if made is not None:
            return made
    now = s.clock()
    keys = definition_keys(spec, bundle)
    dependents: dict[str, int] = {}
    reducers: dict[str, int] = {}
    for t in spec.tasks:
        for d in t.after:
            dependents[d] = dependents.get(d, 0) + 1
        for o in t.reduce:
            reducers[o] = reducers.get(o, 0) + 1
    with s.store.transaction() as tx:
        earlier = tx.succeeded_by_key(list(keys.values())) if reuse else {}
        cached: dict[str, CachedTask] = {}
        for t in topological(spec):
            prev = earlier.get(keys[t.name])
            if prev is not None and all(d in cached for d in t.after):
                cached[t.name] = prev
        run_id = tx.insert_run(
            submit_key=key,
            name=spec.name,
            env=dict(spec.env),
            setup=spec.setup,
            bundle=bundle,
            source=spec.source,
            total=len(spec.tasks),
            now=now,
            final=spec.final,
        )
        # In chunks: the rows of a 100,000-task run never all exist at once.
        for start in range(0, len(spec.tasks), _CHUNK):
            rows = [
                _new_task(t, keys[t.name], cached, dependents, reducers, now)
                for t in spec.tasks[start : start + _CHUNK]
            ]
            tx.insert_tasks(run_id, rows)
        if any(t.after for t in spec.tasks):
            ids = tx.task_ids(run_id)
            tx.insert_deps([(ids[t.name], ids[d]) for t in spec.tasks for d in t.after])
        if tx.ready_roots(run_id):
            tx.notify_work(s.origin)
        events = [Event(now, "run_submitted", run_id, detail=spec.name)]
        if cached:
            events.append(Event(now, "tasks_cached", run_id, detail=f"{len(cached)} tasks"))
            runs.count_done(tx, run_id, len(cached), now, events)
        ready = tx.ready_reductions(run_id)
        if ready:
            reductions.reduce(tx, ready, now, events, [])
        tx.add_events(events)
    if len(spec.tasks) >= _CHUNK:
        s.store.refresh_statistics()
    return run_id


def _new_task(
    t: TaskSpec,
    key: str,
    cached: dict[str, CachedTask],
    dependents: dict[str, int],
    reducers: dict[str, int],
    now: float,
) -> NewTask:
    """A task as stored: waiting for its dependencies, or succeeded already (reused)."""
    # The task's own tuples, not copies: a large run's tasks wait in memory
    # to be stored, and the fewer objects, the less the garbage collector walks them.
    spec: dict[str, Any] = {
        "run": t.run,
        "download": t.download,
        "upload": t.upload,
        "cleanup": t.cleanup,
        "inputs": t.inputs,
        "outputs": t.outputs,
        "env": dict(t.env),
        "timeout": t.timeout,
    }
    # Read back by `shoal tasks --json`, `results --table` and the dashboard.
    if t.after:
        spec["after"] = t.after
    if t.values:
        spec["matrix"] = dict(t.values)
    task = NewTask(
        t.name,
        "waiting",
        t.priority,
        t.slots,
        t.host,
        t.retries,
        t.retry_delay,
        t.speculative,
        t.group or t.name,
        key,
        sum(1 for d in t.after if d not in cached),  # pending: dependencies to wait for
        len(t.after),
        dependents.get(t.name, 0),
        "reduce" if t.reduce and not t.run else "command",
        reducers.get(t.name, 0),
        spec,
        dict(t.requires) if t.requires else None,
        list(t.reduce) if t.reduce else None,
    )
    prev = cached.get(t.name)
    if prev is None:
        return task
    return task._replace(
        state="succeeded",
        reuse=prev,
        source_run=prev.source_run or prev.run_id,
        exit_code=prev.exit_code,
        ended=now,
    )
