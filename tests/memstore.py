"""A store in memory: the tables as dicts, for fast tests of the scheduler's decisions.

It answers every query of :class:`shoal.store.contract.StoreTx` as the SQL
store does (the store contract suite runs the scheduler on it too), in the
same rows, and holds JSON columns as text as a database does. A transaction
works on a copy of the tables and puts it in place when it ends without an
error, so a transaction that raises changes nothing, as on SQLite.

It also keeps what a test may want to look at: every wake-up notice sent
(:attr:`MemoryStore.notices`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shoal.exceptions import StoreConflict
from shoal.scheduler.placement import has_labels
from shoal.store.rows import (
    ACTIVE_STATES,
    ActiveWorker,
    AttemptEnd,
    AttemptRef,
    AttemptRow,
    BossRow,
    CachedTask,
    DepOutputs,
    Event,
    EventRow,
    ExpiredAttempt,
    GroupCount,
    GroupEdge,
    LinkedTask,
    NamedState,
    NamedTask,
    NewAttempt,
    NewTask,
    ReadyShape,
    ReadyTask,
    Reducer,
    ReportedAttempt,
    RunRow,
    TaskRow,
    TaskWin,
    WorkerRow,
    decode,
    encode,
)
from shoal.store.sql import TASK_COLUMNS
from shoal.store.tx import Tx

__all__ = ["MemoryStore", "MemoryTx"]

_JSON_COLUMNS = {"spec", "requires", "operands", "result", "outputs", "partial"}


@dataclass
class Tables:
    """A database's rows: each a dict named as the row types name their fields."""

    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    deps: list[tuple[int, int]] = field(default_factory=list)  # (task_id, dep_id)
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # origins of wake-ups, in order
    last_id: dict[str, int] = field(default_factory=dict)

    def new_id(self, table: str) -> int:
        self.last_id[table] = self.last_id.get(table, 0) + 1
        return self.last_id[table]


class MemoryStore:
    """A store whose database is a few dicts."""

    syncs_in_one = False  # every sync goes statement by statement

    def __init__(self) -> None:
        self.tables = Tables()
        self.statistics_refreshed = 0

    @property
    def notices(self) -> list[str]:
        """The origin of every wake-up notice committed, in order."""
        return self.tables.notices

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        work = copy.deepcopy(self.tables)
        yield MemoryTx(work)
        self.tables = work  # committed: only now, and only without an error

    # In memory, nothing travels: a batch is a transaction.
    batch = transaction

    @contextmanager
    def read(self) -> Iterator[MemoryTx]:
        yield MemoryTx(copy.deepcopy(self.tables))

    def refresh_statistics(self) -> None:
        self.statistics_refreshed += 1


def _pick(row_type: Any, record: Mapping[str, Any], **more: Any) -> Any:
    values = {**record, **more}
    return row_type(*(values[f] for f in row_type._fields))


