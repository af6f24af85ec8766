"""The command line's client of a state folder's database, when no boss runs there."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from shoal.client.base import Client
from shoal.datastore import open_datastore
from shoal.datastore.logtail import attempt_log_path, read_log
from shoal.exceptions import BossUnreachable
from shoal.statedir import StateDir

__all__ = ["OfflineClient"]


class OfflineClient(Client):
    """Reads a state folder's database when no boss runs there.

    After ``shoal run`` ends, ``shoal status``, ``tasks``, ``logs`` and
    ``results`` still answer from what the run left behind.
    """

    def __init__(self, state: StateDir) -> None:
        # Imported here: the database's modules take a while, and most commands ask a boss.
        from shoal.machines import Machines
        from shoal.scheduler import Scheduler
        from shoal.store import Store

        self.url = str(state.root)
        self.store = Store(state.database())
        self.scheduler = Scheduler(self.store)
        self.recorded = Machines(self.store)
        self.datastore = open_datastore(*state.datastore())

    def close(self) -> None:
        self.store.close()

    def _id(self, ref: str | int | None) -> int:
        return self.scheduler.resolve_run(None if ref in (None, "latest") else ref)

    def run(self, ref: str | int | None) -> dict[str, Any]:
        return self.scheduler.run_view(self._id(ref))

    def runs(self) -> list[dict[str, Any]]:
        return self.scheduler.runs_view()

    def tasks(
        self, ref: str | int | None, states: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        return self.scheduler.tasks_view(self._id(ref), states or None)

    def task(self, ref: str | int | None, name: str) -> dict[str, Any]:
        return self.scheduler.task_view(self._id(ref), name)

    def log_chunks(
        self,
        ref: str | int | None,
        name: str,
        attempt: int | None = None,
        tail: int | None = None,
    ) -> Iterator[bytes]:
        """A task's log (its last ``tail`` lines) in chunks, from the datastore."""
        run_id = self._id(ref)
        _, path = attempt_log_path(run_id, self.scheduler.task_view(run_id, name), attempt)
        stored = read_log(self.datastore, path, tail)
        return stored.chunks if stored is not None else iter(())

    def results(self, ref: str | int | None) -> dict[str, Any]:
        return self.scheduler.results(self._id(ref))

    def workers(self) -> list[dict[str, Any]]:
        return self.recorded.name_workers(self.scheduler.workers_view())

    def machines(self) -> list[dict[str, Any]]:
        return self.recorded.view()

    def events(self, ref: str | int | None) -> list[dict[str, Any]]:
        return self.scheduler.events_view(self._id(ref))

    def bosses(self) -> list[dict[str, Any]]:
        return self.scheduler.bosses_view()

    def cancel(self, ref: str | int) -> int:
        raise BossUnreachable(f"no boss is running for {self.url}: nothing to cancel")

    def cancel_task(self, ref: str | int, name: str) -> int:
        raise BossUnreachable(f"no boss is running for {self.url}: nothing to cancel")

    def retry_task(self, ref: str | int, name: str) -> int:
        return self.retry(ref)

    def order_worker(self, worker: str, order: str) -> dict[str, Any]:
        raise BossUnreachable(f"no boss is running for {self.url}: no worker is connected")

    def retry(self, ref: str | int) -> int:
        raise BossUnreachable(
            f"no boss is running for {self.url}: run the task file again with 'shoal run', "
            "or start 'shoal boss' and retry"
        )
