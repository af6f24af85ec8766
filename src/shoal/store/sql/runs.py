"""The statements of a run's life: submit, finish and fail tasks, reduce, cancel, retry."""

from __future__ import annotations

from shoal.store.sizes import RUN_SHARDS
from shoal.store.sql.spelling import in_list

__all__ = ["QUOTED_TASK_COLUMNS", "RUN_ROW", "SQL", "TASK_COLUMNS", "TASK_ROW"]

# A whole run (``RunRow``) and a whole task (``TaskRow``), JSON columns as ``*_json``.
RUN_ROW = """id, name, state, created, finished, env AS env_json, setup, bundle, source, final,
       total, (SELECT coalesce(sum(c.unfinished), 0) FROM run_counts c WHERE c.run_id = runs.id)
       AS unfinished, submit_key"""
TASK_ROW = """t.id, t.run_id, t.name, t.state, t.spec AS spec_json, t.priority, t.slots, t.host,
       t.requires AS requires_json, t.retries, t.failures, t.pending, t.n_deps, t.n_dependents,
       t.grp, t.losses, t.ready_at, t.retry_delay, t.speculative, t.key, t.cached, t.source_run,
       t.kind, t.operands AS operands_json, t.n_reducers, t.partial AS partial_json, t.attempts,
       t.has_result, t.result AS result_json, t.outputs AS outputs_json, t.exit_code, t.cause,
       t.worker_id, t.started, t.ended"""

# The columns a submitted task is stored with, in the order bulk inserts send
# them: run_id, then the fields of ``NewTask`` that are stored as they are,
# and last the spec's timeout (a column of its own for the claim).
TASK_COLUMNS = (
    "run_id",
    "name",
    "state",
    "priority",
    "slots",
    "host",
    "retries",
    "retry_delay",
    "speculative",
    "grp",
    "key",
    "pending",
    "n_deps",
    "n_dependents",
    "kind",
    "n_reducers",
    "spec",
    "requires",
    "operands",
    "source_run",
    "exit_code",
    "ended",
    "cached",
    "has_result",
    "result",
    "outputs",
    "timeout",
)
QUOTED_TASK_COLUMNS = ", ".join(f'"{c}"' for c in TASK_COLUMNS)

