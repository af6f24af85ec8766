"""The database's side of ``shoal gc``: read-only queries, one transaction.

:func:`gc_facts` answers what :func:`shoal.datastore.gc.plan` needs to know:
the runs (state, end, bundle), the outputs a task not yet finished reads,
the outputs a run shows as its own from another run's folder (reused tasks),
and the attempts that run now. Nothing here changes anything.
"""

from __future__ import annotations

from sqlalchemy import func, select

from shoal.datastore.gc import RunFacts, StoreFacts
from shoal.store import schema as s
from shoal.store.store import Store

__all__ = ["gc_facts"]

_UNFINISHED = ("waiting", "ready", "running")


def gc_facts(store: Store) -> StoreFacts:
    """What the database says about the files gc may remove (see :class:`StoreFacts`)."""
    runs, tasks, deps, attempts = s.runs, s.tasks, s.deps, s.attempts
    dependent = tasks.alias("dependent")
    holder = tasks.alias("holder")
    with store.read() as tx:
        conn = tx.conn
        run_rows = conn.execute(select(runs.c.id, runs.c.state, runs.c.finished, runs.c.bundle))
        facts_runs = {
            int(r.id): RunFacts(int(r.id), str(r.state), r.finished, r.bundle) for r in run_rows
        }
        needed = conn.execute(
            select(func.coalesce(holder.c.source_run, holder.c.run_id), holder.c.name)
            .distinct()
            .select_from(deps)
            .join(dependent, dependent.c.id == deps.c.task_id)
            .join(holder, holder.c.id == deps.c.dep_id)
            .where(dependent.c.state.in_(_UNFINISHED))
        )
        facts_needed = frozenset((int(run), str(name)) for run, name in needed)
        borrowed = conn.execute(
            select(tasks.c.source_run, tasks.c.name, tasks.c.run_id)
            .distinct()
            .where(tasks.c.source_run.is_not(None))
        )
        facts_borrowed = frozenset((int(h), str(n), int(by)) for h, n, by in borrowed)
        running = conn.execute(select(attempts.c.id).where(attempts.c.state == "running"))
        facts_running = frozenset(int(a) for (a,) in running)
    return StoreFacts(facts_runs, facts_needed, facts_borrowed, facts_running)
