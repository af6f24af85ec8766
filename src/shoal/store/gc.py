"""The database's side of ``shoal gc``: read-only queries, one transaction.

:func:`gc_facts` answers what :func:`shoal.datastore.gc.plan` needs to know:
the runs (state, end, bundle), the outputs a task not yet finished reads,
the outputs a run shows as its own from another run's folder (reused tasks),
and the attempts that run now. Nothing here changes anything.
"""

from __future__ import annotations

from shoal.datastore.gc import RunFacts, StoreFacts
from shoal.store.store import Store

__all__ = ["gc_facts"]


def gc_facts(store: Store) -> StoreFacts:
    """What the database says about the files gc may remove (see :class:`StoreFacts`)."""
    with store.read() as tx:
        facts_runs = {
            int(r.id): RunFacts(int(r.id), str(r.state), r.finished, r.bundle)
            for r in tx.records("SELECT id, state, finished, bundle FROM runs")
        }
        needed = tx.records(
            """
SELECT DISTINCT coalesce(holder.source_run, holder.run_id) AS run_id, holder.name
FROM deps
JOIN tasks dependent ON dependent.id = deps.task_id
JOIN tasks holder ON holder.id = deps.dep_id
WHERE dependent.state IN ('waiting', 'ready', 'running')"""
        )
        facts_needed = frozenset((int(run), str(name)) for run, name in needed)
        borrowed = tx.records(
            "SELECT DISTINCT source_run, name, run_id FROM tasks WHERE source_run IS NOT NULL"
        )
        facts_borrowed = frozenset((int(h), str(n), int(by)) for h, n, by in borrowed)
        running = tx.records("SELECT id FROM attempts WHERE state = 'running'")
        facts_running = frozenset(int(a) for (a,) in running)
    return StoreFacts(facts_runs, facts_needed, facts_borrowed, facts_running)
