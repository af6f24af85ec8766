"""The statements a worker's sync runs, sent straight to the database driver.

A sync runs a dozen statements and every worker syncs many times a second.
Through SQLAlchemy each statement costs about a hundred microseconds of
Python; sent straight to the driver, inside SQLAlchemy's transaction, a few.
Lists of ids travel as one parameter (a JSON array that ``json_each`` reads
on SQLite, an array for ``= ANY`` on PostgreSQL), so no statement is
rendered anew for a list of another length.

They are written once, in SQLite's spelling (:data:`SQLITE`);
:func:`for_psycopg` gives PostgreSQL's. :class:`~shoal.store.store.Tx` runs
them; the store contract tests run both databases.
"""

from __future__ import annotations

import re
from collections import namedtuple
from typing import Any

__all__ = ["EVENT_KEYS", "SQLITE", "for_psycopg", "named_rows"]

_IDS = "(SELECT value FROM json_each(:ids))"

_TOUCH_WORKER = """
UPDATE workers SET last_sync = :now, done = done + :done, failed = failed + :failed,
       state = 'active', boss = :boss
WHERE id = :id AND state != 'stopped'
RETURNING id, name, slots, labels
"""
_ATTEMPTS_WITH_TASKS = f"""
SELECT a.id, a.worker_id, a.state, a.task_id, a.run_id, t.name AS task_name,
       t.state AS task_state, t.retries, t.failures, t.n_dependents,
       t.attempts AS task_attempts, t.retry_delay, t.n_reducers
FROM attempts a JOIN tasks t ON t.id = a.task_id
WHERE a.id IN {_IDS}
"""
_FINISH_ATTEMPT = """
UPDATE attempts SET state = :b_state, exit_code = :b_exit_code, cause = :b_cause,
       started = :b_started, ended = :b_ended, log = :b_log
WHERE id = :b_id
"""
_SUCCEED_TASK = """
UPDATE tasks SET state = 'succeeded', ended = :b_now, exit_code = :b_exit_code, cause = NULL,
       has_result = :b_has_result, result = :b_result, outputs = :b_outputs, worker_id = :b_worker
WHERE id = :b_id
"""
_DECREMENT_PENDING = f"""
UPDATE tasks SET pending = pending - (
    SELECT count(*) FROM deps WHERE deps.task_id = tasks.id AND deps.dep_id IN {_IDS})
WHERE id IN (SELECT task_id FROM deps WHERE dep_id IN {_IDS})
"""
_READY_DEPENDENTS = f"""
UPDATE tasks SET state = 'ready'
WHERE id IN (SELECT task_id FROM deps WHERE dep_id IN {_IDS}) AND pending = 0 AND state = 'waiting'
RETURNING id, kind
"""
_COUNT_UNFINISHED = (
    "UPDATE runs SET unfinished = unfinished + :delta WHERE id = :id RETURNING unfinished"
)
_RENEW = f"""
UPDATE attempts SET lease_expires = :until
WHERE worker_id = :worker AND state = 'running' AND id IN {_IDS}
"""
_RECLAIM = f"""
UPDATE attempts SET lease_expires = 0
WHERE worker_id = :worker AND state = 'running' AND assigned < :now AND id NOT IN {_IDS}
"""
_NOT_RUNNING = f"SELECT id FROM attempts WHERE id IN {_IDS} AND state != 'running'"
# A task's required labels are all among the worker's (a JSON object each),
# equal as JSON values: true is not 1, 1 is 1.0. Filtered here, not after the
# LIMIT, so that tasks no worker can take never hide those it can. (A worker
# without labels skips the JSON: it passes over such tasks at the cost of a
# row each.)
_HAS_LABELS = """:labels <> '{}' AND NOT EXISTS (
    SELECT 1 FROM json_each(tasks.requires) AS r WHERE NOT EXISTS (
        SELECT 1 FROM json_each(:labels) AS l
        WHERE l.key = r.key AND l.atom IS r.atom
          AND (l.type = r.type OR (l.type IN ('integer', 'real') AND r.type IN ('integer', 'real')))))"""
# PostgreSQL's spelling: jsonb containment (labels are flat, so it is the same test).
_HAS_LABELS_PG = "requires::jsonb <@ :labels::jsonb"
_READY_CANDIDATES = f"""
SELECT id, run_id, name, spec, slots, requires, attempts, n_deps, operands FROM tasks
WHERE state = 'ready' AND kind = 'command' AND slots <= :slots AND (host IS NULL OR host = :name)
  AND (ready_at IS NULL OR ready_at <= :now) AND (requires IS NULL OR {_HAS_LABELS})
ORDER BY priority DESC, id LIMIT :limit
"""
_START_TASK = """
UPDATE tasks SET state = 'running', attempts = attempts + 1, worker_id = :b_worker,
       started = coalesce(started, :b_now)
WHERE id = :b_id
"""
_INSERT_ATTEMPT = """
INSERT INTO attempts (task_id, run_id, number, worker_id, state, assigned, started, lease_expires)
VALUES (:task_id, :run_id, :number, :worker_id, :state, :assigned, :started, :lease_expires)
RETURNING id
"""
_DEP_OUTPUTS = f"""
SELECT deps.task_id, d.name, coalesce(d.source_run, d.run_id) AS run_id, d.outputs FROM deps JOIN tasks d ON d.id = deps.dep_id
WHERE deps.task_id IN {_IDS} ORDER BY deps.task_id, d.id
"""
_ANY_READY = "SELECT 1 FROM tasks WHERE state = 'ready' LIMIT 1"
_INSERT_EVENT = """
INSERT INTO events (time, kind, run_id, task_id, attempt_id, worker_id, detail)
VALUES (:time, :kind, :run_id, :task_id, :attempt_id, :worker_id, :detail)
"""
EVENT_KEYS = ("time", "kind", "run_id", "task_id", "attempt_id", "worker_id", "detail")

# Every statement of the fast path, by the method that runs it.
SQLITE = {
    "touch_worker": _TOUCH_WORKER,
    "attempts_with_tasks": _ATTEMPTS_WITH_TASKS,
    "finish_attempt": _FINISH_ATTEMPT,
    "succeed_task": _SUCCEED_TASK,
    "decrement_pending": _DECREMENT_PENDING,
    "ready_dependents": _READY_DEPENDENTS,
    "count_unfinished": _COUNT_UNFINISHED,
    "renew": _RENEW,
    "reclaim": _RECLAIM,
    "not_running": _NOT_RUNNING,
    "ready_candidates": _READY_CANDIDATES,
    "start_task": _START_TASK,
    "insert_attempt": _INSERT_ATTEMPT,
    "dep_outputs": _DEP_OUTPUTS,
    "any_ready": _ANY_READY,
    "insert_event": _INSERT_EVENT,
}


def for_psycopg(sql: str) -> str:
    """A statement of :data:`SQLITE` as psycopg takes it on PostgreSQL."""
    sql = sql.replace(f"NOT IN {_IDS}", "<> ALL(:ids)").replace(f"IN {_IDS}", "= ANY(:ids)")
    sql = sql.replace(_HAS_LABELS, _HAS_LABELS_PG)
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)


_shapes: dict[tuple[str, ...], Any] = {}


def named_rows(cur: Any) -> list[Any]:
    """The cursor's rows as named tuples (attribute access, like SQLAlchemy rows)."""
    names = tuple(d[0] for d in cur.description)
    shape: Any = _shapes.get(names)
    if shape is None:
        shape = _shapes[names] = namedtuple("Row", names)
    return [shape._make(r) for r in cur.fetchall()]
