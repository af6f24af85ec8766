"""The statements of who is there: workers, bosses, dashboard sessions, the schema's version."""

from __future__ import annotations

__all__ = ["SQL"]

SQL = {
    "schema_version": "SELECT value FROM meta WHERE key = 'schema_version'",
    # -- workers
    "insert_worker": """
INSERT INTO workers (name, host, slots, labels, state, registered, last_sync, pid, python,
                     version)
VALUES (:name, :host, :slots, :labels, 'active', :now, :now, :pid, :python, :version)
RETURNING id""",
    "set_worker_state": "UPDATE workers SET state = :state WHERE id = :id",
    # -- bosses
    "insert_boss": """
INSERT INTO bosses (url, host, pid, state, started, last_seen, housekeeper)
VALUES (:url, :host, :pid, 'serving', :now, :now, FALSE)
RETURNING id""",
    "touch_boss": """
UPDATE bosses SET last_seen = :now, housekeeper = :housekeeper, state = 'serving'
WHERE id = :id""",
    "stop_boss": """
UPDATE bosses SET last_seen = :now, housekeeper = FALSE, state = 'stopped' WHERE id = :id""",
    "others_serving": """
SELECT id FROM bosses WHERE id != :id AND state = 'serving' AND last_seen > :after LIMIT 1""",
    "list_bosses": """
SELECT id, url, host, pid, state, started, last_seen, housekeeper FROM bosses
WHERE state = 'serving' OR last_seen > :after ORDER BY id""",
    # -- dashboard sessions
    "delete_ended_sessions": "DELETE FROM sessions WHERE expires <= :now",
    "insert_session": """
INSERT INTO sessions (id, csrf, created, expires, kind)
VALUES (:id, :csrf, :now, :expires, :kind)""",
    "session": """
SELECT id, csrf, created, expires, kind FROM sessions WHERE id = :id AND expires > :now""",
    "delete_session": "DELETE FROM sessions WHERE id = :id",
}
