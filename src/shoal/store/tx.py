"""One transaction on a SQL database: every query shoal makes, by name.

:class:`Tx` adds to the reads (:class:`~shoal.store.reads.Reads`) what the
scheduler's state machine asks: a sync, a submission, a run's life, the
lease sweep. A database's subclass (``SqliteTx``, ``PostgresTx``) gives its
statements' spelling, how a list travels as one parameter, and how a run's
tasks are stored in bulk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from shoal.store.reads import Reads
from shoal.store.rows import (
    ActiveWorker,
    AttemptEnd,
    CachedTask,
    DepOutputs,
    Event,
    ExpiredAttempt,
    NewAttempt,
    NewTask,
    ReadyTask,
    Reducer,
    ReportedAttempt,
    RunRow,
    SyncCall,
    SyncDone,
    TaskRow,
    TaskWin,
    decode,
    encode,
)
from shoal.store.sizes import TASKS_PER_SHARD

__all__ = ["Tx"]

_NOT_REUSED = (False, False, None, None)  # cached, has_result, result, outputs


class Tx(Reads):
    """One transaction, with every query shoal needs."""

    # The most shards a run's count of unfinished tasks is kept in: one where
    # one transaction writes at a time (SQLite); see ``PostgresTx``.
    SHARDS = 1

    def __init__(self, raw: Any, conn: Any = None) -> None:
        super().__init__(raw, conn)
        # The shard of each run's count of unfinished tasks this transaction took from.
        self._parts: dict[int, int] = {}

    def batched(self) -> AbstractContextManager[None]:
        """Send statements together where the database can (see ``PostgresTx``); commit at the end."""
        return nullcontext()

    # -- a worker's sync ---------------------------------------------------

    def sync_in_one(self, call: SyncCall) -> SyncDone | None:
        """A whole sync as one statement, committed on its own (see ``PostgresTx``).

        None: not done here (nothing was written); the sync goes statement by statement.
        """
        return None

    def touch_worker(
        self, worker_id: int, now: float, done: int, failed: int, boss: int | None = None
    ) -> ActiveWorker | None:
        """Record a worker's sync (and its tally); None if it is not (or no longer) there."""
        params = {"id": worker_id, "now": now, "done": done, "failed": failed, "boss": boss}
        return self._row("touch_worker", ActiveWorker, params)

    def attempts_with_tasks(self, attempt_ids: list[int]) -> dict[int, ReportedAttempt]:
        rows = self._rows("attempts_with_tasks", ReportedAttempt, {"ids": self.array(attempt_ids)})
        return {r.id: r for r in rows}

    def finish_attempts(self, ends: list[AttemptEnd]) -> None:
        if ends:
            # AttemptEnd's fields, its id last.
            self._many("finish_attempt", [(*e[1:], e.attempt_id) for e in ends])

    def succeed_tasks(self, wins: list[TaskWin]) -> None:
        if wins:
            rows = [
                (
                    w.ended,
                    w.exit_code,
                    w.has_result,
                    encode(w.result) if w.has_result else None,
                    encode(w.outputs),
                    w.worker_id,
                    w.task_id,
                )
                for w in wins
            ]
            self._many("succeed_task", rows)

    def supersede_others(self, task_id: int, attempt_id: int, now: float) -> None:
        """The task is done: its other running attempts lost the race."""
        self._run("supersede_others", {"task_id": task_id, "attempt_id": attempt_id, "now": now})

    def others_running(self, task_id: int, attempt_id: int) -> bool:
        """Whether another attempt of this task still runs."""
        params = {"task_id": task_id, "attempt_id": attempt_id}
        return self._value("others_running", params) is not None

    def ready_dependents(self, task_ids: list[int]) -> list[tuple[int, str]]:
        """One dependency fewer for each dependent; those left with none become ready."""
        if not task_ids:
            return []
        ids = {"ids": self.array(task_ids)}
        self._run("decrement_pending", ids)
        return [(int(r[0]), str(r[1])) for r in self._run("ready_dependents", ids).fetchall()]

    def count_unfinished(self, run_id: int, delta: int) -> int:
        """Add ``delta`` (``-n``: n tasks finished) to the run's count of unfinished tasks.

        The count now, exact when it is 0; otherwise a positive number (the
        count of the shard taken from): the run's whole count is read only
        when a shard of it came to 0.
        """
        if delta > 0:
            raise ValueError(f"a run's count of unfinished tasks only goes down, not by {delta}")
        params = {"id": run_id, "n": -delta, "prefer": self._parts.get(run_id, -1)}
        taken = self._run("take_unfinished", params).fetchone()
        if taken is None:
            # No shard has as many: take them off all shards, in order.
            self._run("lock_run_counts", params)
            self._run("spread_unfinished", params)
        else:
            # Later counts in this transaction take from the same shard (no second lock).
            self._parts[run_id] = int(taken[0])
            if taken[1] > 0:
                return int(taken[1])
        self._run("lock_run", params)
        return int(self._value("unfinished_total", params))

    def renew_leases(self, worker_id: int, attempt_ids: list[int], until: float) -> None:
        if attempt_ids:
            params = {"worker": worker_id, "ids": self.array(attempt_ids), "until": until}
            self._run("renew", params)

    def reclaim_orphans(self, worker_id: int, known: list[int], now: float) -> None:
        """End the leases of the worker's attempts it did not name (it never heard of them)."""
        self._run("reclaim", {"worker": worker_id, "ids": self.array(known), "now": now})

    def not_running(self, attempt_ids: list[int]) -> list[int]:
        if not attempt_ids:
            return []
        return [int(i) for i in self._column("not_running", {"ids": self.array(attempt_ids)})]

    def ready_candidates(
        self,
        worker: ActiveWorker,
        max_slots: int,
        limit: int,
        now: float,
        max_seconds: float | None = None,
    ) -> list[ReadyTask]:
        """Ready tasks this worker can take (its name, labels and slots, and, given
        ``max_seconds``, a timeout no longer than that), in claim order."""
        params = {
            "slots": max_slots,
            "name": worker.name,
            "labels": worker.labels_json or "{}",
            "limit": limit,
            "now": now,
            "max_seconds": max_seconds,
        }
        return self._rows("ready_candidates", ReadyTask, params)

    def lone_running_attempts(self, worker_id: int, assigned_before: float) -> list[ReadyTask]:
        """Speculative tasks with one attempt running, on another worker, assigned before a time."""
        params = {"worker": worker_id, "before": assigned_before}
        return self._rows("lone_running_attempts", ReadyTask, params)

    def group_durations(self, run_id: int, grp: str) -> list[float]:
        """How long the succeeded attempts of a run's matrix group took."""
        took = self._column("group_durations", {"run_id": run_id, "grp": grp})
        return [float(t) for t in took if t is not None]

    def start_attempts(
        self, attempts: list[NewAttempt], worker_id: int, now: float, lease_expires: float
    ) -> list[int]:
        """Start these tasks on the worker, one new attempt each; the attempts' ids."""
        self._many("start_task", [(worker_id, now, a.task_id) for a in attempts])
        return self._insert_attempts(attempts, worker_id, now, lease_expires)

    def _insert_attempts(
        self, attempts: list[NewAttempt], worker_id: int, now: float, lease_expires: float
    ) -> list[int]:
        shared = (worker_id, now, now, lease_expires)
        return [int(self._value("insert_attempt", (*a, *shared))) for a in attempts]

    def dep_outputs(self, task_ids: list[int]) -> list[DepOutputs]:
        return self._rows("dep_outputs", DepOutputs, {"ids": self.array(task_ids)})

    def any_ready(self) -> bool:
        return self._value("any_ready") is not None

    def add_events(self, events: list[Event]) -> None:
        if events:
            self._many("insert_event", events)  # an Event is the row itself

    def results_by_name(self, run_id: int, names: list[str]) -> dict[str, Any]:
        """The results of these tasks of the run that succeeded (None where they gave none)."""
        rows = self._run("results_by_name", {"run_id": run_id, "names": self.array(names)})
        return {name: decode(result) if has else None for name, has, result in rows.fetchall()}

    # -- submit --------------------------------------------------------------

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
        params = {
            "name": name,
            "submit_key": submit_key,
            "now": now,
            "env": encode(dict(env)),
            "setup": setup,
            "bundle": bundle,
            "source": source,
            "final": final,
            "total": total,
        }
        run_id = int(self._value("insert_run", params))
        parts = max(1, min(self.SHARDS, total // TASKS_PER_SHARD))
        self._run("insert_run_counts", {"id": run_id, "total": total, "parts": parts})
        return run_id

    def run_by_submit_key(self, key: str) -> int | None:
        """The run a submission with this idempotency key made, if one did."""
        found = self._value("run_by_submit_key", {"key": key})
        return int(found) if found is not None else None

    def succeeded_by_key(self, keys: list[str]) -> dict[str, CachedTask]:
        """The latest succeeded task for each definition key."""
        found: dict[str, CachedTask] = {}
        for start in range(0, len(keys), 500):
            chunk = {"keys": self.array(keys[start : start + 500])}
            for r in self._rows("succeeded_by_key", CachedTask, chunk):
                found[r.key] = r  # later rows win
        return found

    @staticmethod
    def task_values(run_id: int, t: NewTask) -> tuple[Any, ...]:
        """A new task as the bulk insert sends it (the columns of ``TASK_COLUMNS``)."""
        reuse = t.reuse
        return (
            run_id,
            *t[:15],  # name ... n_reducers, stored as they are
            encode(t.spec),
            encode(t.requires) if t.requires else None,
            encode(t.operands) if t.operands else None,
            t.source_run,
            t.exit_code,
            t.ended,
            *(
                _NOT_REUSED
                if reuse is None
                else (True, reuse.has_result, reuse.result_json, reuse.outputs_json)
            ),
            t.spec.get("timeout"),
        )

    def insert_tasks(self, run_id: int, tasks: list[NewTask]) -> None:
        """Store a run's tasks."""
        raise NotImplementedError

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        """Store (task_id, dep_id) pairs."""
        raise NotImplementedError

    def task_ids(self, run_id: int) -> dict[str, int]:
        rows = self._run("task_ids", {"run_id": run_id}).fetchall()
        return {str(name): int(i) for name, i in rows}

    def ready_roots(self, run_id: int) -> int:
        """Make the run's tasks with no dependency left to wait for ready; how many."""
        return self._affected("ready_roots", {"run_id": run_id})

    def notify_work(self, origin: str) -> None:
        """Tell other bosses that tasks became ready (on commit). SQLite has one boss."""

    # -- runs ----------------------------------------------------------------

    def run(self, run_id: int) -> RunRow | None:
        return self._row("run", RunRow, {"id": run_id})

    def runs_by_id(self, run_ids: Iterable[int]) -> dict[int, RunRow]:
        rows = self._rows("runs_by_id", RunRow, {"ids": self.array(list(run_ids))})
        return {r.id: r for r in rows}

    def running_runs(self) -> list[int]:
        return [int(i) for i in self._column("running_runs")]

    def set_run_state(self, run_id: int, state: str, now: float | None) -> None:
        self._run("set_run_state", {"id": run_id, "state": state, "now": now})

    def reset_unfinished(self, run_id: int) -> int:
        """Recount the run's unfinished tasks from the tasks themselves."""
        self._run("reset_unfinished", {"id": run_id})
        return int(self._value("unfinished_total", {"id": run_id}))

    def failed_count(self, run_id: int) -> int:
        """How many of the run's tasks did not succeed."""
        return int(self._value("failed_count", {"run_id": run_id}))

    # -- tasks ---------------------------------------------------------------

    def task(self, task_id: int) -> TaskRow | None:
        return self._row("task", TaskRow, {"id": task_id})

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
        """End a task: its state, result and outputs (``worker_id``: who ran it, if known)."""
        params = {
            "id": task_id,
            "state": state,
            "now": now,
            "exit_code": exit_code,
            "cause": cause,
            "has_result": has_result,
            "result": encode(result) if has_result else None,
            "outputs": encode(outputs or []),
            "worker_id": worker_id,
        }
        self._run("finish_task", params)

    def retry_task(
        self, task_id: int, failures: int, exit_code: int | None, cause: str | None, ready_at: float
    ) -> None:
        """A failed task runs again once ``ready_at`` has come."""
        params = {
            "id": task_id,
            "failures": failures,
            "exit_code": exit_code,
            "cause": cause,
            "ready_at": ready_at,
        }
        self._run("retry_task", params)

    def set_task_ready(self, task_id: int) -> None:
        self._run("set_task_ready", {"id": task_id})

    def fail_downstream(self, task_id: int, cause: str, now: float) -> list[tuple[int, int]]:
        """Mark every task that depends on this one, directly or not, upstream_failed.

        The id and run id of each task so marked (rowcount is not reliable
        for an UPDATE with a CTE).
        """
        rows = self._run("fail_downstream", {"id": task_id, "cause": cause, "now": now})
        return [(int(i), int(r)) for i, r in rows.fetchall()]

    def count_loss(self, task_id: int) -> int:
        """One more attempt of this task was lost; how many now."""
        return int(self._value("count_loss", {"id": task_id}))

    def reducers_of(self, task_ids: list[int]) -> list[Reducer]:
        """The waiting reductions that take any of these tasks as an operand."""
        return self._rows("reducers_of", Reducer, {"ids": self.array(task_ids)})

    def ready_reductions(self, run_id: int) -> list[int]:
        return [int(i) for i in self._column("ready_reductions", {"run_id": run_id})]

    def set_partial(self, task_id: int, partial: Any) -> None:
        """A reduction's value so far."""
        self._run("set_partial", {"id": task_id, "partial": encode(partial)})

    def cancel_tasks(self, run_id: int, now: float, cause: str = "cancelled") -> int:
        """Cancel the run's unfinished tasks; how many."""
        params = {"run_id": run_id, "now": now, "cause": cause}
        return self._affected("cancel_tasks", params)

    def cancel_attempts(self, run_id: int, now: float) -> int:
        return self._affected("cancel_attempts", {"run_id": run_id, "now": now})

    def interrupt_attempts(self, run_id: int, cause: str, now: float) -> None:
        self._run("interrupt_attempts", {"run_id": run_id, "cause": cause, "now": now})

    def cancel_task_attempts(self, task_id: int, now: float) -> None:
        """End the task's running attempts as cancelled (their workers are told to stop them)."""
        self._run("cancel_task_attempts", {"id": task_id, "now": now})

    def reset_task(self, task_id: int) -> list[int]:
        """Put one ended task, and what its end ended downstream, back to waiting (or ready)."""
        ids = [task_id, *(int(i) for i in self._column("ended_downstream", {"id": task_id}))]
        self._run("reset_tasks", {"ids": self.array(ids)})
        self._run("ready_reset", {"ids": self.array(ids)})
        return ids

    def reset_failed_tasks(self, run_id: int) -> list[int]:
        """Put the run's failed, upstream-failed and cancelled tasks back to waiting (or ready)."""
        ids = [int(i) for i in self._column("failed_tasks", {"run_id": run_id})]
        if ids:
            self._run("reset_tasks", {"ids": self.array(ids)})
            self._run("ready_reset", {"ids": self.array(ids)})
        return ids

    # -- leases --------------------------------------------------------------

    def mark_workers_lost(self, last_sync_before: float) -> None:
        self._run("mark_workers_lost", {"before": last_sync_before})

    def expired_attempts(self, now: float) -> list[ExpiredAttempt]:
        """Running attempts whose lease ran out, with their task and worker."""
        return self._rows("expired_attempts", ExpiredAttempt, {"now": now})

    def end_attempt(self, attempt_id: int, state: str, cause: str, now: float) -> None:
        self._run("end_attempt", {"id": attempt_id, "state": state, "cause": cause, "now": now})

    def end_worker_leases(self, worker_id: int, until: float) -> None:
        """The leases of a worker's running attempts end then (it is known gone)."""
        self._run("end_worker_leases", {"worker": worker_id, "until": until})

    def extend_leases(self, until: float) -> int:
        """Give every running attempt a lease until then; how many."""
        return self._affected("extend_leases", {"until": until})

    # -- workers -------------------------------------------------------------

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
        """A new worker, active from now; its id."""
        params = {
            "name": name,
            "host": host,
            "slots": slots,
            "labels": encode(dict(labels)),
            "now": now,
            "pid": pid,
            "python": python,
            "version": version,
        }
        return int(self._value("insert_worker", params))

    def set_worker_state(self, worker_id: int, state: str) -> None:
        self._run("set_worker_state", {"id": worker_id, "state": state})