class MemoryTx:
    """One transaction on a :class:`MemoryStore`'s tables."""

    def __init__(self, tables: Tables) -> None:
        self.t = tables

    # -- helpers ---------------------------------------------------------------

    def _tasks(self, run_id: int | None = None) -> list[dict[str, Any]]:
        rows = self.t.tasks.values()
        return [r for r in rows if run_id is None or r["run_id"] == run_id]

    def _attempts(self, **match: Any) -> list[dict[str, Any]]:
        return [a for a in self.t.attempts.values() if all(a[k] == v for k, v in match.items())]

    def _dependents(self, task_ids: Iterable[int]) -> list[int]:
        ids = set(task_ids)
        return sorted({t for t, d in self.t.deps if d in ids})

    def _task_row(self, record: dict[str, Any]) -> TaskRow:
        row: TaskRow = _pick(TaskRow, record)
        return row

    def _attempt_row(self, a: dict[str, Any]) -> AttemptRow:
        worker = self.t.workers.get(a["worker_id"])
        row: AttemptRow = _pick(AttemptRow, a, worker_name=worker["name"] if worker else None)
        return row

    # -- a worker's sync ---------------------------------------------------------

    def sync_in_one(self, call: Any) -> None:
        """Never asked: this store's ``syncs_in_one`` is False."""
        return None

    def touch_worker(
        self, worker_id: int, now: float, done: int, failed: int, boss: int | None = None
    ) -> ActiveWorker | None:
        w = self.t.workers.get(worker_id)
        if w is None or w["state"] == "stopped":
            return None
        w.update(last_sync=now, done=w["done"] + done, failed=w["failed"] + failed)
        w.update(state="active", boss=boss)
        row: ActiveWorker = _pick(ActiveWorker, w)
        return row

    def attempts_with_tasks(self, attempt_ids: list[int]) -> dict[int, ReportedAttempt]:
        out = {}
        for i in attempt_ids:
            a = self.t.attempts.get(i)
            if a is None:
                continue
            t = self.t.tasks[a["task_id"]]
            out[i] = ReportedAttempt(
                a["id"],
                a["worker_id"],
                a["state"],
                a["task_id"],
                a["run_id"],
                t["name"],
                t["state"],
                t["retries"],
                t["failures"],
                t["n_dependents"],
                t["attempts"],
                t["retry_delay"],
                t["n_reducers"],
            )
        return out

    def finish_attempts(self, ends: list[AttemptEnd]) -> None:
        for e in ends:
            self.t.attempts[e.attempt_id].update(
                state=e.state,
                cause=e.cause,
                exit_code=e.exit_code,
                started=e.started,
                ended=e.ended,
                log=e.log,
            )

    def succeed_tasks(self, wins: list[TaskWin]) -> None:
        for w in wins:
            self.t.tasks[w.task_id].update(
                state="succeeded",
                ended=w.ended,
                exit_code=w.exit_code,
                cause=None,
                has_result=w.has_result,
                result_json=encode(w.result) if w.has_result else None,
                outputs_json=encode(w.outputs),
                worker_id=w.worker_id,
            )

    def supersede_others(self, task_id: int, attempt_id: int, now: float) -> None:
        for a in self._attempts(task_id=task_id, state="running"):
            if a["id"] != attempt_id:
                a.update(state="superseded", cause="superseded", ended=now)

    def others_running(self, task_id: int, attempt_id: int) -> bool:
        return any(a["id"] != attempt_id for a in self._attempts(task_id=task_id, state="running"))

    def ready_dependents(self, task_ids: list[int]) -> list[tuple[int, str]]:
        done = set(task_ids)
        for t, d in self.t.deps:
            if d in done:
                self.t.tasks[t]["pending"] -= 1
        out = []
        for t in self._dependents(done):
            task = self.t.tasks[t]
            if task["pending"] == 0 and task["state"] == "waiting":
                task["state"] = "ready"
                out.append((t, str(task["kind"])))
        return out

    def count_unfinished(self, run_id: int, delta: int) -> int:
        run = self.t.runs[run_id]
        run["unfinished"] += delta
        return int(run["unfinished"])

    def renew_leases(self, worker_id: int, attempt_ids: list[int], until: float) -> None:
        for a in self._attempts(worker_id=worker_id, state="running"):
            if a["id"] in attempt_ids:
                a["lease_expires"] = until

    def reclaim_orphans(self, worker_id: int, known: list[int], now: float) -> int:
        n = 0
        for a in self._attempts(worker_id=worker_id, state="running"):
            if a["assigned"] < now and a["id"] not in known:
                a["lease_expires"] = 0
                n += 1
        return n

    def not_running(self, attempt_ids: list[int]) -> list[int]:
        found = [self.t.attempts.get(i) for i in sorted(set(attempt_ids))]
        return [a["id"] for a in found if a is not None and a["state"] != "running"]

    def ready_candidates(
        self,
        worker: ActiveWorker,
        max_slots: int,
        limit: int,
        now: float,
        max_seconds: float | None = None,
    ) -> list[ReadyTask]:
        labels = worker.labels

        def takes(t: dict[str, Any]) -> bool:
            return (
                t["state"] == "ready"
                and t["kind"] == "command"
                and t["slots"] <= max_slots
                and (t["host"] is None or t["host"] == worker.name)
                and (t["ready_at"] is None or t["ready_at"] <= now)
                and (max_seconds is None or t["timeout"] is None or t["timeout"] <= max_seconds)
                and (
                    t["requires_json"] is None
                    or (bool(labels) and has_labels(decode(t["requires_json"]), labels))
                )
            )

        found = sorted(
            filter(takes, self.t.tasks.values()), key=lambda t: (-t["priority"], t["id"])
        )
        return [_pick(ReadyTask, t, assigned=None) for t in found[:limit]]

    def lone_running_attempts(self, worker_id: int, assigned_before: float) -> list[ReadyTask]:
        found = []
        for a in self._attempts(state="running"):
            t = self.t.tasks[a["task_id"]]
            if (
                t["state"] == "running"
                and t["speculative"]
                and a["worker_id"] != worker_id
                and a["assigned"] < assigned_before
                and len(self._attempts(task_id=t["id"], state="running")) == 1
            ):
                found.append(_pick(ReadyTask, t, assigned=a["assigned"]))
        return sorted(found, key=lambda r: r.assigned)[:20]

    def group_durations(self, run_id: int, grp: str) -> list[float]:
        out = []
        for a in self._attempts(state="succeeded"):
            t = self.t.tasks[a["task_id"]]
            took = a["ended"] - a["started"] if None not in (a["ended"], a["started"]) else None
            if t["run_id"] == run_id and t["grp"] == grp and took is not None:
                out.append(float(took))
        return out[:1000]

    def start_attempts(
        self, attempts: list[NewAttempt], worker_id: int, now: float, lease_expires: float
    ) -> list[int]:
        ids = []
        for new in attempts:
            task = self.t.tasks[new.task_id]
            task.update(state="running", attempts=task["attempts"] + 1, worker_id=worker_id)
            if task["started"] is None:
                task["started"] = now
            attempt_id = self.t.new_id("attempts")
            self.t.attempts[attempt_id] = {
                "id": attempt_id,
                "task_id": new.task_id,
                "run_id": new.run_id,
                "number": new.number,
                "worker_id": worker_id,
                "state": "running",
                "exit_code": None,
                "cause": None,
                "assigned": now,
                "started": now,
                "ended": None,
                "lease_expires": lease_expires,
                "log": None,
            }
            ids.append(attempt_id)
        return ids

    def dep_outputs(self, task_ids: list[int]) -> list[DepOutputs]:
        wanted = set(task_ids)
        pairs = sorted((t, d) for t, d in self.t.deps if t in wanted)
        out = []
        for t, d in pairs:
            dep = self.t.tasks[d]
            run = dep["source_run"] if dep["source_run"] is not None else dep["run_id"]
            out.append(DepOutputs(t, dep["name"], run, dep["outputs_json"]))
        return out

    def any_ready(self) -> bool:
        return any(t["state"] == "ready" for t in self.t.tasks.values())

    def add_events(self, events: list[Event]) -> None:
        for e in events:
            self.t.events.append(EventRow(self.t.new_id("events"), *e))

    def results_by_name(self, run_id: int, names: list[str]) -> dict[str, Any]:
        return {
            t["name"]: decode(t["result_json"]) if t["has_result"] else None
            for t in self._tasks(run_id)
            if t["name"] in names and t["state"] == "succeeded"
        }

    # -- submit --------------------------------------------------------------------

    def insert_run(
        self,
        *,
        name: str,
        env: Mapping[str, str],
        setup: str | None,
        bundle: str | None,
        source: str | None,
        total: int,
        now: float,
        final: str | None = None,
        submit_key: str | None = None,
    ) -> int:
        if submit_key is not None and self.run_by_submit_key(submit_key) is not None:
            raise StoreConflict(f"a run with the submit key {submit_key} exists")
        run_id = self.t.new_id("runs")
        self.t.runs[run_id] = {
            "id": run_id,
            "name": name,
            "state": "running",
            "created": now,
            "finished": None,
            "env_json": encode(dict(env)),
            "setup": setup,
            "bundle": bundle,
            "source": source,
            "final": final,
            "total": total,
            "unfinished": total,
            "submit_key": submit_key,
        }
        return run_id

    def run_by_submit_key(self, key: str) -> int | None:
        return next((r["id"] for r in self.t.runs.values() if r["submit_key"] == key), None)

    def succeeded_by_key(self, keys: list[str]) -> dict[str, CachedTask]:
        wanted = set(keys)
        removed = {(e.run_id, e.detail) for e in self.t.events if e.kind == "outputs_removed"}
        found: dict[str, CachedTask] = {}
        for t in sorted(self.t.tasks.values(), key=lambda t: t["id"]):
            holder = t["source_run"] or t["run_id"]
            if (holder, None) in removed or (holder, t["name"]) in removed:
                continue  # its outputs are gone (shoal gc)
            if t["key"] in wanted and t["state"] == "succeeded":
                found[t["key"]] = _pick(CachedTask, t)
        return found

    def insert_tasks(self, run_id: int, tasks: list[NewTask]) -> None:
        names = {t["name"] for t in self._tasks(run_id)}
        for new in tasks:
            if new.name in names:
                raise StoreConflict(f"task {new.name} twice in run {run_id}")
            names.add(new.name)
            # The columns as the SQL store writes them (the same encoding).
            stored = dict(zip(TASK_COLUMNS, Tx.task_values(run_id, new), strict=True))
            task_id = self.t.new_id("tasks")
            record = {f"{k}_json" if k in _JSON_COLUMNS else k: v for k, v in stored.items()}
            record.update(
                id=task_id,
                failures=0,
                losses=0,
                ready_at=None,
                partial_json=None,
                attempts=0,
                cause=None,
                worker_id=None,
                started=None,
            )
            self.t.tasks[task_id] = record

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        self.t.deps.extend(pairs)

    def task_ids(self, run_id: int) -> dict[str, int]:
        return {t["name"]: t["id"] for t in self._tasks(run_id)}

    def ready_roots(self, run_id: int) -> int:
        n = 0
        for t in self._tasks(run_id):
            if t["state"] == "waiting" and t["pending"] == 0:
                t["state"] = "ready"
                n += 1
        return n

    def notify_work(self, origin: str) -> None:
        self.t.notices.append(origin)

    # -- runs and tasks ----------------------------------------------------------------

    def run(self, run_id: int) -> RunRow | None:
        record = self.t.runs.get(run_id)
        return RunRow(**record) if record is not None else None

    def runs_by_id(self, run_ids: Iterable[int]) -> dict[int, RunRow]:
        return {i: RunRow(**self.t.runs[i]) for i in run_ids if i in self.t.runs}

    def running_runs(self) -> list[int]:
        return sorted(i for i, r in self.t.runs.items() if r["state"] == "running")

    def set_run_state(self, run_id: int, state: str, now: float | None) -> None:
        self.t.runs[run_id].update(state=state, finished=now)

    def reset_unfinished(self, run_id: int) -> int:
        n = sum(1 for t in self._tasks(run_id) if t["state"] in ACTIVE_STATES)
        self.t.runs[run_id]["unfinished"] = n
        return n

    def failed_count(self, run_id: int) -> int:
        return sum(1 for t in self._tasks(run_id) if t["state"] != "succeeded")

    def task(self, task_id: int) -> TaskRow | None:
        record = self.t.tasks.get(task_id)
        return self._task_row(record) if record is not None else None

    def finish_task(
        self,
        task_id: int,
        *,
        state: str,
        now: float,
        exit_code: int | None = None,
        cause: str | None = None,
        result: Any = None,
        has_result: bool = False,
        outputs: list[str] | None = None,
        worker_id: int | None = None,
    ) -> None:
        task = self.t.tasks[task_id]
        task.update(state=state, ended=now, exit_code=exit_code, cause=cause)
        task.update(has_result=has_result, result_json=encode(result) if has_result else None)
        task["outputs_json"] = encode(outputs or [])
        if worker_id is not None:
            task["worker_id"] = worker_id

    def retry_task(
        self, task_id: int, failures: int, exit_code: int | None, cause: str | None, ready_at: float
    ) -> None:
        self.t.tasks[task_id].update(
            state="ready", failures=failures, exit_code=exit_code, cause=cause, ready_at=ready_at
        )

    def set_task_ready(self, task_id: int) -> None:
        self.t.tasks[task_id].update(state="ready", ready_at=None)

    def fail_downstream(self, task_id: int, cause: str, now: float) -> list[tuple[int, int]]:
        down: set[int] = set()
        frontier = [task_id]
        while frontier:
            new = [t for t in self._dependents(frontier) if t not in down]
            down.update(new)
            frontier = new
        marked = []
        for t in sorted(down):
            task = self.t.tasks[t]
            if task["state"] in ("waiting", "ready"):
                task.update(state="upstream_failed", cause=cause, ended=now)
                marked.append((t, int(task["run_id"])))
        return marked

    def count_loss(self, task_id: int) -> int:
        task = self.t.tasks[task_id]
        task["losses"] += 1
        return int(task["losses"])

    def reducers_of(self, task_ids: list[int]) -> list[Reducer]:
        found = [self.t.tasks[t] for t in self._dependents(task_ids)]
        return [
            Reducer(t["id"], t["run_id"], t["operands_json"])
            for t in found
            if t["kind"] == "reduce" and t["state"] == "waiting"
        ]

    def ready_reductions(self, run_id: int) -> list[int]:
        return [
            t["id"] for t in self._tasks(run_id) if t["kind"] == "reduce" and t["state"] == "ready"
        ]

    def set_partial(self, task_id: int, partial: Any) -> None:
        self.t.tasks[task_id]["partial_json"] = encode(partial)

    def cancel_tasks(self, run_id: int, now: float, cause: str = "cancelled") -> int:
        n = 0
        for t in self._tasks(run_id):
            if t["state"] in ACTIVE_STATES:
                t.update(state="cancelled", cause=cause, ended=now)
                n += 1
        return n

    def cancel_attempts(self, run_id: int, now: float) -> int:
        running = self._attempts(run_id=run_id, state="running")
        for a in running:
            a.update(state="cancelled", cause="cancelled", ended=now)
        return len(running)

    def interrupt_attempts(self, run_id: int, cause: str, now: float) -> None:
        for a in self._attempts(run_id=run_id, state="running"):
            a.update(state="interrupted", cause=cause, ended=now)

    def reset_failed_tasks(self, run_id: int) -> list[int]:
        again = ("failed", "upstream_failed", "cancelled")
        ids = sorted(t["id"] for t in self._tasks(run_id) if t["state"] in again)
        for i in ids:
            undone = [
                d for t, d in self.t.deps if t == i and self.t.tasks[d]["state"] != "succeeded"
            ]
            self.t.tasks[i].update(
                state="waiting", failures=0, cause=None, exit_code=None, ended=None
            )
            self.t.tasks[i]["pending"] = len(undone)
        for i in ids:
            if self.t.tasks[i]["pending"] == 0:
                self.t.tasks[i]["state"] = "ready"
        return ids

    def cancel_task_attempts(self, task_id: int, now: float) -> None:
        for a in self._attempts(task_id=task_id, state="running"):
            a.update(state="cancelled", cause="cancelled", ended=now)

    def reset_task(self, task_id: int) -> list[int]:
        down: set[int] = set()
        frontier = [task_id]
        while frontier:
            new = [t for t in self._dependents(frontier) if t not in down]
            down.update(new)
            frontier = new
        ids = [task_id, *sorted(t for t in down if self.t.tasks[t]["state"] == "upstream_failed")]
        for i in ids:
            undone = [
                d for t, d in self.t.deps if t == i and self.t.tasks[d]["state"] != "succeeded"
            ]
            self.t.tasks[i].update(
                state="waiting", failures=0, cause=None, exit_code=None, ended=None
            )
            self.t.tasks[i]["pending"] = len(undone)
            if not undone:
                self.t.tasks[i]["state"] = "ready"
        return ids

    # -- leases and workers ------------------------------------------------------------

    def mark_workers_lost(self, last_sync_before: float) -> None:
        for w in self.t.workers.values():
            if w["state"] == "active" and w["last_sync"] < last_sync_before:
                w["state"] = "lost"

    def end_worker_leases(self, worker_id: int, until: float) -> None:
        for a in self._attempts(worker_id=worker_id, state="running"):
            a["lease_expires"] = until

    def expired_attempts(self, now: float) -> list[ExpiredAttempt]:
        out = []
        for a in sorted(self._attempts(state="running"), key=lambda a: (a["task_id"], a["id"])):
            if a["lease_expires"] is None or a["lease_expires"] >= now:
                continue
            t = self.t.tasks[a["task_id"]]
            w = self.t.workers.get(a["worker_id"])
            out.append(
                ExpiredAttempt(
                    a["id"],
                    a["task_id"],
                    a["run_id"],
                    a["worker_id"],
                    t["state"],
                    t["name"],
                    w["name"] if w else None,
                    w["last_sync"] if w else None,
                )
            )
        return out[:10000]

    def end_attempt(self, attempt_id: int, state: str, cause: str, now: float) -> None:
        a = self.t.attempts[attempt_id]
        a.update(state=state, cause=cause, ended=a["ended"] if a["ended"] is not None else now)

    def extend_leases(self, until: float) -> int:
        running = self._attempts(state="running")
        for a in running:
            a["lease_expires"] = until
        return len(running)

    def insert_worker(
        self,
        *,
        name: str,
        host: str,
        slots: int,
        labels: Mapping[str, Any],
        now: float,
        pid: int | None,
        python: str | None,
        version: str | None,
    ) -> int:
        worker_id = self.t.new_id("workers")
        self.t.workers[worker_id] = {
            "id": worker_id,
            "name": name,
            "host": host,
            "slots": slots,
            "labels_json": encode(dict(labels)),
            "state": "active",
            "registered": now,
            "last_sync": now,
            "pid": pid,
            "python": python,
            "version": version,
            "done": 0,
            "failed": 0,
            "boss": None,
        }
        return worker_id

    def set_worker_state(self, worker_id: int, state: str) -> None:
        if worker_id in self.t.workers:
            self.t.workers[worker_id]["state"] = state

    # -- what the views read -----------------------------------------------------------

    def latest_run(self, name: str | None = None) -> RunRow | None:
        runs = [r for r in self.t.runs.values() if name is None or r["name"] == name]
        return RunRow(**max(runs, key=lambda r: r["id"])) if runs else None

    def list_runs(self, limit: int = 100) -> list[RunRow]:
        return [RunRow(**r) for r in sorted(self.t.runs.values(), key=lambda r: -r["id"])][:limit]

    def state_counts(self, run_id: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self._tasks(run_id):
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        return counts

    def cached_count(self, run_id: int) -> int:
        return sum(1 for t in self._tasks(run_id) if t["cached"])

    def partials(self, run_id: int) -> dict[str, Any]:
        return {
            t["name"]: decode(t["partial_json"])
            for t in self._tasks(run_id)
            if t["kind"] == "reduce" and t["state"] in ACTIVE_STATES and t["partial_json"]
        }

    def task_by_name(self, run_id: int, name: str) -> TaskRow | None:
        found = [t for t in self._tasks(run_id) if t["name"] == name]
        return self._task_row(found[0]) if found else None

    def list_tasks(self, run_id: int, states: Sequence[str] | None = None) -> list[TaskRow]:
        rows = sorted(self._tasks(run_id), key=lambda t: t["id"])
        return [self._task_row(t) for t in rows if not states or t["state"] in states]

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
        rows = [t for t in self.list_tasks(run_id, states) if not search or search in t.name]

        def took(t: TaskRow) -> float | None:
            return t.ended - t.started if t.ended is not None and t.started is not None else None

        if sort == "name":
            rows.sort(key=lambda t: t.name)
        elif sort in ("duration", "-duration"):
            sign = -1 if sort == "duration" else 1
            rows.sort(key=lambda t: (took(t) is None, sign * (took(t) or 0.0), t.id))
        return rows[offset : offset + limit], len(rows)

    def active_workers(self) -> list[ActiveWorker]:
        workers = sorted(self.t.workers.values(), key=lambda w: w["id"])
        return [_pick(ActiveWorker, w) for w in workers if w["state"] == "active"]

    def machines_coming(self) -> list[str]:
        return []  # the machines shoal starts are the SQL store's alone

    def ready_shapes(self, run_id: int, plain_slots: int) -> list[ReadyShape]:
        shapes: dict[tuple[int, str | None, str | None], list[int]] = {}
        for t in sorted(self._tasks(run_id), key=lambda t: t["id"]):
            if t["state"] != "ready" or t["kind"] != "command":
                continue
            if t["host"] is None and t["requires_json"] is None and t["slots"] <= plain_slots:
                continue
            shapes.setdefault((t["slots"], t["host"], t["requires_json"]), []).append(t["id"])
        return [ReadyShape(*need, len(ids)) for need, ids in shapes.items()]

    def ready_of_shape(
        self,
        run_id: int,
        slots: int,
        host: str | None,
        requires_json: str | None,
        limit: int | None,
    ) -> list[NamedTask]:
        found = [
            NamedTask(t["id"], t["name"])
            for t in sorted(self._tasks(run_id), key=lambda t: t["id"])
            if t["state"] == "ready"
            and t["kind"] == "command"
            and (t["slots"], t["host"], t["requires_json"]) == (slots, host, requires_json)
        ]
        return found if limit is None else found[:limit]

    def group_graph(self, run_id: int) -> tuple[list[GroupCount], list[GroupEdge]]:
        counts: dict[tuple[str, str], list[int]] = {}
        for t in self._tasks(run_id):
            counts.setdefault((t["grp"], t["state"]), []).append(t["id"])
        groups = [GroupCount(g, st, len(ids), min(ids)) for (g, st), ids in counts.items()]
        edges = {
            (self.t.tasks[d]["grp"], self.t.tasks[t]["grp"])
            for t, d in self.t.deps
            if self.t.tasks[t]["run_id"] == run_id
        }
        return groups, [GroupEdge(a, b) for a, b in sorted(edges)]

    def end_times(self, run_id: int) -> list[float]:
        return sorted(
            float(t["ended"])
            for t in self._tasks(run_id)
            if t["state"] in ("succeeded", "failed") and t["ended"] is not None and not t["cached"]
        )

    def list_attempts(self, task_id: int) -> list[AttemptRow]:
        found = sorted(self._attempts(task_id=task_id), key=lambda a: a["id"])
        return [self._attempt_row(a) for a in found]

    def last_attempts(self, run_id: int) -> dict[int, AttemptRow]:
        newest: dict[int, dict[str, Any]] = {}
        for a in sorted(self._attempts(run_id=run_id), key=lambda a: a["id"]):
            newest[a["task_id"]] = a
        return {t: self._attempt_row(a) for t, a in newest.items()}

    def attempt_ref(self, attempt_id: int) -> AttemptRef | None:
        a = self.t.attempts.get(attempt_id)
        if a is None:
            return None
        t = self.t.tasks[a["task_id"]]
        return AttemptRef(a["id"], a["run_id"], a["state"], t["name"], t["state"], a["worker_id"])

    def running_attempt_ids(self, attempt_ids: list[int]) -> set[int]:
        return {i for i in attempt_ids if self.t.attempts.get(i, {}).get("state") == "running"}

    def list_workers(self) -> list[WorkerRow]:
        rows = []
        for w in sorted(self.t.workers.values(), key=lambda w: w["id"]):
            running = len(self._attempts(worker_id=w["id"], state="running"))
            ends = [a["ended"] for a in self._attempts(worker_id=w["id"]) if a["ended"] is not None]
            rows.append(_pick(WorkerRow, w, running=running, last_ended=max(ends, default=None)))
        return rows

    def demand(self, now: float) -> tuple[list[ReadyShape], list[float]]:
        shapes: dict[tuple[int, str | None, str | None], int] = {}
        for t in self.t.tasks.values():
            if t["state"] != "ready" or t["kind"] != "command":
                continue
            if t["ready_at"] is not None and t["ready_at"] > now:
                continue
            need = (t["slots"], t["host"], t["requires_json"])
            shapes[need] = shapes.get(need, 0) + 1
        took = [
            a["ended"] - a["started"]
            for a in sorted(self.t.attempts.values(), key=lambda a: -a["id"])
            if a["state"] == "succeeded" and None not in (a["ended"], a["started"])
        ]
        return [ReadyShape(*need, n) for need, n in shapes.items()], took[:50]

    def list_events(self, run_id: int | None, limit: int = 1000) -> list[EventRow]:
        found = [e for e in self.t.events if run_id is None or e.run_id == run_id]
        return found[-limit:]

    def list_bosses(self, seen_after: float) -> list[BossRow]:
        return []  # no boss serves a store in memory

    def task_events(self, task_id: int) -> list[EventRow]:
        return [e for e in self.t.events if e.task_id == task_id]

    def task_deps(self, task_id: int) -> list[LinkedTask]:
        found = []
        for t, d in self.t.deps:
            if t == task_id:
                dep = self.t.tasks[d]
                run = dep.get("source_run") or dep["run_id"]
                found.append(LinkedTask(dep["name"], dep["state"], run, dep.get("outputs_json")))
        return found

    def task_dependents(self, task_id: int, limit: int) -> list[NamedState]:
        found = [self.t.tasks[t] for t in self._dependents([task_id])]
        return [NamedState(t["name"], t["state"]) for t in found][:limit]

    def metrics_counts(self) -> dict[str, Any]:
        tasks: dict[str, int] = {}
        for t in self.t.tasks.values():
            tasks[t["state"]] = tasks.get(t["state"], 0) + 1
        workers: dict[str, int] = {}
        for w in self.t.workers.values():
            workers[w["state"]] = workers.get(w["state"], 0) + 1
        attempts: dict[tuple[str, str | None], int] = {}
        for a in self.t.attempts.values():
            attempts[(a["state"], a["cause"])] = attempts.get((a["state"], a["cause"]), 0) + 1
        return {
            "tasks": tasks,
            "workers": workers,
            "attempts": [(st, cause, n) for (st, cause), n in attempts.items()],
        }
