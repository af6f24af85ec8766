"""What the read views ask of a transaction, and the rows of bosses and dashboard sessions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoal.store.execute import Statements
from shoal.store.rows import (
    ActiveWorker,
    AttemptRef,
    AttemptRow,
    BossRow,
    EventRow,
    GroupCount,
    GroupEdge,
    LinkedTask,
    NamedState,
    NamedTask,
    ReadyShape,
    RunRow,
    SessionRow,
    TaskRow,
    WorkerRow,
    decode,
)
from shoal.store.sql.reads import PAGE_ORDERS

__all__ = ["Reads"]

_ALL = 2**62  # a LIMIT that limits nothing


def _like_pattern(search: str | None) -> str:
    """A LIKE pattern for names containing ``search`` (escaped with ``/``)."""
    if not search:
        return "%"
    escaped = search.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


class Reads(Statements):
    """The queries of the read views (none changes anything), and of bosses and sessions."""

    def schema_version(self) -> int:
        return int(self._value("schema_version"))

    def latest_run(self, name: str | None = None) -> RunRow | None:
        if name is None:
            return self._row("latest_run", RunRow)
        return self._row("latest_run_named", RunRow, {"name": name})

    def list_runs(self, limit: int = 100) -> list[RunRow]:
        return self._rows("list_runs", RunRow, {"limit": limit})

    def state_counts(self, run_id: int) -> dict[str, int]:
        rows = self._run("state_counts", {"run_id": run_id}).fetchall()
        return {str(state): int(n) for state, n in rows}

    def cached_count(self, run_id: int) -> int:
        return int(self._value("cached_count", {"run_id": run_id}))

    def partials(self, run_id: int) -> dict[str, Any]:
        """Unfinished reductions' values so far, by task name."""
        rows = self._run("partials", {"run_id": run_id}).fetchall()
        return {str(name): decode(partial) for name, partial in rows}

    def task_by_name(self, run_id: int, name: str) -> TaskRow | None:
        return self._row("task_by_name", TaskRow, {"run_id": run_id, "name": name})

    def list_tasks(self, run_id: int, states: Sequence[str] | None = None) -> list[TaskRow]:
        params = {"run_id": run_id, "any_state": not states, "states": self.array(states or [])}
        return self._rows("list_tasks", TaskRow, params)

    def page_tasks(
        self,
        run_id: int,
        *,
        states: Sequence[str] | None,
        search: str | None,
        sort: str,
        limit: int,
        offset: int,
    ) -> tuple[list[TaskRow], int]:
        """A page of the run's tasks, filtered, searched and sorted; and how many match."""
        params = {
            "run_id": run_id,
            "any_state": not states,
            "states": self.array(states or []),
            "pattern": _like_pattern(search),
        }
        total = int(self._value("count_page", params))
        order = sort if sort in PAGE_ORDERS else "id"
        page = {**params, "limit": limit, "offset": offset}
        return self._rows(f"page_tasks_by_{order}", TaskRow, page), total

    def ready_shapes(self, run_id: int, plain_slots: int) -> list[ReadyShape]:
        """The run's ready tasks that some worker may not fit, by (slots, host, requires).

        Those pinned to a host, needing labels or more than ``plain_slots``:
        one row per distinct need, with how many tasks have it.
        """
        params = {"run_id": run_id, "plain_slots": plain_slots}
        return self._rows("ready_shapes", ReadyShape, params)

    def ready_of_shape(
        self,
        run_id: int,
        slots: int,
        host: str | None,
        requires_json: str | None,
        limit: int | None,
    ) -> list[NamedTask]:
        """The run's ready tasks with exactly these needs (ids and names, in order)."""
        params = {
            "run_id": run_id,
            "slots": slots,
            "host": host,
            "no_host": host is None,
            "requires": requires_json,
            "no_requires": requires_json is None,
            "limit": _ALL if limit is None else limit,
        }
        return self._rows("ready_of_shape", NamedTask, params)

    def group_graph(self, run_id: int) -> tuple[list[GroupCount], list[GroupEdge]]:
        """The run's matrix groups with counts by state, and the edges between groups."""
        params = {"run_id": run_id}
        groups = self._rows("group_counts", GroupCount, params)
        return groups, self._rows("group_edges", GroupEdge, params)

    def end_times(self, run_id: int) -> list[float]:
        """When the run's tasks that ran (not cached) ended, in order."""
        return [float(t) for t in self._column("end_times", {"run_id": run_id})]

    def list_attempts(self, task_id: int) -> list[AttemptRow]:
        return self._rows("list_attempts", AttemptRow, {"task_id": task_id})

    def last_attempts(self, run_id: int) -> dict[int, AttemptRow]:
        """The newest attempt of each task of the run, with its worker's name."""
        return {a.task_id: a for a in self._rows("last_attempts", AttemptRow, {"run_id": run_id})}

    def attempt_ref(self, attempt_id: int) -> AttemptRef | None:
        """An attempt's run, task name, and its own and its task's states."""
        return self._row("attempt_ref", AttemptRef, {"id": attempt_id})

    def running_attempt_ids(self, attempt_ids: list[int]) -> set[int]:
        """Those of these attempts that still run."""
        ids = self._column("running_attempt_ids", {"ids": self.array(attempt_ids)})
        return {int(i) for i in ids}

    def list_workers(self) -> list[WorkerRow]:
        return self._rows("list_workers", WorkerRow)

    def demand(self, now: float) -> tuple[list[ReadyShape], list[float]]:
        """Ready tasks over every run by (slots, host, requires), and recent run times.

        The run times: seconds of the latest attempts that succeeded (up to 50).
        """
        shapes = self._rows("demand_shapes", ReadyShape, {"now": now})
        return shapes, [float(s) for s in self._column("recent_durations")]

    def active_workers(self) -> list[ActiveWorker]:
        """Name, slots and labels of the workers connected now."""
        return self._rows("active_workers", ActiveWorker)

    def machines_coming(self) -> list[str]:
        """Machines asked for whose agent has not registered yet (workers still to come)."""
        return [str(n) for n in self._column("machines_coming")]

    def list_events(self, run_id: int | None, limit: int = 1000) -> list[EventRow]:
        """The latest events (of one run), oldest first."""
        if run_id is None:
            rows = self._rows("list_events", EventRow, {"limit": limit})
        else:
            rows = self._rows("list_run_events", EventRow, {"run_id": run_id, "limit": limit})
        return rows[::-1]

    def task_events(self, task_id: int) -> list[EventRow]:
        return self._rows("task_events", EventRow, {"task_id": task_id})

    def task_deps(self, task_id: int) -> list[LinkedTask]:
        """The tasks this one runs after, with their outputs (its ``inputs/<dep>/``)."""
        return self._rows("task_deps", LinkedTask, {"id": task_id})

    def task_dependents(self, task_id: int, limit: int) -> list[NamedState]:
        """The first ``limit`` tasks that run after this one."""
        return self._rows("task_dependents", NamedState, {"id": task_id, "limit": limit})

    def metrics_counts(self) -> dict[str, Any]:
        """Counts for /metrics: tasks and workers by state, attempts by state and cause."""
        tasks = self._run("task_counts").fetchall()
        workers = self._run("worker_counts").fetchall()
        attempts = self._run("attempt_counts").fetchall()
        return {
            "tasks": {st: int(n) for st, n in tasks},
            "workers": {st: int(n) for st, n in workers},
            "attempts": [(st, cause, int(n)) for st, cause, n in attempts],
        }

    # -- bosses and dashboard sessions ---------------------------------------

    def insert_boss(self, url: str, host: str, pid: int, now: float) -> int:
        params = {"url": url, "host": host, "pid": pid, "now": now}
        return int(self._value("insert_boss", params))

    def touch_boss(self, boss_id: int, now: float, housekeeper: bool) -> None:
        self._run("touch_boss", {"id": boss_id, "now": now, "housekeeper": housekeeper})

    def stop_boss(self, boss_id: int, now: float) -> None:
        self._run("stop_boss", {"id": boss_id, "now": now})

    def others_serving(self, boss_id: int, seen_after: float) -> bool:
        """Whether another boss was serving lately (and so kept leases renewed)."""
        return self._value("others_serving", {"id": boss_id, "after": seen_after}) is not None

    def list_bosses(self, seen_after: float) -> list[BossRow]:
        return self._rows("list_bosses", BossRow, {"after": seen_after})

    def insert_session(
        self, key: str, csrf: str, now: float, expires: float, kind: str | None = None
    ) -> None:
        self._run("delete_ended_sessions", {"now": now})  # the ended ones go
        params = {"id": key, "csrf": csrf, "now": now, "expires": expires, "kind": kind}
        self._run("insert_session", params)

    def session(self, key: str, now: float) -> SessionRow | None:
        return self._row("session", SessionRow, {"id": key, "now": now})

    def delete_session(self, key: str) -> None:
        self._run("delete_session", {"id": key})
