"""The statements of the read views: what the command line and the dashboard show."""

from __future__ import annotations

from shoal.store.sql.runs import RUN_ROW, TASK_ROW
from shoal.store.sql.spelling import in_list

__all__ = ["ATTEMPT_ROW", "PAGE_ORDERS", "SQL", "WORKER_ROW"]

ATTEMPT_ROW = """a.id, a.task_id, a.run_id, a.number, a.worker_id, a.state, a.exit_code, a.cause,
       a.assigned, a.started, a.ended, a.lease_expires, a.log, w.name AS worker_name"""
WORKER_ROW = """w.id, w.name, w.host, w.slots, w.labels AS labels_json, w.state, w.registered,
       w.last_sync, w.pid, w.python, w.version, w.done, w.failed, w.boss"""
# An event with the names of its task and worker and its attempt's number, for people to read.
EVENT_ROW = """e.id AS id, e.time AS time, e.kind AS kind, e.run_id AS run_id, e.task_id AS task_id,
  e.attempt_id AS attempt_id, e.worker_id AS worker_id, e.detail AS detail,
  t.name AS task_name, a.number AS attempt_number, w.name AS worker_name
FROM events e LEFT JOIN tasks t ON t.id = e.task_id LEFT JOIN attempts a ON a.id = e.attempt_id
  LEFT JOIN workers w ON w.id = e.worker_id"""

# A page of tasks: which match, and in which order (by sort name).
_PAGE_WHERE = f"""t.run_id = :run_id AND (:any_state OR t.state {in_list("states")})
  AND t.name LIKE :pattern ESCAPE '/'"""
PAGE_ORDERS = {
    "id": "t.id",
    "name": "t.name",
    "duration": "t.ended - t.started DESC NULLS LAST, t.id",
    "-duration": "t.ended - t.started ASC NULLS LAST, t.id",
}

