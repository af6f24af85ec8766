"""A worker's sync: record what finished, renew its leases, hand out work.

One transaction per sync (on PostgreSQL, most syncs are one statement: a
server-side function that does all of the below, see
:mod:`shoal.store.sql.routines`). The reports are recorded first: the first report
of a task wins it (its outputs are promoted then), a late or fenced one is
dropped, a failure is retried with back-off or fails its task and what is
downstream. Then the worker's leases are renewed, the attempts it no longer
holds are named for it to stop, and it is given as many ready tasks as it
has free slots, or, when none is ready, a backup of a straggler.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from shoal import protocol as p
from shoal.datastore.layout import LOGS
from shoal.exceptions import NotFound
from shoal.scheduler import leases, reductions, runs
from shoal.store.contract import DecisionTx
from shoal.store.rows import (
    ActiveWorker,
    AttemptEnd,
    DepOutputs,
    Event,
    NewAttempt,
    ReadyTask,
    ReportedAttempt,
    Success,
    SyncCall,
    SyncDone,
    TaskWin,
)

if TYPE_CHECKING:
    from shoal.scheduler.core import Scheduler

__all__ = ["MAX_RETRY_DELAY", "RunInfo", "SyncOutcome", "backoff", "describe_exit", "sync"]

MAX_RETRY_DELAY = 600.0


@dataclass
class SyncOutcome:
    """What one sync did: the answer for the worker and whether work appeared."""

    response: p.SyncResponse
    made_ready: bool = False
    finished_runs: list[int] = field(default_factory=list)


@dataclass
class RunInfo:
    """What every assignment of a run carries (it never changes)."""

    name: str
    env: dict[str, str]
    bundle: str | None
    setup: str | None


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


@dataclass
class _Finished:
    """What the finished attempts of one sync change, written in few statements."""

    now: float
    ends: list[AttemptEnd] = field(default_factory=list)
    wins: list[TaskWin] = field(default_factory=list)
    with_dependents: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    done_per_run: dict[int, int] = field(default_factory=dict)
    winners: list[tuple[int, int]] = field(default_factory=list)
    reducer_sources: list[int] = field(default_factory=list)  # succeeded operands of reductions
    reductions: list[int] = field(default_factory=list)  # reductions made ready
    succeeded: int = 0
    failed: int = 0
    readied: bool = False

    def write(self, tx: DecisionTx) -> None:
        tx.finish_attempts(self.ends)
        tx.succeed_tasks(self.wins)
        for task_id, attempt_id in self.winners:
            tx.supersede_others(task_id, attempt_id, self.now)
        for task_id, kind in tx.ready_dependents(self.with_dependents):
            if kind == "reduce":
                self.reductions.append(task_id)
            else:
                self.readied = True

    def done(self, run_id: int, n: int) -> None:
        self.done_per_run[run_id] = self.done_per_run.get(run_id, 0) + n


def sync(s: Scheduler, req: p.SyncRequest) -> SyncOutcome:
    """One worker round trip: record what finished, renew, hand out work."""
    now = s.clock()
    out = SyncOutcome(p.SyncResponse())
    call = _one_statement(s, req, now) if s.store.syncs_in_one else None
    if call is not None:
        with s.store.transaction() as tx:
            done = tx.sync_in_one(call)
            if done is not None:
                _answer(s, tx, req, done, out, now)
                return out
    with s.store.batch() as tx:
        batch = _Finished(now)
        if req.finished:
            known = tx.attempts_with_tasks([r.attempt_id for r in req.finished])
            for report in req.finished:
                _finish(s, tx, req.worker_id, known.get(report.attempt_id), report, batch)
        worker = tx.touch_worker(req.worker_id, now, batch.succeeded, batch.failed, s.boss_id)
        if worker is None:
            raise NotFound(f"no active worker {req.worker_id}: register again")
        batch.write(tx)
        if batch.readied:
            out.made_ready = True
        tx.renew_leases(worker.id, req.running, now + s.lease_seconds)
        tx.reclaim_orphans(worker.id, req.running + [r.attempt_id for r in req.finished], now)
        out.response.cancel = tx.not_running(req.running)
        if req.free_slots > 0:
            out.response.assignments = _assign(
                s, tx, worker, req.free_slots, now, batch.events, req.max_seconds
            )
        # Last, the rows every sync of a run writes (its count of unfinished
        # tasks, a reduction's value so far): their locks are held from
        # here to the commit only, so that syncs through other bosses or
        # threads wait on each other as little as they can.
        if batch.reducer_sources:
            reductions.update_partials(tx, batch.reducer_sources)
        if batch.reductions and reductions.reduce(
            tx, batch.reductions, now, batch.events, out.finished_runs
        ):
            out.made_ready = True
        for run_id, n in sorted(batch.done_per_run.items()):
            runs.count_done(tx, run_id, n, now, batch.events, out.finished_runs)
        if out.made_ready and out.response.assignments:
            # Wake idle workers only for what this one did not take.
            out.made_ready = tx.any_ready()
        if out.made_ready:
            tx.notify_work(s.origin)
        tx.add_events(batch.events)
    return out


def _one_statement(s: Scheduler, req: p.SyncRequest, now: float) -> SyncCall | None:
    """The sync as the store may do it in one statement: reports that all
    succeeded with no outputs to promote (most syncs); None for any other."""
    if any(r.outcome != p.SUCCEEDED or r.outputs for r in req.finished):
        return None
    successes = [
        Success(
            r.attempt_id, r.exit_code, r.started, r.ended, bool(r.log or r.log_uploaded), r.result
        )
        for r in req.finished
    ]
    return SyncCall(
        worker_id=req.worker_id,
        boss=s.boss_id,
        now=now,
        lease_expires=now + s.lease_seconds,
        successes=successes,
        running=list(req.running),
        free_slots=req.free_slots,
        max_seconds=req.max_seconds,
        origin=s.origin,
        logs=LOGS,
    )


def _answer(
    s: Scheduler, tx: DecisionTx, req: p.SyncRequest, done: SyncDone, out: SyncOutcome, now: float
) -> None:
    """The worker's answer from a sync the store did in one statement (committed).

    What that statement left to the boss: the runs' fixed parts the boss has
    not cached, a reducer command's operands, and, when no task was ready
    for the worker, a straggler's backup (in this transaction, a second one).
    """
    worker = done.worker
    if worker is None:
        raise NotFound(f"no active worker {req.worker_id}: register again")
    out.made_ready = done.made_ready
    out.finished_runs = list(done.ended_runs)
    out.response.cancel = done.cancel
    if done.started:
        attempt_ids = [a for a, _ in done.started]
        picked = [t for _, t in done.started]
        out.response.assignments = _hand_out(
            s, tx, worker, picked, attempt_ids, done.dep_outputs, now, []
        )
    elif done.idle and req.free_slots > 0 and s.speculate:
        events: list[Event] = []
        backups = _pick(leases.stragglers(s, tx, worker, now, req.max_seconds), req.free_slots)
        out.response.assignments = _start(s, tx, worker, backups, now, events)
        tx.add_events(events)


def backoff(s: Scheduler, retry_delay: float, failures: int) -> float:
    """Seconds before a failed task runs again: exponential, with jitter."""
    base = float(retry_delay or 0.0)
    if base <= 0:
        return 0.0
    return float(min(MAX_RETRY_DELAY, base * 2 ** (failures - 1)) * s.rng.uniform(0.5, 1.5))


def _finish(
    s: Scheduler,
    tx: DecisionTx,
    worker_id: int,
    row: ReportedAttempt | None,
    r: p.Report,
    batch: _Finished,
) -> None:
    """Record one finished attempt in the batch (failures are written at once)."""
    now = batch.now
    if row is None or row.worker_id != worker_id or row.state != "running":
        # Fenced: this attempt was already ended by the boss (cancelled,
        # lost, superseded); what its worker says now is dropped.
        state = row.state if row is not None else "unknown"
        run_id, task_id = (row.run_id, row.task_id) if row is not None else (None, None)
        detail = f"{r.outcome} after the attempt was {state}"
        batch.events.append(
            Event(now, "report_dropped", run_id, task_id, r.attempt_id, worker_id, detail)
        )
        return
    log = p.log_path(row.run_id, row.task_name, r.attempt_id) if (r.log or r.log_uploaded) else None

    def event(kind: str, detail: str | None = None) -> Event:
        return Event(now, kind, row.run_id, row.task_id, r.attempt_id, worker_id, detail)

    def end(state: str, cause: str | None) -> AttemptEnd:
        return AttemptEnd(r.attempt_id, state, cause, r.exit_code, r.started, r.ended, log)

    if row.task_state != "running":
        batch.ends.append(end("superseded", "superseded"))
        batch.events.append(event("attempt_superseded"))
        return
    if r.outcome == p.SUCCEEDED and r.outputs:
        # This report wins the task: only now do its outputs become visible.
        missing = s.promote(r.attempt_id, p.output_prefix(row.run_id, row.task_name), r.outputs)
        if missing:
            cause = f"output '{missing[0]}' never reached the boss"
            r = replace(r, outcome=p.FAILED, cause=cause, outputs=[])
    if r.outcome == p.SUCCEEDED:
        batch.ends.append(end("succeeded", None))
        has_result = r.result is not None
        batch.wins.append(
            TaskWin(row.task_id, now, r.exit_code, has_result, r.result, r.outputs, worker_id)
        )
        if row.n_dependents:
            batch.with_dependents.append(row.task_id)
        if row.n_reducers:
            batch.reducer_sources.append(row.task_id)
        if row.task_attempts > 1:
            # A backup or an earlier attempt may still run: it lost the race.
            batch.winners.append((row.task_id, r.attempt_id))
        batch.events.append(event("task_succeeded"))
        batch.done(row.run_id, 1)
        batch.succeeded += 1
        return
    cause = r.cause or describe_exit(r.exit_code)
    outcome = r.outcome if r.outcome in (p.FAILED, p.INTERRUPTED) else p.INTERRUPTED
    batch.ends.append(end(outcome, cause))
    # What it failed downstream (upstream_failed) is told after it.
    downstream: list[Event] = []
    kind = _failed(s, tx, worker_id, row, r, outcome, cause, batch, downstream)
    batch.events.append(event(kind, cause))
    batch.events += downstream


def _failed(
    s: Scheduler,
    tx: DecisionTx,
    worker_id: int,
    row: ReportedAttempt,
    r: p.Report,
    outcome: str,
    cause: str,
    batch: _Finished,
    downstream: list[Event],
) -> str:
    """What an attempt that did not succeed does to its task; the kind of event it is."""
    if row.task_attempts > 1 and tx.others_running(row.task_id, r.attempt_id):
        # Another attempt of this task still runs: the task waits for it.
        return f"attempt_{outcome}"
    if outcome == p.INTERRUPTED:
        # The worker was stopped, not the command: run it again elsewhere.
        tx.set_task_ready(row.task_id)
        batch.readied = True
        return "attempt_interrupted"
    batch.failed += 1
    failures = row.failures + 1
    if failures <= row.retries:
        ready_at = batch.now + backoff(s, row.retry_delay, failures)
        tx.retry_task(row.task_id, failures, r.exit_code, cause, ready_at)
        batch.readied = True
        return "task_retried"
    ended = runs.fail_task(
        tx,
        row.task_id,
        row.task_name,
        batch.now,
        cause,
        exit_code=r.exit_code,
        result=r.result,
        outputs=r.outputs,
        worker_id=worker_id,
        events=downstream,
    )
    batch.done(row.run_id, ended)
    return "task_failed"


def _run_info(s: Scheduler, tx: DecisionTx, run_ids: set[int]) -> dict[int, RunInfo]:
    missing = [r for r in run_ids if r not in s.run_info]
    if missing:
        for run in tx.runs_by_id(missing).values():
            s.run_info[run.id] = RunInfo(run.name, run.env, run.bundle, run.setup)
    return {r: s.run_info[r] for r in run_ids}


def _assign(
    s: Scheduler,
    tx: DecisionTx,
    worker: ActiveWorker,
    free: int,
    now: float,
    events: list[Event],
    max_seconds: float | None = None,
) -> list[p.Assignment]:
    """Hand the worker ready tasks that fit its free slots, or one straggler's backup.

    ``max_seconds``: the longest a task may take on this worker (its time runs
    out); a task whose timeout is longer is left to others.
    """
    # Only tasks this worker can take (slots, host, labels, time): however many others wait.
    candidates = tx.ready_candidates(
        worker, min(free, worker.slots), free * 2 + 8, now, max_seconds
    )
    if not candidates and s.speculate:
        candidates = leases.stragglers(s, tx, worker, now, max_seconds)
    return _start(s, tx, worker, _pick(candidates, free), now, events)


def _pick(candidates: list[ReadyTask], free: int) -> list[ReadyTask]:
    """The candidates that fit the worker's free slots, in their order."""
    picked: list[ReadyTask] = []
    for row in candidates:
        if row.slots > free:
            continue
        picked.append(row)
        free -= row.slots
        if free <= 0:
            break
    return picked


