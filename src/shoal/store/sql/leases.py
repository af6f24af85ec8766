"""The statements of the lease sweep: lost workers, expired attempts, a restarted boss."""

from __future__ import annotations

__all__ = ["SQL"]

SQL = {
    "mark_workers_lost": """
UPDATE workers SET state = 'lost' WHERE state = 'active' AND last_sync < :before""",
    # PostgreSQL locks what it returns, skipping what a report is recording.
    "expired_attempts": """
SELECT a.id, a.task_id, a.run_id, a.worker_id, t.state AS task_state, t.name AS task_name,
       w.name AS worker_name, w.last_sync
FROM attempts a JOIN tasks t ON t.id = a.task_id LEFT JOIN workers w ON w.id = a.worker_id
WHERE a.state = 'running' AND a.lease_expires < :now
ORDER BY a.task_id LIMIT 10000""",
    "end_attempt": """
UPDATE attempts SET state = :state, cause = :cause, ended = coalesce(ended, :now)
WHERE id = :id""",
    "extend_leases": "UPDATE attempts SET lease_expires = :until WHERE state = 'running'",
    "end_worker_leases": """
UPDATE attempts SET lease_expires = :until WHERE worker_id = :worker AND state = 'running'""",
}
