"""The state machine of runs, tasks and attempts, over the store.

Every public method is one transaction. The scheduler does no I/O of its own
(no network, no files, no clock but the one it is given), so the same code
serves the boss, the tests and any number of boss processes over one
database: the database is the only state.

Task: waiting -> ready -> running -> succeeded | failed | cancelled, or
upstream_failed when a dependency failed. Attempt: running -> succeeded |
failed | cancelled | interrupted | superseded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from shoal import protocol as p
from shoal.exceptions import NotFound, StoreConflict
from shoal.keys import definition_keys, topological
from shoal.placement import WorkerShape, has_labels
from shoal.reduce import ReduceError, combine
from shoal.spec import RunSpec
from shoal.store import Store, Tx
from shoal.views import DashboardViews, Unplaceable, Views, unplaceable

__all__ = ["Scheduler", "SyncOutcome", "describe_exit"]

MAX_RETRY_DELAY = 600.0

# promote(attempt_id, task's output prefix, output names) -> names not found.
Promote = Callable[[int, str, list[str]], list[str]]


@dataclass
class SyncOutcome:
    """What one sync did: the answer for the worker and whether work appeared."""

    response: p.SyncResponse
    made_ready: bool = False
    finished_runs: list[int] = field(default_factory=list)


@dataclass
class _RunInfo:
    name: str
    env: dict[str, str]
    bundle: str | None
    setup: str | None


@dataclass
class _Finished:
    """What the finished attempts of one sync change, written in few statements."""

    now: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    with_dependents: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    done_per_run: dict[int, int] = field(default_factory=dict)
    winners: list[tuple[int, int]] = field(default_factory=list)
    reducer_sources: list[int] = field(default_factory=list)  # succeeded operands of reductions
    reductions: list[int] = field(default_factory=list)  # reductions made ready
    succeeded: int = 0
    failed: int = 0
    readied: bool = False

    def write(self, tx: Tx) -> None:
        tx.finish_attempts(self.attempts)
        tx.succeed_tasks(self.tasks)
        for task_id, attempt_id in self.winners:
            tx.supersede_others(task_id, attempt_id, self.now)
        for task_id, kind in tx.ready_dependents(self.with_dependents):
            if kind == "reduce":
                self.reductions.append(task_id)
            else:
                self.readied = True


def describe_exit(exit_code: int | None) -> str:
    """A readable cause for a command's exit status (negative: killed by signal)."""
    if exit_code is None:
        return "no exit code"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}"


def _loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


_T = TypeVar("_T")
_P = ParamSpec("_P")
CONFLICT_TRIES = 8
_CHUNK = 10_000  # tasks stored per statement when a run is submitted


