"""One machine, one command: a boss, local workers and a run, start to end.

``shoal run`` is this plus a progress display; the Python API uses the same
class, so both share one code path.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from shoal.agent.worker import TAKES_NO_MORE
from shoal.boss.listen import bind, url_of
from shoal.bundle import pack_bundle
from shoal.client import BossClient
from shoal.exceptions import BadInput, ShoalError
from shoal.inventory import Inventory
from shoal.launch.local import LocalWorkers
from shoal.scheduler import Unplaceable, WorkerShape
from shoal.spec import RunSpec
from shoal.statedir import StateDir

if TYPE_CHECKING:
    from shoal.boss.server import Boss
    from shoal.launch.ssh import SshWorkers

__all__ = ["LocalSession", "WorkersLost", "check_fits"]

FINAL_STATES = ("succeeded", "failed", "cancelled")
UNPLACEABLE_EVERY = 1.0  # seconds between looks for tasks no worker of the session can take


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
        speculate_min: float = 30.0,
        db: str | None = None,
        hosts: Inventory | None = None,
        log_cap: int | None = None,
    ) -> None:
        if workers < 1 and hosts is None:
            raise BadInput(f"-j must be at least 1, not {workers}")
        if workers < 0:
            raise BadInput(f"-j must not be negative, not {workers}")
        if slots < 1:
            raise BadInput(f"--slots must be at least 1, not {slots}")
        self.state = state
        self.n_workers = workers
        self.slots = slots
        self.lease_seconds = lease_seconds
        self.speculate_min = speculate_min
        self.db = db
        self.hosts = hosts
        # The most of an attempt's log the workers keep (None: the agent's default).
        self.log_cap = log_cap
        self.boss: Boss | None = None
        self.workers: LocalWorkers | None = None
        self.ssh: SshWorkers | None = None
        self.client: BossClient | None = None
        # Told (worker or host name, why) when a worker ends while the run goes on.
        self.on_worker_exit: Callable[[str, str], None] | None = None
        # Told of tasks failed because no worker of this session can take them.
        self.on_unplaceable: Callable[[list[Unplaceable]], None] | None = None
        self._exits: list[tuple[str, str]] = []

    def __enter__(self) -> LocalSession:
        other = self.state.live_boss()
        if other is not None and other.get("pid") != os.getpid():
            raise BadInput(
                f"a boss (pid {other.get('pid')}) is already using {self.state.root}: "
                f"submit to it with 'shoal submit FILE', or pass another --state folder"
            )
        self.state.create()
        token = self.state.token()
        # Bind the port and start the workers first: they start up on the
        # other core while this process imports the boss. Their first
        # requests wait in the socket's backlog until the boss serves.
        sock = bind("127.0.0.1", 0)
        url = url_of(sock)
        self.workers = LocalWorkers(
            self.n_workers,
            boss_url=url,
            token=token,
            slots=self.slots,
            workdir=self.state.work,
            logdir=self.state.root / "logs",
            log_cap=self.log_cap,
        )
        self.workers.start()
        ssh_start: threading.Thread | None = None
        if self.hosts is not None:
            # One worker per ssh host, reaching this boss through a reverse
            # tunnel; their first syncs wait in the socket's backlog.
            from shoal.launch.ssh import SshWorkers
            from shoal.launch.zipapp import agent_zipapp

            self.ssh = SshWorkers(
                list(self.hosts.hosts),
                boss_port=int(sock.getsockname()[1]),
                token=token,
                logdir=self.state.root / "logs",
                log_cap=self.log_cap,
            )
            # They connect while this process imports and opens the boss.
            ssh_start = threading.Thread(
                target=self.ssh.start,
                args=(agent_zipapp(self.state.root / "agent"),),
                name="ssh-start",
            )
            ssh_start.start()
        try:
            from shoal.boss.server import Boss

            self.boss = Boss(
                db=self.state.database(self.db),
                data=self.state.data,
                token=token,
                lease_seconds=self.lease_seconds,
                speculate_min=self.speculate_min,
                sock=sock,
            )
            # No boss is running here, so no run still marked running can go on:
            # a `shoal run` before this one was stopped. End those runs; what
            # they finished is reused by the next submission. (Not on a database
            # other bosses serve: their runs go on.)
            if not self.boss.others_serving():
                self.boss.scheduler.abandon_running(
                    "interrupted: the shoal run that ran it stopped"
                )
            self.state.write_boss(self.boss.url, token)
            self.client = BossClient(self.boss.url, token)
        except BaseException:
            # __exit__ will not run: stop what started (the database was refused, say).
            if ssh_start is not None:
                ssh_start.join()
            self.close(interrupt=True)
            raise
        if ssh_start is not None:
            ssh_start.join()
        return self

    def start(self) -> None:
        """Serve the boss (idempotent): workers register from here on."""
        assert self.boss is not None
        if self.boss._thread is None:
            self.boss.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(interrupt=exc_type is not None)

    def close(self, *, interrupt: bool = False) -> None:
        if self.ssh is not None:
            self.ssh.stop()
            self.ssh = None
        if self.workers is not None:
            self.workers.stop(interrupt=interrupt)
            self.workers = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.boss is not None:
            if self.boss._thread is None:
                self.boss.sock.close()
                self.boss.close()
            else:
                # The workers are gone: nobody is left to serve gracefully.
                self.boss.stop(fast=True)
            self.state.clear_boss()
            self.boss = None

    def submit(self, spec: RunSpec, *, reuse: bool = True) -> int:
        """Store the run (in this process: the boss is ours) and serve it.

        With ``reuse``, tasks that succeeded before with the same definition
        are not run again (see :meth:`Scheduler.submit`).
        """
        check_fits(spec, self.max_slots)
        assert self.boss is not None
        if spec.bundle is not None:
            digest, archive = pack_bundle(spec.bundle)
            try:
                run_id = self.boss.submit(spec, archive, digest, reuse=reuse)
            finally:
                archive.unlink(missing_ok=True)
        else:
            run_id = self.boss.submit(spec, reuse=reuse)
        self.start()
        return run_id

    def wait(
        self,
        run_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.25,
    ) -> dict[str, Any]:
        """Block until the run ends; calls ``on_progress`` with the run's view as it goes."""
        assert self.client is not None and self.workers is not None
        self.start()
        assert self.boss is not None
        scheduler = self.boss.scheduler
        last = checked = 0.0
        while True:
            if time.monotonic() - checked >= UNPLACEABLE_EVERY:
                # This session's workers are all there will be: a task none of
                # them can take would wait forever, so it fails, saying why.
                checked = time.monotonic()
                failed = scheduler.fail_unplaceable(run_id, self.worker_shapes())
                if failed and self.on_unplaceable is not None:
                    self.on_unplaceable(failed)
            # The run's state is one row: look often, so the end is seen at once.
            ended = scheduler.run_state(run_id) in FINAL_STATES
            if ended or time.monotonic() - last >= interval:
                last = time.monotonic()
                view = self.client.run(run_id)
                if on_progress is not None:
                    on_progress(view)
                if view["state"] in FINAL_STATES:
                    return view
            self._note_exits()
            alive = self.workers.alive() + (self.ssh.alive() if self.ssh is not None else 0)
            if alive == 0:
                raise WorkersLost(f"every worker exited before the run ended: {self._why()}")
            time.sleep(0.02)

    def _why(self) -> str:
        """The reasons workers gave for exiting, each once, with who gave it."""
        by_reason: dict[str, list[str]] = {}
        for name, why in self._exits:
            by_reason.setdefault(why.removesuffix(TAKES_NO_MORE), []).append(name)
        return "; ".join(f"{why} ({', '.join(names)})" for why, names in by_reason.items())

    def _note_exits(self) -> None:
        assert self.workers is not None
        exits = self.workers.exited() + (self.ssh.exited() if self.ssh is not None else [])
        for name, why in exits:
            self._exits.append((name, why))
            if self.on_worker_exit is not None:
                self.on_worker_exit(name, why)

    def worker_shapes(self) -> list[WorkerShape]:
        """The workers of this session that have not exited: names, slots, labels."""
        gone = {name for name, _ in self._exits}
        prefix = self.workers.name_prefix if self.workers is not None else "local"
        shapes = [WorkerShape(f"{prefix}-{i + 1}", self.slots) for i in range(self.n_workers)]
        if self.ssh is not None:
            shapes += [
                WorkerShape(w.host.name, w.host.slots, w.host.labels) for w in self.ssh.started
            ]
        return [w for w in shapes if w.name not in gone]

    @property
    def max_slots(self) -> int:
        """The most slots any one worker of this session has."""
        local = self.slots if self.n_workers > 0 else 0
        remote = [h.slots for h in self.hosts.hosts] if self.hosts is not None else []
        return max([local, *remote])

    def cancel(self, run_id: int) -> None:
        assert self.client is not None
        self.client.cancel(run_id)


def check_fits(spec: RunSpec, max_slots: int) -> None:
    """Refuse, before storing, a run with a task that no local worker can hold."""
    for t in spec.tasks:
        if t.slots > max_slots:
            raise BadInput(
                f"{spec.source or spec.name}: task '{t.name}' needs {t.slots} slots but each "
                f"local worker has {max_slots} (give them more with --slots {t.slots})"
            )


def default_state() -> StateDir:
    return StateDir(Path(os.environ.get("SHOAL_STATE", ".shoal")))
