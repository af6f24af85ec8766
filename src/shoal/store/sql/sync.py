"""The statements of a worker's sync: its reports, its leases, its claim.

A sync runs a dozen of these and every worker syncs many times a second, so
they are the ones whose cost shows. Written in SQLite's spelling; see
:mod:`shoal.store.sql` for PostgreSQL's.
"""

from __future__ import annotations

from shoal.store.sql.spelling import in_list, not_in_list

__all__ = ["HAS_LABELS", "HAS_LABELS_PG", "READY_TASK", "SQL"]

# A task as a claim or a backup reads it (``ReadyTask``), from ``tasks`` as t.
READY_TASK = """t.id, t.run_id, t.name, t.spec AS spec_json, t.slots, t.requires AS requires_json,
       t.attempts, t.n_deps, t.operands AS operands_json, t.host, t.grp"""

# A task's required labels are all among the worker's (a JSON object each),
# equal as JSON values: true is not 1, 1 is 1.0. Filtered here, not after the
# LIMIT, so that tasks no worker can take never hide those it can. (A worker
# without labels skips the JSON: it passes over such tasks at the cost of a
# row each.)
HAS_LABELS = """:labels <> '{}' AND NOT EXISTS (
    SELECT 1 FROM json_each(t.requires) AS r WHERE NOT EXISTS (
        SELECT 1 FROM json_each(:labels) AS l
        WHERE l.key = r.key AND l.atom IS r.atom
          AND (l.type = r.type OR (l.type IN ('integer', 'real') AND r.type IN ('integer', 'real')))))"""
# PostgreSQL's spelling: jsonb containment (labels are flat, so it is the same test).
HAS_LABELS_PG = "t.requires::jsonb <@ :labels::jsonb"

