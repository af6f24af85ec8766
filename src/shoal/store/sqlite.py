"""SQLite: its statements' spelling, lists as JSON arrays, a run's tasks in one executemany."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shoal.store.rows import NewTask
from shoal.store.sql import SQLITE
from shoal.store.tx import Tx

__all__ = ["SqliteTx"]


class SqliteTx(Tx):
    """A transaction on SQLite."""

    SQL = SQLITE

    def array(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))  # read by json_each

    def insert_tasks(self, run_id: int, tasks: list[NewTask]) -> None:
        # A 100,000-task run: one executemany of plain tuples.
        if tasks:
            self.raw.executemany(
                self.SQL["insert_tasks"], [self.task_values(run_id, t) for t in tasks]
            )

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            self.raw.executemany(self.SQL["insert_deps"], pairs)
