"""Pools sized to the queue: how many machines to add, which to stop.

A launcher (the keeper of ``shoal up``, or ``shoal run --pool``) asks
:func:`plan_sizes` every few seconds with what the boss says waits
(:meth:`shoal.scheduler.views.Views.demand`) and the machines it holds.
Nothing here starts or stops anything; :class:`shoal.launch.autoscale.Autoscaler`
carries the answer out.

The rules, per pool:

* **grow** while ready tasks that the pool can take would wait longer than
  a machine of the pool takes to start: the backlog's run time spread over
  the slots it has (those of machines still booting count) is longer than
  its boot time. Never above ``max``; never more slots than the work waiting
  needs. A task whose ``requires`` only one pool meets grows that pool; one
  that several meet goes to the first of them in the pool file with room.
* **shrink** through ``idle_stop``: a machine whose worker has had nothing
  to do for that long is stopped, never below ``min``.
* a fixed ``count`` is ``min = max = count``, except that a machine idle for
  ``idle_stop`` (where one is set) is stopped all the same, and brought back
  when work waits again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.launch.contract import Machine, Pool
from shoal.scheduler.placement import has_labels

__all__ = ["Decision", "PoolView", "bounds", "plan_sizes"]


@dataclass(frozen=True)
class PoolView:
    """A pool as the sizer sees it: its machines and how long one takes to start."""

    pool: Pool
    machines: Sequence[Machine]  # its live ones (requested, starting, running)
    boot_seconds: float  # how long a machine of it takes to run a worker (measured or guessed)
    slots: int  # the slots of one of its machines

    @property
    def booting(self) -> list[Machine]:
        return [m for m in self.machines if m.state in ("requested", "starting")]


@dataclass
class Decision:
    """What to do with one pool now."""

    grow: int = 0  # machines to add
    stop: list[str] = field(default_factory=list)  # machines to stop (idle too long)
    why: str = ""  # in words, for the keeper's log


def bounds(pool: Pool) -> tuple[int, int]:
    """The fewest and the most machines the pool may have."""
    if pool.count is not None:
        low = 0 if pool.idle_stop else pool.count
        return low, pool.count
    return pool.min, pool.max if pool.max is not None else pool.min


def _fits(pool: PoolView, shape: Mapping[str, Any]) -> bool:
    """Whether a machine of the pool can take tasks of this need."""
    if shape.get("host") is not None:
        return False  # pinned to a named worker: more machines would not help it
    labels = dict(pool.pool.labels)
    return int(shape["slots"]) <= pool.slots and has_labels(shape.get("requires") or {}, labels)


def _share(pools: Sequence[PoolView], ready: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The slots of waiting work each pool is to carry: each need to the first that fits with room."""
    carried = {p.pool.name: 0 for p in pools}
    room = {p.pool.name: bounds(p.pool)[1] * p.slots for p in pools}
    for shape in ready:
        need = int(shape["n"]) * int(shape["slots"])
        able = [p for p in pools if _fits(p, shape)]
        for p in able:
            take = need if p is able[-1] else min(need, max(0, room[p.pool.name]))
            carried[p.pool.name] += take
            room[p.pool.name] -= take
            need -= take
            if need <= 0:
                break
    return carried


def plan_sizes(
    pools: Sequence[PoolView],
    demand: Mapping[str, Any],
    *,
    now: float,
) -> dict[str, Decision]:
    """What to do with each pool, by name, given the boss's ``demand`` at time ``now``."""
    workers = {w["name"]: w for w in demand.get("workers", [])}
    run_seconds = demand.get("run_seconds")
    carried = _share(pools, demand.get("ready", []))
    out: dict[str, Decision] = {}
    for view in pools:
        low, high = bounds(view.pool)
        decision = Decision()
        live = len(view.machines)
        # Slots free now on its running machines, and those of machines on their way.
        free = 0
        busy = 0
        for m in view.machines:
            w = workers.get(m.name)
            if m.state == "running" and w is not None:
                free += max(0, int(w["slots"]) - int(w["running"]))
                busy += int(w["running"])
        coming = sum(m.slots for m in view.booting)
        waiting = carried[view.pool.name]
        unmet = waiting - free - coming
        if live < low:
            decision.grow = low - live
            decision.why = f"below its minimum of {low}"
        elif unmet > 0 and live < high:
            have = busy + free + coming
            if run_seconds and have:
                # The backlog clears on what it has before a new machine would run.
                clears_in = waiting * float(run_seconds) / have
                if clears_in <= view.boot_seconds:
                    out[view.pool.name] = decision
                    continue
                wanted = math.ceil(waiting * float(run_seconds) / max(view.boot_seconds, 1.0))
                target = min(waiting, wanted)
            else:
                target = waiting
            more = math.ceil(max(0, target - free - coming) / view.slots)
            decision.grow = max(0, min(more, high - live))
            if decision.grow:
                decision.why = f"{waiting} slots of work wait, {free + coming} free or coming"
        if view.pool.idle_stop and not unmet > 0:
            decision.stop = _idle(view, workers, now, live - low)
            if decision.stop:
                decision.why = f"idle for {view.pool.idle_stop:.0f} s"
        out[view.pool.name] = decision
    return out


def _idle(
    view: PoolView, workers: Mapping[str, Mapping[str, Any]], now: float, spare: int
) -> list[str]:
    """The pool's machines idle past ``idle_stop``, longest idle first, at most ``spare``."""
    assert view.pool.idle_stop is not None
    idle = []
    for m in view.machines:
        w = workers.get(m.name)
        if m.state != "running" or w is None or w.get("idle_since") is None:
            continue
        since = float(w["idle_since"])
        if now - since >= view.pool.idle_stop:
            idle.append((since, m.name))
    idle.sort()
    return [name for _, name in idle[: max(0, spare)]]
