"""The scheduler: the state machine of runs, tasks and attempts, over a store.

Task: waiting -> ready -> running -> succeeded | failed | cancelled, or
upstream_failed when a dependency failed. Attempt: running -> succeeded |
failed | cancelled | interrupted | lost | superseded.

By concept:

- :mod:`~shoal.scheduler.core`: :class:`Scheduler`, its settings, each public method one transaction
- :mod:`~shoal.scheduler.submit`: a whole run, its DAG, reused successes
- :mod:`~shoal.scheduler.sync`: a worker's sync: its reports, its leases, its claim
- :mod:`~shoal.scheduler.leases`: lost attempts run again; backups of stragglers
- :mod:`~shoal.scheduler.reductions`: reductions the boss computes, their values so far
- :mod:`~shoal.scheduler.runs`: a run's end; cancel, retry, fail what cannot run, abandon
- :mod:`~shoal.scheduler.views`: the read views the scheduler holds
- :mod:`~shoal.scheduler.placement`: which worker may take which task, and why none may
- :mod:`~shoal.scheduler.keys`, :mod:`~shoal.scheduler.combine`: definition keys, adding results

It asks its store only what :class:`~shoal.store.contract.StoreLike` offers,
so its decisions run on the SQL store and on the tests' in-memory one alike.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.scheduler.core import Scheduler
    from shoal.scheduler.placement import WorkerShape
    from shoal.scheduler.sync import SyncOutcome, describe_exit
    from shoal.scheduler.views import Unplaceable

__all__ = ["Scheduler", "SyncOutcome", "Unplaceable", "WorkerShape", "describe_exit"]

# Each name loads its module when first asked for: the launchers use
# placement alone, and the store below the rest loads SQLAlchemy.
_HOMES = {
    "Scheduler": "core",
    "SyncOutcome": "sync",
    "Unplaceable": "views",
    "WorkerShape": "placement",
    "describe_exit": "sync",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