def _start(
    s: Scheduler,
    tx: DecisionTx,
    worker: ActiveWorker,
    picked: list[ReadyTask],
    now: float,
    events: list[Event],
) -> list[p.Assignment]:
    """Start the picked tasks on the worker; their assignments."""
    if not picked:
        return []
    attempt_ids = tx.start_attempts(
        [NewAttempt(r.id, r.run_id, r.attempts + 1) for r in picked],
        worker.id,
        now,
        now + s.lease_seconds,
    )
    with_deps = [r.id for r in picked if r.n_deps]
    deps = tx.dep_outputs(with_deps) if with_deps else []
    return _hand_out(s, tx, worker, picked, attempt_ids, deps, now, events)


def _hand_out(
    s: Scheduler,
    tx: DecisionTx,
    worker: ActiveWorker,
    picked: list[ReadyTask],
    attempt_ids: list[int],
    deps: list[DepOutputs],
    now: float,
    events: list[Event],
) -> list[p.Assignment]:
    """The assignments of the started tasks (their attempts' ids given); their events."""
    fetches: dict[int, list[p.Fetch]] = {}
    for d in deps:
        for name in d.outputs:
            fetches.setdefault(d.task_id, []).append(
                p.Fetch(
                    path=p.output_prefix(d.run_id, d.name) + name,
                    dest=f"inputs/{d.name}/{name}",
                )
            )
    infos = _run_info(s, tx, {r.run_id for r in picked})
    out = []
    for r, attempt_id in zip(picked, attempt_ids, strict=True):
        spec = r.spec
        run = infos[r.run_id]
        env = dict(run.env)
        env.update(spec["env"])
        stdin = None
        if r.operands_json:
            # A reducer command reads its operands' results as JSON on stdin.
            names = r.operands
            results = tx.results_by_name(r.run_id, names)
            stdin = json.dumps({n: results.get(n) for n in names})
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
                fetch=[p.Fetch(path=i, dest=i) for i in spec["inputs"]] + fetches.get(r.id, []),
                bundle=run.bundle,
                setup=run.setup,
                stdin=stdin,
            )
        )
        events.append(Event(now, "attempt_started", r.run_id, r.id, attempt_id, worker.id))
    return out
