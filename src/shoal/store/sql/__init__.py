"""Every statement shoal runs, by name: the only SQL in shoal.

Written once, in SQLite's spelling, by concept: a worker's sync
(:mod:`~shoal.store.sql.sync`), a run's life (:mod:`~shoal.store.sql.runs`),
the lease sweep (:mod:`~shoal.store.sql.leases`), the read views
(:mod:`~shoal.store.sql.reads`), and workers, bosses and sessions
(:mod:`~shoal.store.sql.registry`). :data:`POSTGRES` holds them as psycopg
takes them, with what PostgreSQL does differently: claims skip the rows other
bosses hold, reports lock what they read, runs arrive by ``COPY``.

Every statement goes straight to the database driver, inside SQLAlchemy's
transaction: through SQLAlchemy a statement costs about a hundred
microseconds of Python, straight to the driver a few. The table
definitions and migrations are :mod:`shoal.store.schema`.
"""

from __future__ import annotations

from shoal.store.sql import leases, reads, registry, runs, sync
from shoal.store.sql.runs import TASK_COLUMNS
from shoal.store.sql.spelling import for_psycopg

__all__ = ["POSTGRES", "POSTGRES_ARRAYS", "SQLITE", "TASK_COLUMNS"]


def _merge(*parts: dict[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for part in parts:
        twice = merged.keys() & part.keys()
        if twice:
            raise AssertionError(f"statements named twice: {sorted(twice)}")
        merged.update(part)
    return merged


SQLITE = _merge(sync.SQL, runs.SQL, leases.SQL, reads.SQL, registry.SQL)

POSTGRES = {
    name: for_psycopg(
        sql, {sync.HAS_LABELS: sync.HAS_LABELS_PG, "max(0, min(": "greatest(0, least("}
    )
    for name, sql in SQLITE.items()
}
# A claim skips the tasks other bosses are claiming; a report, and a lease
# sweep, lock what they read (the sweep skipping what a report holds).
POSTGRES["ready_candidates"] += " FOR UPDATE OF t SKIP LOCKED"
POSTGRES["attempts_with_tasks"] += " ORDER BY t.id FOR UPDATE OF a, t"
POSTGRES["expired_attempts"] += " FOR UPDATE OF a, t SKIP LOCKED"
# Finished tasks are taken off a shard of the run's count that no other
# transaction holds. Shards taken all at once, and the run whose count may
# have come to 0, are locked: two transactions that each bring a shard to 0
# read the whole count one after the other, so the second sees the first's.
# The shard this transaction took from before comes first (it holds no second
# lock), then any at random.
POSTGRES["take_unfinished"] = """
UPDATE run_counts SET unfinished = unfinished - %(n)s
WHERE run_id = %(id)s AND unfinished >= %(n)s AND shard = (
    SELECT shard FROM run_counts WHERE run_id = %(id)s AND unfinished >= %(n)s
    ORDER BY shard = %(prefer)s DESC, random() LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING shard, unfinished"""
POSTGRES["lock_run_counts"] += " FOR UPDATE"
POSTGRES["lock_run"] += " FOR UPDATE"
# One statement for a sync's new attempts; each found again by its task.
POSTGRES["insert_attempts"] = """
INSERT INTO attempts (task_id, run_id, number, worker_id, state, assigned, started, lease_expires)
SELECT t, r, n, %(worker_id)s, 'running', %(now)s, %(now)s, %(lease_expires)s
FROM unnest(%(task_id)s::int[], %(run_id)s::int[], %(number)s::int[]) AS u(t, r, n)
RETURNING id, task_id"""
POSTGRES["insert_tasks"] = f"COPY tasks ({runs.QUOTED_TASK_COLUMNS}) FROM STDIN"
POSTGRES["insert_deps"] = "COPY deps (task_id, dep_id) FROM STDIN"
# Wake-ups for the other bosses (on commit), and the planner's view of a grown table.
POSTGRES["notify_work"] = "SELECT pg_notify(%(channel)s, %(origin)s)"
POSTGRES["analyze_tasks"] = "ANALYZE tasks"

# The statements run once per row of a batch, as one statement over arrays on
# PostgreSQL: one array per column, in the order of the rows' tuples.
POSTGRES_ARRAYS = {
    "finish_attempt": """
UPDATE attempts SET state = u.state, cause = u.cause, exit_code = u.exit_code,
       started = u.started, ended = u.ended, log = u.log
FROM unnest(%s::text[], %s::text[], %s::int[], %s::float8[], %s::float8[], %s::text[], %s::int[])
     AS u(state, cause, exit_code, started, ended, log, id)
WHERE attempts.id = u.id""",
    "succeed_task": """
UPDATE tasks SET state = 'succeeded', ended = u.ended, exit_code = u.exit_code, cause = NULL,
       has_result = u.has_result, result = u.result, outputs = u.outputs, worker_id = u.worker_id
FROM unnest(%s::float8[], %s::int[], %s::bool[], %s::text[], %s::text[], %s::int[], %s::int[])
     AS u(ended, exit_code, has_result, result, outputs, worker_id, id)
WHERE tasks.id = u.id""",
    "start_task": """
UPDATE tasks SET state = 'running', attempts = attempts + 1, worker_id = u.worker_id,
       started = coalesce(started, u.now)
FROM unnest(%s::int[], %s::float8[], %s::int[]) AS u(worker_id, now, id)
WHERE tasks.id = u.id""",
    "insert_event": """
INSERT INTO events (time, kind, run_id, task_id, attempt_id, worker_id, detail)
SELECT * FROM unnest(%s::float8[], %s::text[], %s::int[], %s::int[], %s::int[], %s::int[],
                     %s::text[])""",
}
