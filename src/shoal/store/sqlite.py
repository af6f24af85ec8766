"""SQLite: the sync statements in their own spelling, and bulk inserts of a run's tasks."""

from __future__ import annotations

import json
from typing import Any

from shoal.store.statements import SQLITE
from shoal.store.store import Tx

__all__ = ["SqliteTx"]


class SqliteTx(Tx):
    """A transaction on SQLite."""

    SQL = SQLITE

    def ids(self, ids: list[int]) -> Any:
        return json.dumps(ids)  # read by json_each

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
