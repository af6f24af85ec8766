"""One machine, one command: a boss, local workers and a run, start to end.

``shoal run`` is this plus a progress display; the Python API uses the same
class, so both share one code path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from shoal.boss.server import Boss
from shoal.client import BossClient
from shoal.exceptions import BadInput, ShoalError
from shoal.launch.local import LocalWorkers
from shoal.scheduler import check_spec_fits
from shoal.spec import RunSpec
from shoal.statedir import StateDir

__all__ = ["LocalSession", "WorkersLost"]

FINAL_STATES = ("succeeded", "failed", "cancelled")


class WorkersLost(ShoalError):
    """Every local worker exited while the run still had work."""


class LocalSession:
    """An embedded boss on a loopback port with ``workers`` local agents."""

    def __init__(
        self,
        state: StateDir,
        *,
        workers: int,
        slots: int = 1,
        lease_seconds: float = 30.0,
    ) -> None:
        if workers < 1:
            raise BadInput(f"-j must be at least 1, not {workers}")
        if slots < 1:
            raise BadInput(f"--slots must be at least 1, not {slots}")
        self.state = state
        self.n_workers = workers
        self.slots = slots
        self.lease_seconds = lease_seconds
        self.boss: Boss | None = None
        self.workers: LocalWorkers | None = None
        self.client: BossClient | None = None

    def __enter__(self) -> LocalSession:
        other = self.state.live_boss()
        if other is not None and other.get("pid") != os.getpid():
            raise BadInput(
                f"a boss (pid {other.get('pid')}) is already using {self.state.root}: "
                f"submit to it with 'shoal submit FILE', or pass another --state folder"
            )
        token = self.state.token()
        self.boss = Boss(
            db=self.state.db_path,
            data=self.state.data,
            token=token,
            host="127.0.0.1",
            port=0,
            lease_seconds=self.lease_seconds,
        )
        self.boss.start()
        self.state.write_boss(self.boss.url, token)
        self.client = BossClient(self.boss.url, token)
        self.workers = LocalWorkers(
            self.n_workers,
            boss_url=self.boss.url,
            token=token,
            slots=self.slots,
            workdir=self.state.work,
            logdir=self.state.root / "logs",
        )
        self.workers.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(interrupt=exc_type is not None)

    def close(self, *, interrupt: bool = False) -> None:
        if self.workers is not None:
            self.workers.stop(interrupt=interrupt)
            self.workers = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.boss is not None:
            self.boss.stop()
            self.state.clear_boss()
            self.boss = None

    def submit(self, spec: RunSpec) -> int:
        check_spec_fits(spec, self.slots)
        assert self.client is not None
        return self.client.submit(spec)

    def wait(
        self,
        run_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.1,
    ) -> dict[str, Any]:
        """Block until the run ends; calls ``on_progress`` with the run's view as it goes."""
        assert self.client is not None and self.workers is not None
        while True:
            view = self.client.run(run_id)
            if on_progress is not None:
                on_progress(view)
            if view["state"] in FINAL_STATES:
                return view
            if self.workers.alive() == 0:
                logs = ", ".join(str(p) for p in self.workers.log_paths())
                raise WorkersLost(f"every local worker exited before the run ended (see {logs})")
            time.sleep(interval)

    def cancel(self, run_id: int) -> None:
        assert self.client is not None
        self.client.cancel(run_id)


def default_state() -> StateDir:
    return StateDir(Path(os.environ.get("SHOAL_STATE", ".shoal")))