SQL = {
    "touch_worker": """
UPDATE workers SET last_sync = :now, done = done + :done, failed = failed + :failed,
       state = 'active', boss = :boss
WHERE id = :id AND state != 'stopped'
RETURNING id, name, slots, labels AS labels_json""",
    "attempts_with_tasks": f"""
SELECT a.id, a.worker_id, a.state, a.task_id, a.run_id, t.name AS task_name,
       t.state AS task_state, t.retries, t.failures, t.n_dependents,
       t.attempts AS task_attempts, t.retry_delay, t.n_reducers
FROM attempts a JOIN tasks t ON t.id = a.task_id
WHERE a.id {in_list("ids")}""",
    # Run once per row of a batch, these take ``?``: each row is a tuple (its
    # order is that of the tuple the store passes), not a dict made for it.
    "finish_attempt": """
UPDATE attempts SET state = ?, cause = ?, exit_code = ?, started = ?, ended = ?, log = ?
WHERE id = ?""",
    "succeed_task": """
UPDATE tasks SET state = 'succeeded', ended = ?, exit_code = ?, cause = NULL, has_result = ?,
       result = ?, outputs = ?, worker_id = ?
WHERE id = ?""",
    "supersede_others": """
UPDATE attempts SET state = 'superseded', cause = 'superseded', ended = :now
WHERE task_id = :task_id AND state = 'running' AND id != :attempt_id""",
    "others_running": """
SELECT 1 FROM attempts WHERE task_id = :task_id AND state = 'running' AND id != :attempt_id
LIMIT 1""",
    "decrement_pending": f"""
UPDATE tasks SET pending = pending - (
    SELECT count(*) FROM deps WHERE deps.task_id = tasks.id AND deps.dep_id {in_list("ids")})
WHERE id IN (SELECT task_id FROM deps WHERE dep_id {in_list("ids")})""",
    "ready_dependents": f"""
UPDATE tasks SET state = 'ready'
WHERE id IN (SELECT task_id FROM deps WHERE dep_id {in_list("ids")}) AND pending = 0 AND state = 'waiting'
RETURNING id, kind""",
    # ``n`` finished tasks off one shard of the run's count that has as many;
    # its count now. (SQLite has one writer at a time, and a run one shard;
    # see :mod:`shoal.store.sql` for PostgreSQL's choice among many.)
    "take_unfinished": """
UPDATE run_counts SET unfinished = unfinished - :n
WHERE run_id = :id AND unfinished >= :n AND shard = (
    SELECT shard FROM run_counts WHERE run_id = :id AND unfinished >= :n LIMIT 1)
RETURNING shard, unfinished""",
    # When no shard has as many: off all shards, in their order (locked first, on PostgreSQL).
    "lock_run_counts": "SELECT shard FROM run_counts WHERE run_id = :id ORDER BY shard",
    "spread_unfinished": """
UPDATE run_counts SET unfinished = max(0, min(run_counts.unfinished, c.upto - :n))
FROM (SELECT shard, sum(unfinished) OVER (ORDER BY shard) AS upto
      FROM run_counts WHERE run_id = :id) AS c
WHERE run_counts.run_id = :id AND run_counts.shard = c.shard""",
    # A shard came to 0: the run's whole count, read after its row is locked, is exact.
    "lock_run": "SELECT id FROM runs WHERE id = :id",
    "unfinished_total": """
SELECT coalesce(sum(unfinished), 0) FROM run_counts WHERE run_id = :id""",
    "renew": f"""
UPDATE attempts SET lease_expires = :until
WHERE worker_id = :worker AND state = 'running' AND id {in_list("ids")}""",
    "reclaim": f"""
UPDATE attempts SET lease_expires = 0
WHERE worker_id = :worker AND state = 'running' AND assigned < :now AND id {not_in_list("ids")}""",
    "not_running": f"SELECT id FROM attempts WHERE id {in_list('ids')} AND state != 'running'",
    # ``max_seconds`` cast once: PostgreSQL cannot tell a NULL parameter's type.
    "ready_candidates": f"""
SELECT {READY_TASK}, NULL AS assigned FROM tasks t
WHERE t.state = 'ready' AND t.kind = 'command' AND t.slots <= :slots
  AND (t.host IS NULL OR t.host = :name) AND (t.ready_at IS NULL OR t.ready_at <= :now)
  AND (t.requires IS NULL OR {HAS_LABELS})
  AND (CAST(:max_seconds AS FLOAT) IS NULL OR t.timeout IS NULL OR t.timeout <= :max_seconds)
ORDER BY t.priority DESC, t.id LIMIT :limit""",
    "lone_running_attempts": f"""
SELECT {READY_TASK}, a.assigned FROM tasks t JOIN attempts a ON a.task_id = t.id
WHERE t.state = 'running' AND t.speculative IS TRUE AND a.state = 'running'
  AND a.worker_id != :worker AND a.assigned < :before
  AND (SELECT count(*) FROM attempts a2 WHERE a2.task_id = t.id AND a2.state = 'running') = 1
ORDER BY a.assigned LIMIT 20""",
    "group_durations": """
SELECT a.ended - a.started AS took FROM attempts a JOIN tasks t ON t.id = a.task_id
WHERE t.run_id = :run_id AND t.grp = :grp AND a.state = 'succeeded' LIMIT 1000""",
    "start_task": """
UPDATE tasks SET state = 'running', attempts = attempts + 1, worker_id = ?,
       started = coalesce(started, ?)
WHERE id = ?""",
    "insert_attempt": """
INSERT INTO attempts (task_id, run_id, number, worker_id, state, assigned, started, lease_expires)
VALUES (?, ?, ?, ?, 'running', ?, ?, ?)
RETURNING id""",
    "dep_outputs": f"""
SELECT deps.task_id, d.name, coalesce(d.source_run, d.run_id) AS run_id, d.outputs AS outputs_json
FROM deps JOIN tasks d ON d.id = deps.dep_id
WHERE deps.task_id {in_list("ids")} ORDER BY deps.task_id, d.id""",
    "any_ready": "SELECT 1 FROM tasks WHERE state = 'ready' LIMIT 1",
    # In the order of the fields of ``Event``.
    "insert_event": """
INSERT INTO events (time, kind, run_id, task_id, attempt_id, worker_id, detail)
VALUES (?, ?, ?, ?, ?, ?, ?)""",
    "results_by_name": f"""
SELECT name, has_result, result FROM tasks
WHERE run_id = :run_id AND state = 'succeeded' AND name {in_list("names")}""",
}