SQL = {
    # -- submit
    "insert_run": """
INSERT INTO runs (name, submit_key, state, created, env, setup, bundle, source, final, total)
VALUES (:name, :submit_key, 'running', :now, :env, :setup, :bundle, :source, :final, :total)
RETURNING id""",
    # A new run's count of unfinished tasks, spread evenly over its shards.
    "insert_run_counts": f"""
WITH RECURSIVE part(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM part WHERE n < {RUN_SHARDS - 1})
INSERT INTO run_counts (run_id, shard, unfinished)
SELECT :id, n, :total / :parts + CASE WHEN n < :total % :parts THEN 1 ELSE 0 END
FROM part WHERE n < :parts""",
    "run_by_submit_key": "SELECT id FROM runs WHERE submit_key = :key",
    "succeeded_by_key": f"""
SELECT key, run_id, source_run, has_result, result AS result_json, outputs AS outputs_json,
       exit_code
FROM tasks WHERE key {in_list("keys")} AND state = 'succeeded'
  AND NOT EXISTS (
    -- Outputs 'shoal gc' removed: a task that had them cannot be reused.
    SELECT 1 FROM events e
    WHERE e.run_id = coalesce(tasks.source_run, tasks.run_id) AND e.kind = 'outputs_removed'
      AND (e.detail IS NULL OR e.detail = tasks.name))
ORDER BY id""",
    "task_ids": "SELECT name, id FROM tasks WHERE run_id = :run_id",
    "ready_roots": """
UPDATE tasks SET state = 'ready' WHERE run_id = :run_id AND state = 'waiting' AND pending = 0""",
    # Bulk inserts (SQLite; PostgreSQL copies): plain tuples, no per-row Python above them.
    "insert_tasks": f"INSERT INTO tasks ({QUOTED_TASK_COLUMNS}) VALUES ({', '.join('?' * len(TASK_COLUMNS))})",
    "insert_deps": "INSERT INTO deps (task_id, dep_id) VALUES (?, ?)",
    # -- runs
    "run": f"SELECT {RUN_ROW} FROM runs WHERE id = :id",
    "runs_by_id": f"SELECT {RUN_ROW} FROM runs WHERE id {in_list('ids')}",
    "running_runs": "SELECT id FROM runs WHERE state = 'running'",
    "set_run_state": "UPDATE runs SET state = :state, finished = :now WHERE id = :id",
    "reset_unfinished": """
UPDATE run_counts SET unfinished = c.n / c.parts + CASE WHEN shard < c.n % c.parts THEN 1 ELSE 0 END
FROM (SELECT (SELECT count(*) FROM tasks
              WHERE run_id = :id AND state IN ('waiting', 'ready', 'running')) AS n,
             (SELECT count(*) FROM run_counts WHERE run_id = :id) AS parts) AS c
WHERE run_id = :id""",
    "failed_count": """
SELECT count(*) FROM tasks WHERE run_id = :run_id AND state != 'succeeded'""",
    # -- tasks
    "task": f"SELECT {TASK_ROW} FROM tasks t WHERE t.id = :id",
    "finish_task": """
UPDATE tasks SET state = :state, ended = :now, exit_code = :exit_code, cause = :cause,
       has_result = :has_result, result = :result, outputs = :outputs,
       worker_id = coalesce(:worker_id, worker_id)
WHERE id = :id""",
    "retry_task": """
UPDATE tasks SET state = 'ready', failures = :failures, exit_code = :exit_code, cause = :cause,
       ready_at = :ready_at
WHERE id = :id""",
    "set_task_ready": "UPDATE tasks SET state = 'ready', ready_at = NULL WHERE id = :id",
    # Every task that depends on this one, directly or not.
    "fail_downstream": """
WITH RECURSIVE down(task_id) AS (
    SELECT task_id FROM deps WHERE dep_id = :id
    UNION SELECT deps.task_id FROM deps JOIN down ON deps.dep_id = down.task_id)
UPDATE tasks SET state = 'upstream_failed', cause = :cause, ended = :now
WHERE id IN (SELECT task_id FROM down) AND state IN ('waiting', 'ready')
RETURNING id, run_id""",
    "count_loss": "UPDATE tasks SET losses = losses + 1 WHERE id = :id RETURNING losses",
    # -- reductions
    "reducers_of": f"""
SELECT id, run_id, operands AS operands_json FROM tasks
WHERE id IN (SELECT task_id FROM deps WHERE dep_id {in_list("ids")})
  AND kind = 'reduce' AND state = 'waiting'""",
    "ready_reductions": """
SELECT id FROM tasks WHERE run_id = :run_id AND kind = 'reduce' AND state = 'ready'""",
    "set_partial": "UPDATE tasks SET partial = :partial WHERE id = :id",
    # -- cancel and retry
    "cancel_tasks": """
UPDATE tasks SET state = 'cancelled', cause = :cause, ended = :now
WHERE run_id = :run_id AND state IN ('waiting', 'ready', 'running')""",
    "cancel_attempts": """
UPDATE attempts SET state = 'cancelled', cause = 'cancelled', ended = :now
WHERE run_id = :run_id AND state = 'running'""",
    "cancel_task_attempts": """
UPDATE attempts SET state = 'cancelled', cause = 'cancelled', ended = :now
WHERE task_id = :id AND state = 'running'""",
    # What a task's failure or cancellation ended downstream of it: what retrying it runs again.
    "ended_downstream": """
WITH RECURSIVE down(task_id) AS (
    SELECT task_id FROM deps WHERE dep_id = :id
    UNION SELECT deps.task_id FROM deps JOIN down ON deps.dep_id = down.task_id)
SELECT id FROM tasks WHERE id IN (SELECT task_id FROM down) AND state = 'upstream_failed'""",
    "interrupt_attempts": """
UPDATE attempts SET state = 'interrupted', cause = :cause, ended = :now
WHERE run_id = :run_id AND state = 'running'""",
    "failed_tasks": """
SELECT id FROM tasks
WHERE run_id = :run_id AND state IN ('failed', 'upstream_failed', 'cancelled')""",
    "reset_tasks": f"""
UPDATE tasks SET state = 'waiting', failures = 0, cause = NULL, exit_code = NULL, ended = NULL,
       pending = (
           SELECT count(*) FROM deps JOIN tasks dep ON dep.id = deps.dep_id
           WHERE deps.task_id = tasks.id AND dep.state != 'succeeded')
WHERE id {in_list("ids")}""",
    "ready_reset": f"""
UPDATE tasks SET state = 'ready' WHERE id {in_list("ids")} AND pending = 0""",
}
