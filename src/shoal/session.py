"""One machine, one command: a boss, local workers and a run, start to end.

``shoal run`` is this plus a progress display; the Python API uses the same
class, so both share one code path.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from shoal import protocol as p
from shoal.boss.listen import bind, url_of
from shoal.client import BossClient
from shoal.exceptions import BadInput, ShoalError
from shoal.launch import providers
from shoal.launch.autoscale import SIZE_EVERY, Autoscaler, elastic
from shoal.launch.book import StoreBook, owner_name
from shoal.launch.contract import AgentToken, BossAccess, Machine, Pool, Provider, Site
from shoal.launch.fleet import Fleet
from shoal.launch.pools import run_pools
from shoal.spec import RunSpec
from shoal.spec.bundle import pack_bundle
from shoal.spec.inventory import Inventory
from shoal.statedir import StateDir

if TYPE_CHECKING:
    # The boss, its scheduler and their database library load once the local
    # agents are started (see LocalSession.__enter__), so both load side by side.
    from shoal.boss.server import Boss
    from shoal.scheduler import Unplaceable, WorkerShape

__all__ = ["LocalSession", "WorkersLost", "check_fits"]

FINAL_STATES = ("succeeded", "failed", "cancelled")
UNPLACEABLE_EVERY = 1.0  # seconds between looks for tasks no worker of the session can take
# The run's view counts its tasks, which takes longer the bigger the run: the
# looks at it take about this share of a core at most (a look is spaced out,
# up to VIEW_PAUSE_MOST seconds apart).
VIEW_SHARE = 0.05
VIEW_PAUSE_MOST = 2.0
# How long a worker's exit waits to be told: if the run ends meanwhile and its
# failure says the same (a bundle setup that failed on every worker), it is
# said once, by the run's end.
EXIT_TOLD_AFTER = 1.0


class WorkersLost(ShoalError):
    """Every local worker exited while the run still had work."""


class LocalSession:
    """An embedded boss on a loopback port, and the machines of its pools.

    The pools: ``workers`` local agents, and one agent on each host of
    ``hosts`` (an ssh pool). Their machines are recorded in the boss's
    database before they are started (``shoal machines`` lists them) and
    taken down when the session closes.
    """

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
        pools: Sequence[Pool] = (),
        log_cap: int | None = None,
        data: tuple[str, dict[str, str]] | None = None,
    ) -> None:
        if workers < 1 and hosts is None and not pools:
            raise BadInput(f"-j must be at least 1, not {workers}")
        if workers < 0:
            raise BadInput(f"-j must not be negative, not {workers}")
        if slots < 1:
            raise BadInput(f"--slots must be at least 1, not {slots}")
        self.state = state
        self.lease_seconds = lease_seconds
        self.speculate_min = speculate_min
        self.db = db
        # The datastore (a folder or a URL, and its options); None: the state folder's.
        self.data = data
        if hosts is not None:
            from shoal.launch.ssh.client import connect_ahead

            connect_ahead(hosts.hosts)  # the handshakes overlap with the boss's start
        self.pools: list[Pool] = [*pools, *run_pools(workers, slots, hosts)]
        names = [pool.name for pool in self.pools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise BadInput(
                f"two pools are called {', '.join(twice)}: rename one in the pool file "
                "(-j makes a pool 'local', --hosts one called 'hosts')"
            )
        # The most of an attempt's log the workers keep (None: the agent's default).
        self.site = Site(state.root, log_cap)
        self.boss: Boss | None = None
        self.fleet: Fleet | None = None
        self.agent_token: AgentToken | None = None
        self.sizer: Autoscaler | None = None
        self.sized_at = 0.0
        self.client: BossClient | None = None
        # Machines that could not be started (an ssh host that refused the key, say).
        self.failed: list[Machine] = []
        # Told (machine name, why) when a worker ends while the run goes on.
        self.on_worker_exit: Callable[[str, str], None] | None = None
        # Told what the pools' sizing does ("pool cpu: starting cpu-3 (…)").
        self.on_machines: Callable[[str], None] | None = None
        # Told of tasks failed because no worker of this session can take them.
        self.on_unplaceable: Callable[[list[Unplaceable]], None] | None = None
        self._exits: list[tuple[str, str]] = []
        self._untold: list[tuple[float, str, str]] = []  # (seen at, machine, why)
        self._serving = False
        self._starts: list[threading.Thread] = []
        self._launch_errors: list[BaseException] = []
        # The local pools' providers, their agents spawned before the boss exists.
        self._early: dict[str, Provider] = {}

    def __enter__(self) -> LocalSession:
        other = self.state.live_boss()
        if other is not None and other.get("pid") != os.getpid():
            raise BadInput(
                f"a boss (pid {other.get('pid')}) is already using {self.state.root}: "
                f"submit to it with 'shoal submit FILE', or pass another --state folder"
            )
        location, options = self.data or self.state.datastore()
        self.state.create()
        token = self.state.token()
        sock = bind("127.0.0.1", 0)
        try:
            self._spawn_agents(url_of(sock))
            from shoal.boss.server import Boss

            self.boss = Boss(
                db=self.state.database(self.db),
                data=location,
                data_options=options,
                token=token,
                lease_seconds=self.lease_seconds,
                speculate_min=self.speculate_min,
                sock=sock,
            )
        except BaseException:
            sock.close()
            self._discard_early()
            raise
        from shoal.boss.tokens import WORKER
        from shoal.machines import Machines

        try:
            # No boss is running here, so no run still marked running can go on:
            # a `shoal run` before this one was stopped. End those runs; what
            # they finished is reused by the next submission. (Not on a database
            # other bosses serve: their runs go on.)
            if not self.boss.others_serving():
                self.boss.scheduler.abandon_running(
                    "interrupted: the shoal run that ran it stopped"
                )
            self.state.remember_datastore(location, options)
            self.state.remember_database(self.db)
            self.state.write_boss(self.boss.url, token)
            self.client = BossClient(self.boss.url, token)
            tokens = self.boss.tokens
            # The agents get a worker token of their own, never the boss's.
            self.agent_token = AgentToken(
                "run", lambda name: tokens.issue(name, WORKER), tokens.revoke
            )
            self.fleet = Fleet(
                StoreBook(Machines(self.boss.store)),
                owner_name("run", self.state.root),
                self.site,
                BossAccess(url=self.boss.url, token=self.agent_token),
                given=self._early,
            )
            if any(elastic(pool) for pool in self.pools):
                scheduler = self.boss.scheduler
                self.sizer = Autoscaler(
                    self.fleet,
                    [pool for pool in self.pools if elastic(pool)],
                    scheduler.demand,
                    forget=scheduler.worker_lost,
                    log=self._tell,
                )
            # Every pool's machines start side by side while the run is
            # stored; those that wait for their agents to register are
            # waited for once the boss serves (see submit).
            self._starts = [
                threading.Thread(target=self._launch, args=(pool,), name=f"launch-{pool.name}")
                for pool in self.pools
            ]
            for thread in self._starts:
                thread.start()
        except BaseException:
            # __exit__ will not run: stop what started (the database was refused, say).
            self.close(interrupt=True)
            raise
        return self

    def _spawn_agents(self, url: str) -> None:
        """Start the local and ssh pools' agents now: Python starts in them while the boss loads.

        Those of providers that can (``spawn``, see
        :class:`~shoal.launch.contract.Provider`: local workers, ssh hosts);
        they wait for their token, and the fleet records and adopts them as
        it launches their pools.
        """
        for pool in self.pools:
            if elastic(pool) or pool.size <= 0:
                continue
            provider = providers.get(pool.provider, self.site)
            spawn = getattr(provider, "spawn", None)  # optional (see Provider)
            if spawn is not None:
                self._early[pool.name] = provider
                spawn(pool, url)

    def _discard_early(self) -> None:
        """Stop the agents spawned ahead that no launch adopted (the session failed)."""
        for provider in self._early.values():
            discard = getattr(provider, "discard_spawned", None)  # optional (see Provider)
            if discard is not None:
                discard()

    def _launch(self, pool: Pool) -> None:
        assert self.fleet is not None
        try:
            started = self.fleet.launch(pool)
        except BaseException as e:  # raised by launched(), once every pool is done
            self._launch_errors.append(e)
            return
        self.failed += [m for m in started if m.state == "failed"]

    def start(self) -> None:
        """Serve the boss (idempotent): workers register from here on."""
        assert self.boss is not None
        if not self._serving:
            self.boss.start()
            self._serving = True

    def launched(self) -> None:
        """Serve, and wait until every pool's machines started or failed (idempotent)."""
        self.start()
        self._join()
        if self._launch_errors:
            raise self._launch_errors.pop(0)

    def _join(self) -> None:
        for thread in self._starts:
            thread.join()
        self._starts = []

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(interrupt=exc_type is not None)

    def close(self, *, interrupt: bool = False) -> None:
        """Take the machines down (what runs is interrupted), then the boss."""
        try:
            if any(thread.is_alive() for thread in self._starts):
                # What is starting waits for the boss: serve, so it ends up
                # started (or failed), and is taken down below.
                self.start()
            self._join()
        finally:
            try:
                if self.fleet is not None:
                    fleet, self.fleet = self.fleet, None
                    fleet.stop(drain=False)
                    if self.sizer is not None:
                        # Machines that were being started when the run ended:
                        # their providers stop them as soon as they exist.
                        self.sizer.join(timeout=30.0)
                        fleet.stop(drain=False)
            finally:
                self._discard_early()
                self._close_boss()

    def _close_boss(self) -> None:
        """Close the client, then the boss (at once: no worker is left)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.boss is not None:
            if self.agent_token is not None:
                with contextlib.suppress(ShoalError):  # the database may be what failed
                    self.agent_token.revoke()
            if not self._serving:
                self.boss.sock.close()
                self.boss.close()
            else:
                # The workers are gone: nobody is left to serve gracefully.
                self.boss.stop(fast=True)
            self._serving = False
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
        # Requests wait in the socket's backlog until here: whoever asked
        # for the latest run meanwhile is answered with this one.
        self.launched()
        return run_id

    def wait(
        self,
        run_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.25,
    ) -> dict[str, Any]:
        """Block until the run ends; calls ``on_progress`` with the run's view as it goes."""
        assert self.client is not None and self.fleet is not None
        self.launched()
        assert self.boss is not None
        scheduler = self.boss.scheduler
        last = checked = 0.0
        pause = interval
        while True:
            if time.monotonic() - checked >= UNPLACEABLE_EVERY:
                # This session's workers are all there will be: a task none of
                # them can take would wait forever, so it fails, saying why.
                checked = time.monotonic()
                self.fleet.settle()  # the machines whose agents registered: running
                failed = scheduler.fail_unplaceable(run_id, self.worker_shapes())
                scheduler.fail_setup_stranded()
                if failed and self.on_unplaceable is not None:
                    self.on_unplaceable(failed)
            # The run's state is one row: look often, so the end is seen at once.
            ended = scheduler.run_state(run_id) in FINAL_STATES
            if ended or time.monotonic() - last >= pause:
                last = time.monotonic()
                # The boss is in this process: its view, as GET /v1/runs/RUN gives it.
                view = self.boss.health.warn(scheduler.run_view(run_id))
                spent = time.monotonic() - last
                pause = min(max(interval, spent / VIEW_SHARE), VIEW_PAUSE_MOST)
                if on_progress is not None:
                    on_progress(view)
                if view["state"] in FINAL_STATES:
                    self._tell_exits_at_the_end(run_id, view)
                    return view
            if self.sizer is not None and time.monotonic() - self.sized_at >= SIZE_EVERY:
                self.sized_at = time.monotonic()
                self.sizer.step()
                for m, why in self.sizer.ended:
                    self._exits.append((m.name, why))
                self.sizer.ended = []
            self._note_exits(run_id)
            if not self.fleet.live() and self.sizer is None:
                if scheduler.run_state(run_id) in FINAL_STATES:
                    continue  # the last one's goodbye ended the run (its setup failed)
                raise WorkersLost(f"every worker exited before the run ended: {self._why()}")
            # Woken at once when a sync ends a run; any other end, at the next look.
            if self.boss.feed.runs_ended.wait(0.02):
                self.boss.feed.runs_ended.clear()

    def _why(self) -> str:
        """The reasons workers gave for exiting, each once, with who gave it."""
        by_reason: dict[str, list[str]] = {}
        for name, why in self._exits:
            by_reason.setdefault(why.removesuffix(p.TAKES_NO_MORE), []).append(name)
        return "; ".join(f"{why} ({', '.join(names)})" for why, names in by_reason.items())

    def _note_exits(self, run_id: int) -> None:
        """The workers that exited since the last look; told if the run goes on.

        Told :data:`EXIT_TOLD_AFTER` seconds after, or at the run's end (see
        :meth:`_tell_exits_at_the_end`). An agent exits after its goodbye is
        answered: an exit that ended the run is seen after the run's end, and
        never told here.
        """
        assert self.fleet is not None and self.boss is not None
        ended = self.fleet.watch()
        if self.sizer is not None:
            self.sizer.noticed(ended)
        if not ended and not self._untold:
            return  # the usual look: nothing to tell, nothing to read
        now = time.monotonic()
        going_on = self.boss.scheduler.run_state(run_id) not in FINAL_STATES
        for m, why in ended:
            self._exits.append((m.name, why))
            if going_on:
                self._untold.append((now, m.name, why))
        if going_on:
            due = [u for u in self._untold if now - u[0] >= EXIT_TOLD_AFTER]
            self._untold = [u for u in self._untold if u not in due]
            for _, name, why in due:
                self._tell_exit(name, why)

    def _tell_exits_at_the_end(self, run_id: int, view: dict[str, Any]) -> None:
        """The exits not told yet, but those a failed task's cause repeats."""
        untold, self._untold = self._untold, []
        if not untold:
            return
        causes: list[str] = []
        if view["state"] != "succeeded" and self.boss is not None:
            failed = self.boss.scheduler.tasks_view(run_id, ["failed"])
            causes = [t["cause"] for t in failed if t.get("cause")]
        for _, name, why in untold:
            reason = why.removesuffix(p.TAKES_NO_MORE)
            if not any(reason in cause for cause in causes):
                self._tell_exit(name, why)

    def _tell_exit(self, name: str, why: str) -> None:
        if self.on_worker_exit is not None:
            self.on_worker_exit(name, why)

    def machines(self) -> list[Machine]:
        """The machines of this session that have not stopped or failed."""
        return self.fleet.live() if self.fleet is not None else []

    def worker_shapes(self) -> list[WorkerShape]:
        """The workers of this session that have not exited, and those its pools may start."""
        from shoal.scheduler import WorkerShape

        shapes = [WorkerShape(m.name, m.slots, dict(m.labels)) for m in self.machines()]
        if self.sizer is not None and self.fleet is not None:
            for pool in self.sizer.pools:
                shapes += [
                    WorkerShape(f"({pool.name})", m.slots, dict(m.labels))
                    for m in self.fleet.plan(pool, 1)
                ]
        return shapes

    def _tell(self, text: str) -> None:
        if self.on_machines is not None:
            self.on_machines(text)

    def where(self) -> str:
        """Where the run runs, in words: "3 ssh hosts and 2 local workers"."""
        assert self.fleet is not None
        failed = {m.name for m in self.failed}
        parts = []
        for pool in self.pools:
            n = sum(1 for m in self.fleet.plan(pool) if m.name not in failed)
            noun = self.fleet.provider(pool).noun
            parts.append(f"{n} {noun}{'s' if n != 1 else ''}")
        return " and ".join(parts)

    @property
    def max_slots(self) -> int:
        """The most slots any one worker of this session has."""
        planned = [
            m
            for pool in self.pools
            for m in providers.get(pool.provider, self.site).plan(pool, max(1, pool.size))
        ]
        return max(m.slots for m in planned)

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
