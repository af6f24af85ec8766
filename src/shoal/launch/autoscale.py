"""Keeping pools sized to the queue, and replacing machines that fail or vanish.

:class:`Autoscaler` is what the keeper of ``shoal up`` and ``shoal run
--pool`` call every few seconds (:meth:`Autoscaler.step`). One step:

1. notes the machines whose agents registered (``running``), and how long
   each took to start (the pool's boot time, used for sizing);
2. notes the machines that ended: one its provider took away (a spot VM
   reclaimed, an instance terminated behind shoal's back) is ``preempted``,
   its worker is told gone at once so that its tasks run again elsewhere,
   and the pool replaces it when work waits;
3. stops machines that did not start within their pool's boot deadline
   (``failed``, with the reason), and backs off before the pool grows again
   (doubling up to five minutes) so a broken image or a quota does not
   start a machine every few seconds;
4. asks :func:`shoal.launch.sizer.plan_sizes` what to grow and stop, and does
   it: machines are recorded ``requested`` at once and started on a thread
   of their own, so a slow cloud never holds up the step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shoal.exceptions import ShoalError
from shoal.launch import providers
from shoal.launch.contract import READY_TIMEOUT, Machine, Pool
from shoal.launch.fleet import Fleet
from shoal.launch.sizer import PoolView, plan_sizes

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MOST",
    "SIZE_EVERY",
    "Autoscaler",
    "boot_deadline",
    "elastic",
]

# Seconds between looks at the queue, to size the pools to it.
SIZE_EVERY = 2.0
# Seconds a pool waits before growing again after a machine failed to start, doubling.
BACKOFF_FIRST, BACKOFF_MOST = 10.0, 300.0
# A guess at how long a machine takes to start, before one has.
_GUESS_RENTED, _GUESS_OWNED = 90.0, 5.0
# How long a rented machine has to boot and run its agent, unless its pool says.
RENTED_DEADLINE = 600.0


def elastic(pool: Pool) -> bool:
    """Whether a pool's size follows the queue: min/max, or idle machines stopped.

    A fixed pool with no ``idle_stop`` (hosts, local workers) is held at its
    size by its launcher, which starts a lost agent again; the autoscaler
    leaves it alone.
    """
    return pool.max is not None or bool(pool.idle_stop)


def boot_deadline(pool: Pool) -> float:
    """Seconds a machine of the pool may take from being asked for to running a worker."""
    given = pool.fields.get("boot_timeout")
    if isinstance(given, int | float) and not isinstance(given, bool) and given > 0:
        return float(given) + READY_TIMEOUT
    return RENTED_DEADLINE if providers.schema(pool.provider).rented else 2 * READY_TIMEOUT


class Autoscaler:
    """Sizes one launcher's pools to the boss's queue through its fleet."""

    def __init__(
        self,
        fleet: Fleet,
        pools: Sequence[Pool],
        demand: Callable[[], Mapping[str, Any]],
        *,
        forget: Callable[[int, str], None] | None = None,
        log: Callable[[str], None] = lambda text: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.pools = list(pools)
        self.demand = demand
        self.forget = forget  # tell the boss a machine's worker is gone (worker id, why)
        self.log = log
        self.clock = clock
        self.boot: dict[str, list[float]] = {}  # pool -> seconds its machines took to start
        self.hold_until: dict[str, float] = {}  # pool -> no growth before (monotonic)
        self.backoff: dict[str, float] = {}
        self.starting: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.ended: list[tuple[Machine, str]] = []  # for the caller: what ended, and why

    # -- one look -----------------------------------------------------------

    def step(self) -> None:
        """Look at the machines and the queue once, and act on what is seen."""
        ready = self.fleet.settle()
        recorded = self.fleet.recorded() if ready else {}
        for m in ready:
            told = recorded.get(m.name)
            if m.agent is not None and told is not None and told.requested:
                took = max(0.0, m.agent.registered - told.requested)
                self.boot.setdefault(m.pool, []).append(took)
                self.backoff.pop(m.pool, None)
        ended = self.fleet.watch()
        self.noticed(ended)
        self.ended += ended
        self._deadlines()
        self._size()

    def noticed(self, ended: Sequence[tuple[Machine, str]]) -> None:
        """Machines seen to end (here or by the caller's own look): a preempted one's
        worker is told gone at once, so that its tasks run again without waiting for
        its lease to expire. One that ended before its worker registered did not
        start: its pool backs off, as for a machine that failed to start (a batch
        job that cannot launch would otherwise be submitted again every look)."""
        for m, why in ended:
            if m.agent is None and m.pool in {pool.name for pool in self.pools}:
                self.log(f"{m.name}: ended before its worker registered ({why})")
                self._hold(m.pool)
                continue
            if m.state != "preempted":
                continue
            self.log(f"{m.name}: preempted ({why}); its tasks run again elsewhere")
            if self.forget is not None and m.agent is not None:
                self.forget(m.agent.worker_id, f"its machine was preempted: {why}")

    def _deadlines(self) -> None:
        now = self.clock()
        late: dict[str, list[str]] = {}
        starting = [m for m in self.fleet.live() if m.state == "starting"]
        recorded = self.fleet.recorded() if starting else {}
        for m in starting:
            pool = self.fleet.pools.get(m.pool)
            told = recorded.get(m.name)
            if pool is None or told is None or not told.requested:
                continue
            if now - told.requested > boot_deadline(pool):
                late.setdefault(m.pool, []).append(m.name)
        for pool_name, names in late.items():
            limit = boot_deadline(self.fleet.pools[pool_name])
            why = f"did not run a worker within {limit:.0f} s of being asked for"
            self.fleet.end(names, state="failed", detail=why)
            self.log(f"{', '.join(names)}: {why}; terminated")
            self._hold(pool_name)

    def _hold(self, pool_name: str) -> None:
        """Grow the pool again only after a back-off, twice as long as the last."""
        delay = min(BACKOFF_MOST, self.backoff.get(pool_name, BACKOFF_FIRST / 2) * 2)
        self.backoff[pool_name] = delay
        self.hold_until[pool_name] = time.monotonic() + delay
        self.log(f"pool {pool_name}: next machine in {delay:.0f} s at the earliest")

    def _views(self) -> list[PoolView]:
        views = []
        for pool in self.pools:
            machines = [m for m in self.fleet.live() if m.pool == pool.name]
            taken = self.boot.get(pool.name)
            guess = _GUESS_RENTED if providers.schema(pool.provider).rented else _GUESS_OWNED
            boot = sum(taken[-5:]) / len(taken[-5:]) if taken else guess
            slots = self.fleet.plan(pool, 1)[0].slots if self.fleet.plan(pool, 1) else 1
            views.append(PoolView(pool, machines, boot, slots))
        return views

    def _size(self) -> None:
        demand = self.demand()
        decisions = plan_sizes(self._views(), demand, now=float(demand.get("now", self.clock())))
        for pool in self.pools:
            d = decisions.get(pool.name)
            if d is None:
                continue
            if d.stop:
                self.fleet.end(d.stop, state="stopped", detail=d.why)
                self.log(f"{', '.join(d.stop)}: stopped, {d.why}")
            if d.grow and time.monotonic() >= self.hold_until.get(pool.name, 0.0):
                fresh = self.fleet.grow(pool, d.grow)
                if fresh:
                    names = [m.name for m in fresh]
                    self.log(f"pool {pool.name}: starting {', '.join(names)} ({d.why})")
                    self._start(pool, names)

    def _start(self, pool: Pool, names: list[str]) -> None:
        def run() -> None:
            try:
                started = self.fleet.start(pool, names)
            except (ShoalError, OSError) as e:
                self.log(f"pool {pool.name}: cannot start {', '.join(names)}: {e}")
                self._hold(pool.name)
                return
            failed = [m for m in started if m.state == "failed"]
            for m in failed:
                self.log(f"{m.name}: cannot start: {m.detail}")
            if failed:
                self._hold(pool.name)

        thread = threading.Thread(target=run, name=f"grow-{pool.name}", daemon=True)
        with self._lock:
            self.starting = [t for t in self.starting if t.is_alive()] + [thread]
        thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the machines being started to be started (or failed)."""
        with self._lock:
            threads = list(self.starting)
        for t in threads:
            t.join(timeout)
