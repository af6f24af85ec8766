"""The command line's client of a state folder's database, when no boss runs there."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from shoal.client.base import Client
from shoal.datastore import open_datastore
from shoal.datastore.logtail import attempt_log_path, read_log
from shoal.exceptions import BadInput, BossUnreachable
from shoal.statedir import StateDir

__all__ = ["OfflineClient"]

# A boss that has written nothing in this long is gone (it writes every few seconds).
BOSS_QUIET = 60.0


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
        self.state = state
        self.store = Store(state.database())
        self.scheduler = Scheduler(self.store)
        self.recorded = Machines(self.store)
        self.datastore = open_datastore(*state.datastore())

    def close(self) -> None:
        self.store.close()

    def _id(self, ref: str | int | None) -> int:
        return self.scheduler.resolve_run(None if ref in (None, "latest") else ref)

    def run(self, ref: str | int | None) -> dict[str, Any]:
        view = self.scheduler.run_view(self._id(ref))
        if view["state"] == "running":
            # The boss that ran it is gone (killed, say): nothing moves it on now.
            view["no_boss"] = (
                f"no boss runs this run: 'shoal boss' carries it on, 'shoal cancel {view['run']}' "
                "ends it"
            )
        return view

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
        """Cancel a run in the database itself, as its boss would have."""
        run_id = self._id(ref)
        self._no_boss_serves()
        return self.scheduler.cancel(run_id)

    def cancel_task(self, ref: str | int, name: str) -> int:
        """Cancel one task in the database itself, as its boss would have."""
        run_id = self._id(ref)
        self._no_boss_serves()
        return self.scheduler.cancel_task(run_id, name)

    def _no_boss_serves(self) -> None:
        """Refuse to change a database a boss serves: changes go through that boss.

        Asked again here (the command chose this client a moment ago), and of
        the database too: a boss elsewhere may serve it (PostgreSQL).
        """
        info = self.state.live_boss()
        if info is not None:
            raise BadInput(f"a boss serves {self.url} at {info.get('url')}: retry the command")
        recent = time.time() - BOSS_QUIET
        for b in self.scheduler.bosses_view():
            if b["state"] != "running" or b["last_seen"] <= recent:
                continue
            if b["host"] == socket.gethostname() and not _alive(b["pid"]):
                continue  # killed here without a word (SIGKILL): it serves nothing
            raise BadInput(
                f"a boss at {b['url']} (pid {b['pid']} on {b['host']}) serves this "
                f"database: pass --boss {b['url']}"
            )

    def retry_task(self, ref: str | int, name: str) -> int:
        return self.retry(ref)

    def order_worker(self, worker: str, order: str) -> dict[str, Any]:
        raise BossUnreachable(f"no boss is running for {self.url}: no worker is connected")

    def retry(self, ref: str | int) -> int:
        raise BossUnreachable(
            f"no boss is running for {self.url}: run the task file again with 'shoal run', "
            "or start 'shoal boss' and retry"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
