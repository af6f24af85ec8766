"""The scheduler: its settings, and each public method as one transaction.

What each method decides lives in the module of its concept
(:mod:`~shoal.scheduler.submit`, :mod:`~shoal.scheduler.sync`,
:mod:`~shoal.scheduler.leases`, :mod:`~shoal.scheduler.reductions`,
:mod:`~shoal.scheduler.runs`); the read views are objects the scheduler
holds (:attr:`Scheduler.views`, :attr:`Scheduler.dashboard`).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from shoal import protocol as p
from shoal.exceptions import StoreConflict
from shoal.scheduler import leases, runs, submit, sync
from shoal.scheduler.placement import WorkerShape
from shoal.scheduler.sync import RunInfo, SyncOutcome
from shoal.scheduler.views import DashboardViews, Unplaceable, Views
from shoal.spec import RunSpec
from shoal.store.contract import StoreLike
from shoal.store.rows import Event

__all__ = ["CONFLICT_TRIES", "Promote", "Scheduler", "retried"]

# promote(attempt_id, task's output prefix, output names) -> names not found.
Promote = Callable[[int, str, list[str]], list[str]]

_T = TypeVar("_T")
_P = ParamSpec("_P")
CONFLICT_TRIES = 8


def retried(method: Callable[_P, _T]) -> Callable[_P, _T]:
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


def _no_outputs(attempt_id: int, prefix: str, names: list[str]) -> list[str]:
    return []


class Scheduler:
    """Submit, assign, finish, expire, cancel and retry, each in one transaction.

    The scheduler does no I/O of its own (no network, no files, no clock but
    the one it is given), so the same code serves the boss, the tests and
    any number of boss processes over one database: the database is the
    only state.
    """

    def __init__(
        self,
        store: StoreLike,
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
        self.promote: Promote = promote or _no_outputs
        self.lease_seconds = lease_seconds
        # Syncs renew leases: a few per lease, so one late sync loses nothing.
        self.heartbeat_seconds = heartbeat_seconds or max(0.2, min(5.0, lease_seconds / 4))
        self.max_losses = max_losses
        self.speculate = speculate
        self.speculate_factor = speculate_factor
        self.speculate_min = speculate_min
        self.clock = clock
        self.rng = rng or random.Random()
        # A run's name, env, bundle and setup never change: read once, kept here.
        self.run_info: dict[int, RunInfo] = {}
        # Set by a boss: its row in the bosses table, and the tag on its
        # work notices (so it does not wake itself twice).
        self.boss_id: int | None = None
        self.origin = ""
        self.views = Views(store)
        self.dashboard = DashboardViews(store)

    # -- runs --------------------------------------------------------------

    @retried
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
        return submit.submit(self, spec, bundle=bundle, reuse=reuse, key=key)

    @retried
    def cancel(self, run_id: int) -> int:
        """Cancel every unfinished task of the run; how many were cancelled."""
        return runs.cancel(self, run_id)

    @retried
    def retry(self, run_id: int) -> int:
        """Run the run's failed, upstream-failed and cancelled tasks again; how many."""
        return runs.retry(self, run_id)

    @retried
    def cancel_task(self, run_id: int, name: str) -> int:
        """Cancel one unfinished task and what runs after it; how many tasks that ended."""
        return runs.cancel_task(self, run_id, name)

    @retried
    def retry_task(self, run_id: int, name: str) -> int:
        """Run one failed or cancelled task again, with what its end stopped; how many."""
        return runs.retry_task(self, run_id, name)

    @retried
    def fail_unplaceable(self, run_id: int, workers: Sequence[WorkerShape]) -> list[Unplaceable]:
        """Fail the run's ready tasks that none of ``workers`` can ever take, with why.

        For a run whose workers are all known (``shoal run``): the tasks
        would wait forever. Answers what was failed (every name), by need.
        """
        return runs.fail_unplaceable(self, run_id, workers)

    @retried
    def abandon_running(self, cause: str) -> list[int]:
        """End every run still running: its boss and workers are gone (``shoal run`` restarts)."""
        return runs.abandon_running(self, cause)

    # -- leases ------------------------------------------------------------

    @retried
    def extend_leases(self) -> int:
        """Give every running attempt a whole lease from now (a restarted boss does this)."""
        with self.store.transaction() as tx:
            return tx.extend_leases(self.clock() + self.lease_seconds)

    @retried
    def expire(self) -> bool:
        """End the attempts whose lease ran out; True if tasks became ready again.

        A lost attempt's task runs again, unless another attempt of it still
        runs; after ``max_losses`` losses it fails with the cause ``lost``.
        Workers not heard from for a lease are marked lost.
        """
        return leases.expire(self)

    # -- workers -----------------------------------------------------------

    @retried
    def register(self, reg: p.Registration) -> p.Registered:
        """A new worker: its id, and how often it should sync."""
        now = self.clock()
        with self.store.transaction() as tx:
            worker_id = tx.insert_worker(
                name=reg.name,
                host=reg.host,
                slots=max(1, int(reg.slots)),
                labels=reg.labels,
                now=now,
                pid=reg.pid,
                python=reg.python,
                version=reg.version,
            )
            tx.add_events([Event(now, "worker_registered", worker_id=worker_id, detail=reg.name)])
        return p.Registered(
            worker_id=worker_id,
            lease_seconds=self.lease_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
        )

    @retried
    def worker_stopped(self, worker_id: int, reason: str = "") -> list[int]:
        """A worker said goodbye (and maybe why); what it still held runs again elsewhere.

        If it stopped as a run's bundle setup failed on it, and no worker is
        left, that run fails with the reason. Answers the runs that ended.
        """
        now = self.clock()
        with self.store.transaction() as tx:
            tx.set_worker_state(worker_id, "stopped")
            tx.add_events(
                [Event(now, "worker_stopped", worker_id=worker_id, detail=reason or None)]
            )
            return runs.fail_where_setup_failed(tx, worker_id, reason, now)

    @retried
    def fail_setup_stranded(self) -> list[int]:
        """Runs whose bundle setup failed on every worker, none left or coming: fail them.

        The periodic side of :meth:`worker_stopped`, for when the last
        machine fails to start after the last goodbye. Answers the runs ended.
        """
        with self.store.read() as tx:  # the usual answer, nothing: no write lock taken
            if tx.active_workers() or tx.machines_coming():
                return []
        now = self.clock()
        with self.store.transaction() as tx:
            return runs.fail_where_setup_failed(tx, None, "", now)

    @retried
    def worker_lost(self, worker_id: int, reason: str) -> None:
        """A worker is known gone (its machine was preempted): what it held runs again now."""
        from shoal.scheduler import leases

        with self.store.transaction() as tx:
            tx.add_events([Event(self.clock(), "worker_lost", worker_id=worker_id, detail=reason)])
        leases.expire(self, gone=(worker_id, reason))

    @retried
    def note(
        self,
        kind: str,
        detail: str,
        *,
        run_id: int | None = None,
        task_id: int | None = None,
        attempt_id: int | None = None,
        worker_id: int | None = None,
    ) -> None:
        """Record an event the boss saw (a log it could not store, say) for the user to read."""
        event = Event(self.clock(), kind, run_id, task_id, attempt_id, worker_id, detail)
        with self.store.transaction() as tx:
            tx.add_events([event])

    @retried
    def sync(self, req: p.SyncRequest) -> SyncOutcome:
        """One worker round trip: record what finished, renew, hand out work."""
        return sync.sync(self, req)

    # -- the read views (see Views and DashboardViews) -----------------------

    def resolve_run(self, ref: str | int | None) -> int:
        """A run id from an id, a run name (its latest run) or None (the latest run)."""
        return self.views.resolve_run(ref)

    def run_state(self, run_id: int) -> str:
        return self.views.run_state(run_id)

    def run_view(self, run_id: int) -> dict[str, Any]:
        return self.views.run_view(run_id)

    def runs_view(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.views.runs_view(limit)

    def tasks_view(self, run_id: int, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self.views.tasks_view(run_id, states)

    def task_view(self, run_id: int, name: str) -> dict[str, Any]:
        return self.views.task_view(run_id, name)

    def results(self, run_id: int) -> dict[str, Any]:
        return self.views.results(run_id)

    def attempt_writing(
        self, attempt_id: int, *, outputs: bool, worker: int | None = None
    ) -> tuple[int, str]:
        """The run and task an attempt may write for (see :meth:`Views.attempt_writing`)."""
        return self.views.attempt_writing(attempt_id, outputs=outputs, worker=worker)

    def running_attempts(self, attempt_ids: list[int]) -> set[int]:
        return self.views.running_attempts(attempt_ids)

    def attempts_of(self, worker_id: int, attempt_ids: list[int]) -> dict[int, tuple[int, str]]:
        """The run and task of those of the attempts handed to ``worker_id``."""
        return self.views.attempts_of(worker_id, attempt_ids)

    def outputs_removed(self, removed: Sequence[tuple[int, str | None]]) -> None:
        """Record that ``shoal gc`` removes these outputs: (run, task), or (run, None) for all.

        A later submission then reuses none of those tasks (it would hand
        their dependents files that are gone): they run again.
        """
        if not removed:
            return
        now = self.clock()
        with self.store.transaction() as tx:
            tx.add_events(
                [Event(now, "outputs_removed", run, detail=task) for run, task in removed]
            )

    def workers_view(self) -> list[dict[str, Any]]:
        return self.views.workers_view()

    def demand(self) -> dict[str, Any]:
        return self.views.demand()

    def bosses_view(self) -> list[dict[str, Any]]:
        return self.views.bosses_view()

    def events_view(self, run_id: int | None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.views.events_view(run_id, limit)

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
        return self.dashboard.tasks_page(
            run_id, states=states, search=search, sort=sort, limit=limit, offset=offset
        )

    def graph(self, run_id: int) -> dict[str, Any]:
        return self.dashboard.graph(run_id)

    def throughput(self, run_id: int, buckets: int = 40) -> dict[str, Any]:
        return self.dashboard.throughput(run_id, buckets)

    def task_links(self, run_id: int, name: str) -> dict[str, Any]:
        return self.dashboard.task_links(run_id, name)

    def task_events(self, run_id: int, name: str) -> list[dict[str, Any]]:
        return self.dashboard.task_events(run_id, name)

    def metrics_counts(self) -> dict[str, Any]:
        return self.dashboard.metrics_counts()