def _retried(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run the method again when its transaction collided with another boss's.

    PostgreSQL may end one of two transactions that wait on each other; it
    was rolled back whole, so running it again is safe.
    """

    @functools.wraps(method)
    def again(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        for attempt in range(CONFLICT_TRIES):
            try:
                return method(*args, **kwargs)
            except StoreConflict:
                if attempt == CONFLICT_TRIES - 1:
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    return again


class Scheduler(Views, DashboardViews):
    """Submit, assign, finish, cancel and retry, each in one transaction."""

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        max_losses: int = 3,
        speculate: bool = True,
        speculate_factor: float = 2.0,
        speculate_min: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        promote: Promote | None = None,
    ) -> None:
        self.store = store
        # Makes a winning attempt's staged outputs its task's outputs, in the
        # transaction that records the win (the boss gives its datastore's).
        self.promote: Promote = promote or (lambda attempt_id, prefix, names: [])
        self.lease_seconds = lease_seconds
        # Syncs renew leases: a few per lease, so one late sync loses nothing.
        self.heartbeat_seconds = heartbeat_seconds or max(0.2, min(5.0, lease_seconds / 4))
        self.max_losses = max_losses
        self.speculate = speculate
        self.speculate_factor = speculate_factor
        self.speculate_min = speculate_min
        self.clock = clock
        self.rng = rng or random.Random()
        self._runs: dict[int, _RunInfo] = {}
        # Set by a boss: its row in the bosses table, and the tag on its
        # work notices (so it does not wake itself twice).
        self.boss_id: int | None = None
        self.origin = ""

    # -- runs ------------------------------------------------------------

    @_retried
    def submit(
        self,
        spec: RunSpec,
        *,
        bundle: str | None = None,
        reuse: bool = False,
        key: str | None = None,
    ) -> int:
        """Store a whole run, its DAG in one transaction; its id.

        With ``reuse``, a task whose definition, bundle and dependencies are
        unchanged since it last succeeded in this database is not run again:
        it is stored as succeeded (``cached``), with that run's result and
        outputs. ``key`` makes a submission idempotent: the same key again
        (a client that never saw the answer sends it again) gives the run
        the first one made.
        """
        if key is not None:
            with self.store.read() as tx:
                made = tx.run_by_submit_key(key)
            if made is not None:
                return made
        now = self.clock()
        keys = definition_keys(spec, bundle)
        dependents: dict[str, int] = {}
        reducers: dict[str, int] = {}
        for t in spec.tasks:
            for d in t.after:
                dependents[d] = dependents.get(d, 0) + 1
            for o in t.reduce:
                reducers[o] = reducers.get(o, 0) + 1
        with self.store.transaction() as tx:
            earlier = tx.succeeded_by_key(list(keys.values())) if reuse else {}
            cached: dict[str, Any] = {}
            for t in topological(spec):
                prev = earlier.get(keys[t.name])
                if prev is not None and all(d in cached for d in t.after):
                    cached[t.name] = prev
            run_id = tx.insert_run(
                submit_key=key,
                name=spec.name,
                env=dict(spec.env),
                setup=spec.setup,
                bundle=bundle,
                source=spec.source,
                total=len(spec.tasks),
                now=now,
                final=spec.final,
            )
            # In chunks: the rows of a 100,000-task run never all exist at once.
            for start in range(0, len(spec.tasks), _CHUNK):
                chunk = spec.tasks[start : start + _CHUNK]
                rows = []
                for t in chunk:
                    row = {
                        "name": t.name,
                        "state": "waiting",
                        "spec": json.dumps(
                            {
                                "run": list(t.run),
                                "download": list(t.download),
                                "upload": list(t.upload),
                                "cleanup": list(t.cleanup),
                                "inputs": list(t.inputs),
                                "outputs": list(t.outputs),
                                "env": dict(t.env),
                                "timeout": t.timeout,
                            },
                            separators=(",", ":"),
                        ),
                        "priority": t.priority,
                        "slots": t.slots,
                        "host": t.host,
                        "requires": json.dumps(dict(t.requires)) if t.requires else None,
                        "retries": t.retries,
                        "retry_delay": t.retry_delay,
                        "speculative": t.speculative,
                        "grp": t.group or t.name,
                        "key": keys[t.name],
                        "pending": sum(1 for d in t.after if d not in cached),
                        "n_deps": len(t.after),
                        "n_dependents": dependents.get(t.name, 0),
                        "kind": "reduce" if t.reduce and not t.run else "command",
                        "operands": json.dumps(list(t.reduce)) if t.reduce else None,
                        "n_reducers": reducers.get(t.name, 0),
                        "cached": False,
                        "has_result": False,
                        "result": None,
                        "outputs": None,
                        "source_run": None,
                        "exit_code": None,
                        "ended": None,
                    }
                    prev = cached.get(t.name)
                    if prev is not None:
                        row.update(
                            state="succeeded",
                            cached=True,
                            has_result=prev.has_result,
                            result=prev.result,
                            outputs=prev.outputs,
                            source_run=prev.source_run or prev.run_id,
                            exit_code=prev.exit_code,
                            ended=now,
                        )
                    rows.append(row)
                tx.insert_tasks(run_id, rows)
            if any(t.after for t in spec.tasks):
                ids = tx.task_ids(run_id)
                tx.insert_deps([(ids[t.name], ids[d]) for t in spec.tasks for d in t.after])
            if tx.ready_roots(run_id):
                tx.notify_work(self.origin)
            events = [{"time": now, "kind": "run_submitted", "run_id": run_id, "detail": spec.name}]
            if cached:
                events.append(
                    {
                        "time": now,
                        "kind": "tasks_cached",
                        "run_id": run_id,
                        "detail": f"{len(cached)} tasks",
                    }
                )
            tx.add_events(events)
            if cached:
                self._count_done(tx, run_id, len(cached), now)
            ready = tx.ready_reductions(run_id)
            if ready:
                done_events: list[dict[str, Any]] = []
                self._reduce(tx, ready, now, done_events, None)
                tx.add_events(done_events)
        if len(spec.tasks) >= _CHUNK:
            self.store.refresh_statistics()
        return run_id

    @_retried
    def cancel(self, run_id: int) -> int:
        """Cancel every unfinished task of the run; how many were cancelled."""
        now = self.clock()
        with self.store.transaction() as tx:
            run = tx.run(run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            n = tx.cancel_tasks(run_id, now)
            tx.cancel_attempts(run_id, now)
            if run.state == "running":
                tx.count_unfinished(run_id, -n)
                tx.set_run_state(run_id, "cancelled", now)
            tx.add_events(
                [{"time": now, "kind": "run_cancelled", "run_id": run_id, "detail": f"{n} tasks"}]
            )
        return n

    @_retried
    def retry(self, run_id: int) -> int:
        """Run the run's failed, upstream-failed and cancelled tasks again."""
        now = self.clock()
        with self.store.transaction() as tx:
            if tx.run(run_id) is None:
                raise NotFound(f"no run {run_id}")
            ids = tx.reset_failed_tasks(run_id)
            if ids:
                tx.notify_work(self.origin)
                tx.reset_unfinished(run_id)
                tx.set_run_state(run_id, "running", None)
                tx.add_events(
                    [
                        {
                            "time": now,
                            "kind": "run_retried",
                            "run_id": run_id,
                            "detail": f"{len(ids)} tasks",
                        }
                    ]
                )
        return len(ids)

    @_retried
    def fail_unplaceable(self, run_id: int, workers: Sequence[WorkerShape]) -> list[Unplaceable]:
        """Fail the run's ready tasks that none of ``workers`` can ever take, with why.

        For a run whose workers are all known (``shoal run``): the tasks
        would wait forever. Answers what was failed (every name), by need.
        """
        with self.store.read() as tx:  # the usual answer, nothing: no write lock taken
            if not unplaceable(tx, run_id, workers, names=0):
                return []
        now = self.clock()
        with self.store.transaction() as tx:
            found = unplaceable(tx, run_id, workers, names=None)
            events: list[dict[str, Any]] = []
            for need in found:
                for r in tx.ready_of_shape(run_id, need.slots, need.host, need.requires, None):
                    tx.finish_task(r.id, state="failed", now=now, cause=need.reason)
                    n = tx.fail_downstream(r.id, f"upstream {r.name} failed", now)
                    events.append(
                        {
                            "time": now,
                            "kind": "task_failed",
                            "run_id": run_id,
                            "task_id": r.id,
                            "detail": need.reason,
                        }
                    )
                    self._count_done(tx, run_id, 1 + n, now, None, events)
            tx.add_events(events)
        return found

    @_retried
    def abandon_running(self, cause: str) -> list[int]:
        """End every run still running: its boss and workers are gone (``shoal run`` restarts)."""
        now = self.clock()
        with self.store.transaction() as tx:
            ids = tx.running_runs()
            for run_id in ids:
                tx.interrupt_attempts(run_id, cause, now)
                n = tx.cancel_tasks(run_id, now, cause=cause)
                tx.count_unfinished(run_id, -n)
                tx.set_run_state(run_id, "cancelled", now)
                tx.add_events(
                    [{"time": now, "kind": "run_abandoned", "run_id": run_id, "detail": cause}]
                )
        return ids

    # -- leases ----------------------------------------------------------

    @_retried
    def extend_leases(self) -> int:
        """Give every running attempt a whole lease from now (a restarted boss does this)."""
        with self.store.transaction() as tx:
            return tx.extend_leases(self.clock() + self.lease_seconds)

    @_retried
    def expire(self) -> bool:
        """End the attempts whose lease ran out; True if tasks became ready again.

        A lost attempt's task runs again, unless another attempt of it still
        runs; after ``max_losses`` losses it fails with the cause ``lost``.
        Workers not heard from for a lease are marked lost.
        """
        now = self.clock()
        readied = False
        with self.store.transaction() as tx:
            tx.mark_workers_lost(now - self.lease_seconds)
            expired = tx.expired_attempts(now)
            events: list[dict[str, Any]] = []
            for a in expired:
                silent = now - a.last_sync if a.last_sync is not None else self.lease_seconds
                cause = f"lost: no sync for {silent:.0f}s from worker {a.worker_name}"
                if silent < self.lease_seconds:
                    cause = f"lost: its assignment never reached worker {a.worker_name}"
                tx.end_attempt(a.id, "lost", cause, now)
                base = {
                    "time": now,
                    "run_id": a.run_id,
                    "task_id": a.task_id,
                    "attempt_id": a.id,
                    "worker_id": a.worker_id,
                }
                events.append({**base, "kind": "attempt_lost", "detail": cause})
                if a.task_state != "running" or tx.others_running(a.task_id, a.id):
                    continue
                losses = tx.count_loss(a.task_id)
                if losses < self.max_losses:
                    tx.set_task_ready(a.task_id)
                    readied = True
                    continue
                tx.finish_task(
                    a.task_id, state="failed", now=now, cause=f"{cause} ({losses} attempts lost)"
                )
                n = tx.fail_downstream(a.task_id, f"upstream {a.task_name} failed", now)
                events.append({**base, "kind": "task_failed", "detail": cause})
                self._count_done(tx, a.run_id, 1 + n, now, None, events)
            tx.add_events(events)
            if not readied:
                readied = tx.any_ready()
            if readied:
                tx.notify_work(self.origin)
        return readied

    # -- workers ---------------------------------------------------------

    @_retried
    def register(self, reg: p.Registration) -> p.Registered:
        now = self.clock()
        with self.store.transaction() as tx:
            worker_id = tx.insert_worker(
                name=reg.name,
                host=reg.host,
                slots=max(1, int(reg.slots)),
                labels=reg.labels,
                state="active",
                registered=now,
                last_sync=now,
                pid=reg.pid,
                python=reg.python,
                version=reg.version,
            )
            tx.add_events(
                [
                    {
                        "time": now,
                        "kind": "worker_registered",
                        "worker_id": worker_id,
                        "detail": reg.name,
                    }
                ]
            )
        return p.Registered(
            worker_id=worker_id,
            lease_seconds=self.lease_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
        )

    @_retried
    def worker_stopped(self, worker_id: int, reason: str = "") -> None:
        """A worker said goodbye (and maybe why); what it still held runs again elsewhere."""
        now = self.clock()
        event: dict[str, Any] = {"time": now, "kind": "worker_stopped", "worker_id": worker_id}
        if reason:
            event["detail"] = reason
        with self.store.transaction() as tx:
            tx.set_worker_state(worker_id, "stopped")
            tx.add_events([event])

    @_retried
    def note(self, kind: str, detail: str, **ids: int | None) -> None:
        """Record an event the boss saw (a log it could not store, say) for the user to read."""
        with self.store.transaction() as tx:
            tx.add_events([{"time": self.clock(), "kind": kind, "detail": detail, **ids}])

    @_retried
    def sync(self, req: p.SyncRequest) -> SyncOutcome:
        """One worker round trip: record what finished, renew, hand out work."""
        now = self.clock()
        out = SyncOutcome(p.SyncResponse())
        with self.store.transaction() as tx:
            batch = _Finished(now)
            if req.finished:
                known = tx.attempts_with_tasks([r.attempt_id for r in req.finished])
                for report in req.finished:
                    self._finish(tx, req.worker_id, known.get(report.attempt_id), report, batch)
            worker = tx.touch_worker(
                req.worker_id, now, batch.succeeded, batch.failed, self.boss_id
            )
            if worker is None:
                raise NotFound(f"no active worker {req.worker_id}: register again")
            batch.write(tx)
            if batch.readied:
                out.made_ready = True
            tx.renew_leases(worker.id, req.running, now + self.lease_seconds)
            tx.reclaim_orphans(worker.id, req.running + [r.attempt_id for r in req.finished], now)
            out.response.cancel = tx.not_running(req.running)
            if req.free_slots > 0:
                out.response.assignments = self._assign(
                    tx, worker, req.free_slots, now, batch.events
                )
            # Last, the rows every sync of a run writes (its count of unfinished
            # tasks, a reduction's value so far): their locks are held from
            # here to the commit only, so that syncs through other bosses or
            # threads wait on each other as little as they can.
            if batch.reducer_sources:
                self._update_partials(tx, batch.reducer_sources)
            if batch.reductions and self._reduce(tx, batch.reductions, now, batch.events, out):
                out.made_ready = True
            for run_id, n in sorted(batch.done_per_run.items()):
                self._count_done(tx, run_id, n, now, out, batch.events)
            if out.made_ready and out.response.assignments:
                # Wake idle workers only for what this one did not take.
                out.made_ready = tx.any_ready()
            if out.made_ready:
                tx.notify_work(self.origin)
            tx.add_events(batch.events)
        return out

    def _finish(self, tx: Tx, worker_id: int, row: Any, r: p.Report, batch: _Finished) -> None:
        """Record one finished attempt in the batch (failures are written at once)."""
        now = batch.now
        base = {"time": now, "attempt_id": r.attempt_id, "worker_id": worker_id}
        if row is None or row.worker_id != worker_id or row.state != "running":
            # Fenced: this attempt was already ended by the boss (cancelled,
            # lost, superseded); what its worker says now is dropped.
            if row is not None:
                base.update(run_id=row.run_id, task_id=row.task_id)
            detail = (
                f"{r.outcome} after the attempt was {row.state if row is not None else 'unknown'}"
            )
            batch.events.append({**base, "kind": "report_dropped", "detail": detail})
            return
        log = (
            p.log_path(row.run_id, row.task_name, r.attempt_id)
            if (r.log or r.log_uploaded)
            else None
        )
        base.update(run_id=row.run_id, task_id=row.task_id)
        attempt = {
            "b_id": r.attempt_id,
            "b_exit_code": r.exit_code,
            "b_started": r.started,
            "b_ended": r.ended,
            "b_log": log,
        }
        if row.task_state != "running":
            batch.attempts.append({**attempt, "b_state": "superseded", "b_cause": "superseded"})
            batch.events.append({**base, "kind": "attempt_superseded"})
            return
        if r.outcome == p.SUCCEEDED and r.outputs:
            # This report wins the task: only now do its outputs become visible.
            missing = self.promote(
                r.attempt_id, p.output_prefix(row.run_id, row.task_name), r.outputs
            )
            if missing:
                cause = f"output '{missing[0]}' never reached the boss"
                r = replace(r, outcome=p.FAILED, cause=cause, outputs=[])
        if r.outcome == p.SUCCEEDED:
            batch.attempts.append({**attempt, "b_state": "succeeded", "b_cause": None})
            batch.tasks.append(
                {
                    "b_id": row.task_id,
                    "b_now": now,
                    "b_exit_code": r.exit_code,
                    "b_has_result": r.result is not None,
                    "b_result": json.dumps(r.result) if r.result is not None else None,
                    "b_outputs": json.dumps(r.outputs),
                    "b_worker": worker_id,
                }
            )
            if row.n_dependents:
                batch.with_dependents.append(row.task_id)
            if row.n_reducers:
                batch.reducer_sources.append(row.task_id)
            if row.task_attempts > 1:
                # A backup or an earlier attempt may still run: it lost the race.
                batch.winners.append((row.task_id, r.attempt_id))
            batch.events.append({**base, "kind": "task_succeeded"})
            batch.done_per_run[row.run_id] = batch.done_per_run.get(row.run_id, 0) + 1
            batch.succeeded += 1
            return
        cause = r.cause or describe_exit(r.exit_code)
        outcome = r.outcome if r.outcome in (p.FAILED, p.INTERRUPTED) else p.INTERRUPTED
        batch.attempts.append({**attempt, "b_state": outcome, "b_cause": cause})
        if row.task_attempts > 1 and tx.others_running(row.task_id, r.attempt_id):
            # Another attempt of this task still runs: the task waits for it.
            batch.events.append({**base, "kind": f"attempt_{outcome}", "detail": cause})
            return
        if outcome == p.INTERRUPTED:
            # The worker was stopped, not the command: run it again elsewhere.
            tx.set_task_ready(row.task_id)
            batch.readied = True
            batch.events.append({**base, "kind": "attempt_interrupted", "detail": cause})
            return
        batch.failed += 1
        failures = row.failures + 1
        if failures <= row.retries:
            tx.retry_task(
                row.task_id, failures, r.exit_code, cause, now + self._backoff(row, failures)
            )
            batch.readied = True
            batch.events.append({**base, "kind": "task_retried", "detail": cause})
            return
        tx.finish_task(
            row.task_id,
            state="failed",
            now=now,
            exit_code=r.exit_code,
            cause=cause,
            result=r.result,
            has_result=r.result is not None,
            outputs=r.outputs,
            worker_id=worker_id,
        )
        n = tx.fail_downstream(row.task_id, f"upstream {row.task_name} failed", now)
        batch.events.append({**base, "kind": "task_failed", "detail": cause})
        batch.done_per_run[row.run_id] = batch.done_per_run.get(row.run_id, 0) + 1 + n

    def _update_partials(self, tx: Tx, sources: list[int]) -> None:
        """Reductions show their value so far as their operands finish."""
        for r in tx.reducers_of(sources):
            operands = json.loads(r.operands)
            results = tx.results_by_name(r.run_id, operands)
            present = [(n, results[n]) for n in operands if n in results]
            # A mix of kinds is reported when the reduction completes.
            with contextlib.suppress(ReduceError):
                tx.set_partial(r.id, combine(present))

    def _reduce(
        self,
        tx: Tx,
        task_ids: list[int],
        now: float,
        events: list[dict[str, Any]],
        out: SyncOutcome | None,
    ) -> bool:
        """Compute reductions whose operands are all done; True if commands became ready."""
        readied = False
        todo = list(task_ids)
        while todo:
            row = tx.task(todo.pop())
            if row is None or row.state != "ready":
                continue
            operands = json.loads(row.operands)
            results = tx.results_by_name(row.run_id, operands)
            base = {"time": now, "run_id": row.run_id, "task_id": row.id}
            try:
                value = combine([(n, results.get(n)) for n in operands])
            except ReduceError as e:
                tx.finish_task(row.id, state="failed", now=now, cause=f"reduction failed: {e}")
                n = tx.fail_downstream(row.id, f"upstream {row.name} failed", now)
                events.append({**base, "kind": "task_failed", "detail": str(e)})
                self._count_done(tx, row.run_id, 1 + n, now, out, events)
                continue
            tx.finish_task(
                row.id, state="succeeded", now=now, exit_code=0, result=value, has_result=True
            )
            events.append({**base, "kind": "task_succeeded", "detail": "reduced by the boss"})
            for task_id, kind in tx.ready_dependents([row.id]):
                if kind == "reduce":
                    todo.append(task_id)
                else:
                    readied = True
            self._count_done(tx, row.run_id, 1, now, out, events)
        return readied

    def _backoff(self, row: Any, failures: int) -> float:
        """Seconds before a failed task runs again: exponential, with jitter."""
        base = float(row.retry_delay or 0.0)
        if base <= 0:
            return 0.0
        return float(min(MAX_RETRY_DELAY, base * 2 ** (failures - 1)) * self.rng.uniform(0.5, 1.5))

    def _count_done(
        self,
        tx: Tx,
        run_id: int,
        n: int,
        now: float,
        out: SyncOutcome | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        if tx.count_unfinished(run_id, -n) > 0:
            return
        run = tx.run(run_id)
        if run is None or run.state != "running":
            return
        state = "failed" if tx.failed_count(run_id) else "succeeded"
        tx.set_run_state(run_id, state, now)
        event = {"time": now, "kind": f"run_{state}", "run_id": run_id}
        if events is not None:
            events.append(event)  # after the events of the tasks that ended it
        else:
            tx.add_events([event])
        if out is not None:
            out.finished_runs.append(run_id)

    def _run_info(self, tx: Tx, run_ids: set[int]) -> dict[int, _RunInfo]:
        # A run's name, env, bundle and setup never change: read them once.
        missing = [r for r in run_ids if r not in self._runs]
        if missing:
            for run in tx.runs_by_id(missing).values():
                self._runs[run.id] = _RunInfo(run.name, _loads(run.env, {}), run.bundle, run.setup)
        return {r: self._runs[r] for r in run_ids}

    def _assign(
        self, tx: Tx, worker: Any, free: int, now: float, events: list[dict[str, Any]]
    ) -> list[p.Assignment]:
        picked = []
        # Only tasks this worker can take (slots, host, labels): however many others wait.
        candidates = tx.ready_candidates(
            worker.name, worker.labels, min(free, worker.slots), free * 2 + 8, now
        )
        if not candidates and self.speculate:
            candidates = self._stragglers(tx, worker, now)
        for row in candidates:
            if row.slots > free:
                continue
            picked.append(row)
            free -= row.slots
            if free <= 0:
                break
        if not picked:
            return []
        ids = [r.id for r in picked]
        tx.start_tasks(ids, worker.id, now)
        attempt_ids = tx.insert_attempts(
            [
                {
                    "task_id": r.id,
                    "run_id": r.run_id,
                    "number": r.attempts + 1,
                    "worker_id": worker.id,
                    "state": "running",
                    "assigned": now,
                    "started": now,
                    "lease_expires": now + self.lease_seconds,
                }
                for r in picked
            ]
        )
        fetches: dict[int, list[p.Fetch]] = {}
        with_deps = [r.id for r in picked if r.n_deps]
        if with_deps:
            for d in tx.dep_outputs(with_deps):
                for name in _loads(d.outputs, []):
                    fetches.setdefault(d.task_id, []).append(
                        p.Fetch(
                            path=p.output_prefix(d.run_id, d.name) + name,
                            dest=f"inputs/{d.name}/{name}",
                        )
                    )
        runs = self._run_info(tx, {r.run_id for r in picked})
        stdin: dict[int, str] = {}
        for r in picked:
            if r.operands:
                # A reducer command reads its operands' results as JSON on stdin.
                names = json.loads(r.operands)
                results = tx.results_by_name(r.run_id, names)
                stdin[r.id] = json.dumps({n: results.get(n) for n in names})
        out = []
        for r, attempt_id in zip(picked, attempt_ids, strict=True):
            spec = json.loads(r.spec)
            run = runs[r.run_id]
            env = dict(run.env)
            env.update(spec["env"])
            fetch = [p.Fetch(path=i, dest=i) for i in spec["inputs"]] + fetches.get(r.id, [])
            out.append(
                p.Assignment(
                    attempt_id=attempt_id,
                    run_id=r.run_id,
                    run=run.name,
                    task=r.name,
                    number=r.attempts + 1,
                    slots=r.slots,
                    run_cmds=spec["run"],
                    download=spec["download"],
                    upload=spec["upload"],
                    cleanup=spec["cleanup"],
                    env=env,
                    timeout=spec["timeout"],
                    outputs=spec["outputs"],
                    fetch=fetch,
                    bundle=run.bundle,
                    setup=run.setup,
                    stdin=stdin.get(r.id),
                )
            )
            events.append(
                {
                    "time": now,
                    "kind": "attempt_started"
                    if r.attempts == 0 or not getattr(r, "backup", False)
                    else "attempt_backup",
                    "run_id": r.run_id,
                    "task_id": r.id,
                    "attempt_id": attempt_id,
                    "worker_id": worker.id,
                }
            )
        return out

    def _stragglers(self, tx: Tx, worker: Any, now: float) -> list[Any]:
        """Tasks worth a backup attempt on this idle worker (at most one).

        A task qualifies when its only attempt, on another worker, has run
        longer than ``speculate_factor`` times the median duration of the
        finished tasks of its run and matrix group, and longer than
        ``speculate_min`` seconds.
        """
        running = tx.lone_running_attempts(worker.id, now - self.speculate_min)
        medians: dict[tuple[int, str], float | None] = {}
        labels = _loads(worker.labels, {})
        for r in running:
            if r.slots > worker.slots or (r.host is not None and r.host != worker.name):
                continue
            if r.requires and not has_labels(_loads(r.requires, {}), labels):
                continue
            group = (r.run_id, r.grp)
            if group not in medians:
                durations = sorted(tx.group_durations(r.run_id, r.grp))
                medians[group] = durations[len(durations) // 2] if len(durations) >= 2 else None
            median = medians[group]
            if median is not None and now - r.assigned > self.speculate_factor * median:
                return [r]
        return []
