"""Read-only views of runs, tasks, attempts, workers and events, as plain data.

What the API serves and the command line prints (:class:`Views`) and what
the dashboard adds (:class:`DashboardViews`). Each view is one read
transaction; none changes anything. The scheduler holds one of each.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shoal.exceptions import Fenced, NotFound, Refused
from shoal.scheduler.placement import WorkerShape, why_unplaceable
from shoal.store.contract import StoreLike, ViewTx
from shoal.store.rows import ACTIVE_STATES, ActiveWorker, AttemptRow, RunRow, TaskRow, WorkerRow

__all__ = ["DashboardViews", "Unplaceable", "Views", "unplaceable", "worker_shape"]


@dataclass(frozen=True)
class Unplaceable:
    """Ready tasks of one run with one need that no worker meets."""

    slots: int
    host: str | None
    requires: str | None  # as stored: a JSON object, or None
    reason: str  # a phrase after the task's name: "needs labels gpu=true that no worker has"
    count: int
    names: list[str]  # the first few

    def sentence(self) -> str:
        """``task 'train-3' needs …``, or ``10 tasks ('a', 'b', 'c', …): each needs …``."""
        if self.count == 1 and self.names:
            return f"task '{self.names[0]}' {self.reason}"
        shown = ", ".join(f"'{n}'" for n in self.names[:3])
        more = ", …" if self.count > 3 else ""
        return f"{self.count} tasks ({shown}{more}): each {self.reason}"


def worker_shape(row: ActiveWorker) -> WorkerShape:
    """A connected worker as placement sees it."""
    return WorkerShape(row.name, row.slots, row.labels)


def unplaceable(
    tx: ViewTx, run_id: int, workers: Sequence[WorkerShape], names: int | None
) -> list[Unplaceable]:
    """The run's ready tasks that none of ``workers`` can take, by need, with why.

    ``names``: how many task names to read for each (None: every one).
    """
    if not workers:
        return []  # nobody to judge by: the tasks wait for workers
    out = []
    biggest = max(w.slots for w in workers)
    for shape in tx.ready_shapes(run_id, biggest):
        reason = why_unplaceable(shape.slots, shape.host, shape.requires, workers)
        if reason is not None:
            rows = (
                tx.ready_of_shape(run_id, shape.slots, shape.host, shape.requires_json, names)
                if names != 0
                else []
            )
            names_ = [r.name for r in rows]
            out.append(
                Unplaceable(shape.slots, shape.host, shape.requires_json, reason, shape.n, names_)
            )
    return out


class Views:
    """Queries over a store that answer in JSON-ready dicts."""

    def __init__(self, store: StoreLike) -> None:
        self.store = store
        # Each run's count of cached tasks, by (id, created): it is fixed when
        # the run is submitted, and counting it reads every task of the run.
        self._cached: dict[tuple[int, float], int] = {}

    def resolve_run(self, ref: str | int | None) -> int:
        """A run id from an id, a run name (its latest run) or None (the latest run)."""
        with self.store.read() as tx:
            if ref is None or ref == "":
                row = tx.latest_run()
                if row is None:
                    raise NotFound(
                        "no runs yet: start one with 'shoal run FILE' or 'shoal submit FILE'"
                    )
                return int(row.id)
            text = str(ref)
            if text.isascii() and text.isdigit() and len(text) < 19 and tx.run(int(text)):
                return int(text)
            row = tx.latest_run(text)
            if row is None:
                raise NotFound(f"no run '{text}' (see 'shoal status' for the runs there are)")
            return int(row.id)

    def run_state(self, run_id: int) -> str:
        with self.store.read() as tx:
            run = tx.run(run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            return str(run.state)

    def run_view(self, run_id: int) -> dict[str, Any]:
        with self.store.read() as tx:
            run = tx.run(run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            counts = tx.state_counts(run_id)
            cached = 0
            if counts.get("succeeded"):
                key = (run.id, run.created)
                cached = self._cached.get(key, -1)
                if cached < 0:
                    cached = self._cached[key] = tx.cached_count(run_id)
            stuck: list[Unplaceable] = []
            slots = None
            if run.state == "running":
                workers = [worker_shape(w) for w in tx.active_workers()]
                slots = sum(w.slots for w in workers)
                if counts.get("ready"):
                    stuck = unplaceable(tx, run_id, workers, names=5)
        view = _run_dict(run, counts)
        view["cached"] = cached
        # The connected workers' slots: at most this many tasks run at once
        # (more are "running" to the boss while queued ahead on a worker).
        view["slots"] = slots
        view["final"] = run.final
        view["result"] = None
        view["partial"] = {}
        if run.final is not None:
            with self.store.read() as tx:
                view["result"] = tx.results_by_name(run_id, [run.final]).get(run.final)
                view["partial"] = tx.partials(run_id)
        if stuck:
            # What keeps the run waiting: the tasks no connected worker can take.
            view["unplaceable"] = [
                {"tasks": u.names, "count": u.count, "reason": u.reason} for u in stuck
            ]
            view["warnings"] = [u.sentence() for u in stuck]
        return view

    def runs_view(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [_run_dict(r, tx.state_counts(r.id)) for r in tx.list_runs(limit)]

    def tasks_view(self, run_id: int, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            if tx.run(run_id) is None:
                raise NotFound(f"no run {run_id}")
            last = tx.last_attempts(run_id)
            return [_task_dict(t, last.get(t.id)) for t in tx.list_tasks(run_id, states)]

    def task_view(self, run_id: int, name: str) -> dict[str, Any]:
        with self.store.read() as tx:
            task = tx.task_by_name(run_id, name)
            if task is None:
                raise NotFound(f"no task '{name}' in run {run_id}")
            attempts = tx.list_attempts(task.id)
            view = _task_dict(task, attempts[-1] if attempts else None)
            view["spec"] = task.spec
            view["attempt_list"] = [_attempt_dict(a) for a in attempts]
            return view

    def results(self, run_id: int) -> dict[str, Any]:
        with self.store.read() as tx:
            if tx.run(run_id) is None:
                raise NotFound(f"no run {run_id}")
            return {
                t.name: t.result
                for t in tx.list_tasks(run_id, ["succeeded", "failed"])
                if t.has_result
            }

    def attempt_writing(
        self, attempt_id: int, *, outputs: bool, worker: int | None = None
    ) -> tuple[int, str]:
        """The run and task an attempt may write for: its outputs only while it holds it.

        Raises :class:`Fenced` for outputs of an attempt that was ended (lost,
        superseded, cancelled) or whose task another attempt has finished;
        :class:`Refused` when ``worker`` (the caller's) is not the one it was
        handed to.
        """
        with self.store.read() as tx:
            row = tx.attempt_ref(attempt_id)
        if row is None:
            raise NotFound(f"no attempt {attempt_id}")
        if worker is not None and row.worker_id != worker:
            raise Refused(
                f"attempt {attempt_id} was handed to another worker: "
                f"worker {worker}'s credential may write only for its own attempts"
            )
        if outputs and (row.state != "running" or row.task_state != "running"):
            raise Fenced(
                f"attempt {attempt_id} no longer holds task '{row.task_name}' "
                f"(the attempt is {row.state}, the task {row.task_state}): its outputs are refused"
            )
        return int(row.run_id), str(row.task_name)

    def attempts_of(self, worker_id: int, attempt_ids: list[int]) -> dict[int, tuple[int, str]]:
        """The run and task of each of these attempts that was handed to ``worker_id``."""
        if not attempt_ids:
            return {}
        with self.store.read() as tx:
            rows = tx.attempts_with_tasks(attempt_ids)
        return {i: (r.run_id, r.task_name) for i, r in rows.items() if r.worker_id == worker_id}

    def running_attempts(self, attempt_ids: list[int]) -> set[int]:
        with self.store.read() as tx:
            return tx.running_attempt_ids(attempt_ids)

    def workers_view(self) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [
                {
                    "id": w.id,
                    "name": w.name,
                    "host": w.host,
                    "slots": w.slots,
                    "running": int(w.running),
                    "labels": w.labels,
                    "state": w.state,
                    "done": w.done,
                    "failed": w.failed,
                    "registered": w.registered,
                    "last_sync": w.last_sync,
                    "pid": w.pid,
                    "python": w.python,
                    "boss": w.boss,
                    "idle_since": _idle_since(w),
                }
                for w in tx.list_workers()
            ]

    def demand(self) -> dict[str, Any]:
        """What waits for a worker, and the workers there are: what pools are sized to.

        ``ready``: the ready tasks of every run by need (slots, host, requires)
        with how many; ``run_seconds``: the median run time of the latest
        attempts that succeeded (None before any did); ``workers``: the
        connected ones, each with when it last had nothing to do (None: busy).
        """
        now = time.time()
        with self.store.read() as tx:
            shapes, took = tx.demand(now)
            workers = [w for w in tx.list_workers() if w.state == "active"]
        took.sort()
        return {
            "now": now,
            "ready": [
                {"slots": s.slots, "host": s.host, "requires": s.requires, "n": s.n} for s in shapes
            ],
            "run_seconds": took[len(took) // 2] if took else None,
            "workers": [
                {
                    "name": w.name,
                    "slots": w.slots,
                    "labels": w.labels,
                    "running": int(w.running),
                    "idle_since": _idle_since(w),
                }
                for w in workers
            ],
        }

    def bosses_view(self) -> list[dict[str, Any]]:
        """The bosses serving this database, and those gone in the last hour."""
        with self.store.read() as tx:
            return [
                {**b._asdict(), "housekeeper": bool(b.housekeeper)}
                for b in tx.list_bosses(time.time() - 3600)
            ]

    def events_view(self, run_id: int | None, limit: int = 1000) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [e._asdict() for e in tx.list_events(run_id, limit)]


def _idle_since(w: WorkerRow) -> float | None:
    """Since when a worker has had nothing to do (None: it runs something, or left)."""
    if w.running or w.state != "active":
        return None
    return max(w.registered, w.last_ended or 0.0)


def _run_dict(run: RunRow, counts: dict[str, int]) -> dict[str, Any]:
    end = run.finished
    return {
        "run": run.id,
        "name": run.name,
        "state": run.state,
        "counts": counts,
        "total": run.total,
        "unfinished": run.unfinished,
        "created": run.created,
        "finished": end,
        "source": run.source,
        "active": sum(counts.get(s, 0) for s in ACTIVE_STATES),
    }


def _task_dict(task: TaskRow, attempt: AttemptRow | None) -> dict[str, Any]:
    """A task as the API, ``shoal tasks --json`` and the dashboard show it.

    ``matrix``: the matrix values it was made with ({} if none); ``after``:
    its dependencies' names; ``started``, ``ended``: its latest attempt's
    times (epoch seconds), or None. Only what belongs to the task's state
    now: a task running again carries no exit code or cause of an earlier
    attempt, and a ready one no worker, duration or times.
    """
    duration = None
    if task.state in ("waiting", "ready"):
        # The last attempt (lost, failed before a retry) is history: a task
        # that waits to run again has no worker, time or end of its own.
        attempt = None
    started = attempt.started if attempt is not None else None
    ended = attempt.ended if attempt is not None else None
    if started is not None and ended is not None:
        duration = max(0.0, ended - started)
    # How an earlier attempt ended is not how the one running now will; a
    # ready task keeps it, as why it waits to run again.
    settled = task.state != "running"
    spec = task.spec
    return {
        "id": task.id,
        "name": task.name,
        "state": task.state,
        "attempts": task.attempts,
        "exit_code": task.exit_code if settled else None,
        "cause": task.cause if settled else None,
        "result": task.result,
        "outputs": task.outputs,
        "worker": attempt.worker_name if attempt is not None else None,
        "duration": duration,
        "log": attempt.log if attempt is not None else None,
        "cached": bool(task.cached),
        "source_run": task.source_run,
        "kind": task.kind,
        "priority": task.priority,
        "slots": task.slots,
        "matrix": spec.get("matrix") or {},
        "after": list(spec.get("after") or []),
        "started": started,
        "ended": ended,
    }


def _attempt_dict(a: AttemptRow) -> dict[str, Any]:
    return {
        "id": a.id,
        "number": a.number,
        "state": a.state,
        "worker": a.worker_name,
        "exit_code": a.exit_code,
        "cause": a.cause,
        "started": a.started,
        "ended": a.ended,
        "duration": (a.ended - a.started)
        if a.ended is not None and a.started is not None
        else None,
        "log": a.log,
    }


class DashboardViews:
    """Views the dashboard needs beyond the command line's."""

    def __init__(self, store: StoreLike) -> None:
        self.store = store

    def tasks_page(
        self,
        run_id: int,
        *,
        states: Sequence[str] | None = None,
        search: str | None = None,
        sort: str = "id",
        limit: int = 200,
        offset: int = 0,
    ) -> dict[str, Any]:
        with self.store.read() as tx:
            if tx.run(run_id) is None:
                raise NotFound(f"no run {run_id}")
            rows, total = tx.page_tasks(
                run_id, states=states, search=search, sort=sort, limit=limit, offset=offset
            )
            last = tx.last_attempts(run_id)
            return {"total": total, "tasks": [_task_dict(t, last.get(t.id)) for t in rows]}

    def graph(self, run_id: int) -> dict[str, Any]:
        """The run's DAG with each matrix group folded into one node."""
        with self.store.read() as tx:
            groups, edges = tx.group_graph(run_id)
        nodes: dict[str, dict[str, Any]] = {}
        for grp, state, n, first in groups:
            node = nodes.setdefault(grp, {"id": grp, "counts": {}, "total": 0, "order": first})
            node["counts"][state] = int(n)
            node["total"] += int(n)
            node["order"] = min(node["order"], first)
        ordered = sorted(nodes.values(), key=lambda x: x["order"])
        return {
            "nodes": ordered,
            "edges": [{"source": a, "target": b} for a, b in edges if a != b],
        }

    def throughput(self, run_id: int, buckets: int = 40) -> dict[str, Any]:
        """Tasks finished per second over the run, in equal time buckets."""
        with self.store.read() as tx:
            run = tx.run(run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            ends = tx.end_times(run_id)
        if not ends:
            return {"start": run.created, "width": 0, "rates": []}
        start = run.created
        span = max(ends[-1] - start, 1e-3)
        width = span / buckets
        counts = [0] * buckets
        for t in ends:
            counts[min(buckets - 1, int((t - start) / width))] += 1
        return {"start": start, "width": width, "rates": [c / width for c in counts]}

    def task_links(self, run_id: int, name: str, limit: int = 1000) -> dict[str, Any]:
        """The tasks this one runs after (with the outputs it was given) and those after it."""
        with self.store.read() as tx:
            task = tx.task_by_name(run_id, name)
            if task is None:
                raise NotFound(f"no task '{name}' in run {run_id}")
            deps = tx.task_deps(task.id)
            after = tx.task_dependents(task.id, limit)
        return {
            "deps": [
                {"name": d.name, "state": d.state, "run": d.run_id, "outputs": d.outputs}
                for d in deps
            ],
            "dependents": [{"name": d.name, "state": d.state} for d in after],
            "more_dependents": max(0, task.n_dependents - len(after)),
        }

    def task_events(self, run_id: int, name: str) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            task = tx.task_by_name(run_id, name)
            if task is None:
                raise NotFound(f"no task '{name}' in run {run_id}")
            return [e._asdict() for e in tx.task_events(task.id)]

    def metrics_counts(self) -> dict[str, Any]:
        with self.store.read() as tx:
            counts = tx.metrics_counts()
            counts["ready"] = counts["tasks"].get("ready", 0)
            return counts