SQL = {
    # -- runs
    "latest_run": f"SELECT {RUN_ROW} FROM runs ORDER BY id DESC LIMIT 1",
    "latest_run_named": f"SELECT {RUN_ROW} FROM runs WHERE name = :name ORDER BY id DESC LIMIT 1",
    "list_runs": f"SELECT {RUN_ROW} FROM runs ORDER BY id DESC LIMIT :limit",
    "state_counts": "SELECT state, count(*) FROM tasks WHERE run_id = :run_id GROUP BY state",
    "cached_count": "SELECT count(*) FROM tasks WHERE run_id = :run_id AND cached IS TRUE",
    "partials": """
SELECT name, partial FROM tasks
WHERE run_id = :run_id AND kind = 'reduce' AND state IN ('waiting', 'ready', 'running')
  AND partial IS NOT NULL""",
    # -- tasks
    "task_by_name": f"SELECT {TASK_ROW} FROM tasks t WHERE t.run_id = :run_id AND t.name = :name",
    "list_tasks": f"""
SELECT {TASK_ROW} FROM tasks t
WHERE t.run_id = :run_id AND (:any_state OR t.state {in_list("states")})
ORDER BY t.id""",
    "count_page": f"SELECT count(*) FROM tasks t WHERE {_PAGE_WHERE}",
    **{
        f"page_tasks_by_{sort}": f"""
SELECT {TASK_ROW} FROM tasks t WHERE {_PAGE_WHERE}
ORDER BY {order} LIMIT :limit OFFSET :offset"""
        for sort, order in PAGE_ORDERS.items()
    },
    # The run's ready tasks that some worker may not fit, one row per distinct need.
    "ready_shapes": """
SELECT slots, host, requires AS requires_json, count(*) AS n FROM tasks
WHERE run_id = :run_id AND state = 'ready' AND kind = 'command'
  AND (host IS NOT NULL OR requires IS NOT NULL OR slots > :plain_slots)
GROUP BY slots, host, requires ORDER BY min(id)""",
    "ready_of_shape": """
SELECT id, name FROM tasks
WHERE run_id = :run_id AND state = 'ready' AND kind = 'command' AND slots = :slots
  AND (host = :host OR (host IS NULL AND :no_host))
  AND (requires = :requires OR (requires IS NULL AND :no_requires))
ORDER BY id LIMIT :limit""",
    "group_counts": """
SELECT grp, state, count(*) AS n, min(id) AS first FROM tasks
WHERE run_id = :run_id GROUP BY grp, state""",
    "group_edges": """
SELECT d.grp AS source, t.grp AS target
FROM deps JOIN tasks t ON t.id = deps.task_id JOIN tasks d ON d.id = deps.dep_id
WHERE t.run_id = :run_id GROUP BY d.grp, t.grp""",
    "end_times": """
SELECT ended FROM tasks
WHERE run_id = :run_id AND state IN ('succeeded', 'failed') AND ended IS NOT NULL
  AND cached IS FALSE
ORDER BY ended""",
    # -- attempts
    "list_attempts": f"""
SELECT {ATTEMPT_ROW} FROM attempts a LEFT JOIN workers w ON w.id = a.worker_id
WHERE a.task_id = :task_id ORDER BY a.id""",
    "last_attempts": f"""
SELECT {ATTEMPT_ROW} FROM attempts a LEFT JOIN workers w ON w.id = a.worker_id
WHERE a.id IN (SELECT max(id) FROM attempts WHERE run_id = :run_id GROUP BY task_id)""",
    "attempt_ref": """
SELECT a.id, a.run_id, a.state, t.name AS task_name, t.state AS task_state, a.worker_id
FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.id = :id""",
    "running_attempt_ids": f"""
SELECT id FROM attempts WHERE id {in_list("ids")} AND state = 'running'""",
    # -- workers, events, metrics
    "list_workers": f"""
SELECT {WORKER_ROW}, (
    SELECT count(*) FROM attempts a WHERE a.worker_id = w.id AND a.state = 'running') AS running, (
    SELECT max(a.ended) FROM attempts a WHERE a.worker_id = w.id) AS last_ended
FROM workers w ORDER BY w.id""",
    # What waits for a worker, over every run: the pools' keepers size to it.
    "demand_shapes": """
SELECT slots, host, requires AS requires_json, count(*) AS n FROM tasks
WHERE state = 'ready' AND kind = 'command' AND (ready_at IS NULL OR ready_at <= :now)
GROUP BY slots, host, requires""",
    "recent_durations": """
SELECT ended - started FROM attempts
WHERE state = 'succeeded' AND started IS NOT NULL AND ended IS NOT NULL
ORDER BY id DESC LIMIT 50""",
    "active_workers": """
SELECT id, name, slots, labels AS labels_json FROM workers WHERE state = 'active' ORDER BY id""",
    # Machines asked for whose agent has not registered yet: workers still to come.
    "machines_coming": """
SELECT m.name FROM machines m WHERE m.state IN ('requested', 'starting')
AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.name = m.name AND w.registered >= m.requested)
ORDER BY m.id""",
    "list_events": f"SELECT {EVENT_ROW} ORDER BY e.id DESC LIMIT :limit",
    "list_run_events": f"""
SELECT {EVENT_ROW} WHERE e.run_id = :run_id ORDER BY e.id DESC LIMIT :limit""",
    "task_events": f"SELECT {EVENT_ROW} WHERE e.task_id = :task_id ORDER BY e.id",
    "task_counts": "SELECT state, count(*) FROM tasks GROUP BY state",
    "worker_counts": "SELECT state, count(*) FROM workers GROUP BY state",
    "attempt_counts": "SELECT state, cause, count(*) FROM attempts GROUP BY state, cause",
    # A task's neighbours in its run's graph (the dashboard's task page links them).
    "task_deps": """
SELECT d.name, d.state, coalesce(d.source_run, d.run_id) AS run_id, d.outputs AS outputs_json
FROM deps JOIN tasks d ON d.id = deps.dep_id WHERE deps.task_id = :id ORDER BY d.id""",
    "task_dependents": """
SELECT t.name, t.state FROM deps JOIN tasks t ON t.id = deps.task_id
WHERE deps.dep_id = :id ORDER BY t.id LIMIT :limit""",
}
