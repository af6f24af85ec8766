"""The fast path for the queries a sync makes, straight to the database driver.

A sync runs a dozen statements and every worker syncs many times a second.
Through SQLAlchemy each statement costs about a hundred microseconds of
Python; sent straight to the driver, inside the same transaction, a few.
Lists of ids travel as one parameter (a JSON array that ``json_each``
reads on SQLite, an array for ``= ANY`` on PostgreSQL), so no statement is
rendered anew for a list of another length.

The statements are written once, for SQLite's driver; :func:`for_psycopg`
spells them for PostgreSQL's. Each method answers exactly like the one it
overrides in :class:`~shoal.store.store.Tx`; the store contract tests run
both databases.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from shoal.store.store import Tx

__all__ = ["RawTx", "SqliteTx", "for_psycopg"]

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
_READY_CANDIDATES = """
SELECT id, run_id, name, spec, slots, requires, attempts, n_deps, operands FROM tasks
WHERE state = 'ready' AND kind = 'command' AND slots <= :slots AND (host IS NULL OR host = :name)
  AND (ready_at IS NULL OR ready_at <= :now)
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
_EVENT_KEYS = ("time", "kind", "run_id", "task_id", "attempt_id", "worker_id", "detail")

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
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)


_shapes: dict[tuple[str, ...], Any] = {}


def _named(cur: Any) -> list[Any]:
    """The cursor's rows as named tuples (attribute access, like SQLAlchemy rows)."""
    names = tuple(d[0] for d in cur.description)
    shape: Any = _shapes.get(names)
    if shape is None:
        shape = _shapes[names] = namedtuple("Row", names)
    return [shape._make(r) for r in cur.fetchall()]


class RawTx(Tx):
    """A transaction whose sync queries go straight to the driver, inside SQLAlchemy's transaction."""

    SQL: dict[str, str] = SQLITE

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.raw: Any = conn.connection.driver_connection

    def ids(self, ids: list[int]) -> Any:
        """A list of ids as one parameter."""
        return json.dumps(ids)

    def _run(self, name: str, params: Any = ()) -> Any:
        return self.raw.execute(self.SQL[name], params)

    def _many(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.raw.cursor().executemany(self.SQL[name], rows)

    def touch_worker(
        self, worker_id: int, now: float, done: int, failed: int, boss: int | None = None
    ) -> Any:
        cur = self._run(
            "touch_worker",
            {"id": worker_id, "now": now, "done": done, "failed": failed, "boss": boss},
        )
        rows = _named(cur)
        return rows[0] if rows else None

    def attempts_with_tasks(self, attempt_ids: list[int]) -> dict[int, Any]:
        cur = self._run("attempts_with_tasks", {"ids": self.ids(attempt_ids)})
        return {int(r.id): r for r in _named(cur)}

    def finish_attempts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._many("finish_attempt", rows)

    def succeed_tasks(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._many("succeed_task", rows)

    def ready_dependents(self, task_ids: list[int]) -> list[tuple[int, str]]:
        if not task_ids:
            return []
        ids = self.ids(task_ids)
        self._run("decrement_pending", {"ids": ids})
        return [(int(r[0]), str(r[1])) for r in self._run("ready_dependents", {"ids": ids})]

    def count_unfinished(self, run_id: int, delta: int) -> int:
        return int(self._run("count_unfinished", {"id": run_id, "delta": delta}).fetchone()[0])

    def renew_leases(self, worker_id: int, attempt_ids: list[int], until: float) -> None:
        if attempt_ids:
            self._run("renew", {"worker": worker_id, "ids": self.ids(attempt_ids), "until": until})

    def reclaim_orphans(self, worker_id: int, known: list[int], now: float) -> int:
        cur = self._run("reclaim", {"worker": worker_id, "ids": self.ids(known), "now": now})
        return int(cur.rowcount)

    def not_running(self, attempt_ids: list[int]) -> list[int]:
        if not attempt_ids:
            return []
        return [int(r[0]) for r in self._run("not_running", {"ids": self.ids(attempt_ids)})]

    def ready_candidates(
        self, worker_name: str, max_slots: int, limit: int, now: float
    ) -> Sequence[Any]:
        params = {"slots": max_slots, "name": worker_name, "limit": limit, "now": now}
        return _named(self._run("ready_candidates", params))

    def start_tasks(self, task_ids: list[int], worker_id: int, now: float) -> None:
        self._many(
            "start_task", [{"b_id": t, "b_worker": worker_id, "b_now": now} for t in task_ids]
        )

    def insert_attempts(self, rows: list[dict[str, Any]]) -> list[int]:
        return [int(self._run("insert_attempt", r).fetchone()[0]) for r in rows]

    def dep_outputs(self, task_ids: list[int]) -> Sequence[Any]:
        return _named(self._run("dep_outputs", {"ids": self.ids(task_ids)}))

    def any_ready(self) -> bool:
        return self._run("any_ready").fetchone() is not None

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._many("insert_event", [{k: r.get(k) for k in _EVENT_KEYS} for r in rows])


class SqliteTx(RawTx):
    """A transaction on SQLite."""

    def insert_tasks(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        # A 100,000-task run: one executemany of plain tuples, no per-row Python above it.
        if rows:
            columns = [*rows[0], "run_id"]
            sql = (
                f"INSERT INTO tasks ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})"
            )
            self.raw.executemany(sql, [(*r.values(), run_id) for r in rows])

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            self.raw.executemany("INSERT INTO deps (task_id, dep_id) VALUES (?, ?)", pairs)
