"""The keeper: the process ``shoal up`` leaves behind to hold the machines.

It runs in a session of its own, so that it outlives the command and its
terminal. It brings its pools up through their providers (a
:class:`~shoal.launch.fleet.Fleet`, whatever the providers), tells ``shoal
up`` how each machine went (one JSON line each on its standard output, then
``{"done": true}``), and lives on alone: it starts a machine's agent again
when it ends without meaning to (backing off, up to a minute between tries),
and stops them all on SIGTERM; on SIGUSR1 it lets them finish what runs
first. An agent that stopped on purpose (:data:`shoal.protocol.ON_PURPOSE`:
its host could not set up a bundle, or the boss refused its token) is not
started again.

Every machine is recorded in the boss's database (through its API) before it
is asked for, and as it goes; ``STATE/up.json`` holds the keeper's PID and
start time (so a reused PID is never mistaken for it) and, should the boss
be out of reach, a copy of what it holds.

Its input, on standard input: the token (one line, never on the command
line), then one JSON line ``{"boss": URL, "direct": URL|null, "pools": [...]}``.
That token is the boss's own, for the keeper alone: its agents are handed a
worker token it mints through the boss (and revokes when it stops).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shoal import protocol as p
from shoal.client import BossClient
from shoal.client.boss import state_tls
from shoal.exceptions import ShoalError
from shoal.launch import procs
from shoal.launch.autoscale import SIZE_EVERY, Autoscaler, elastic
from shoal.launch.book import BossBook, owner_name
from shoal.launch.contract import READY_TIMEOUT, AgentToken, BossAccess, Machine, Pool, Site
from shoal.launch.fleet import Fleet
from shoal.statedir import StateDir, write_private

__all__ = ["RESTART_FIRST", "RESTART_MOST", "Keeper", "up_file"]

# Seconds between tries to start a machine's agent again, doubling up to the last.
RESTART_FIRST, RESTART_MOST = 2.0, 60.0
# What may go wrong talking to the boss or starting a process: logged, tried again.
_PASSING = (ShoalError, OSError)


def up_file(state: StateDir) -> Path:
    return state.root / "up.json"


class Keeper:
    """Holds the machines of ``shoal up`` until told to stop."""

    def __init__(
        self, state: StateDir, pools: list[Pool], fleet: Fleet, sizer: Autoscaler | None = None
    ) -> None:
        self.state = state
        self.pools = pools
        self.fleet = fleet
        self.sizer = sizer
        self.sized_at = 0.0
        self.stop = threading.Event()
        self.draining = False
        self.wake = threading.Event()  # a signal came: look now
        self.started: list[str] = []  # the machines that came up at first
        self.retry_at: dict[str, float] = {}
        self.delay: dict[str, float] = {}

    def log(self, text: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        sys.stderr.flush()

    def note(self) -> None:
        """Write STATE/up.json: this keeper by PID and start time, and its machines."""
        info = {
            "pid": os.getpid(),
            "ticks": procs.start_ticks(os.getpid()),
            "hosts": self.started,
            "machines": [m.to_dict() for m in self.fleet.live()],
            "since": time.time(),
        }
        write_private(up_file(self.state), json.dumps(info) + "\n")

    def bring_up(self) -> None:
        """Start every pool's machines, telling ``shoal up`` about each on stdout."""
        brought: list[Machine] = []
        for pool in self.pools:
            try:
                brought += self.fleet.launch(pool)
            except _PASSING as e:
                self.log(f"pool {pool.name}: {e}")
                brought += [m.replace(state="failed", detail=str(e)) for m in self.fleet.plan(pool)]
        waiting = [m.name for m in brought if m.state == "starting"]
        ready = {m.name: m for m in self.fleet.wait_running(waiting, READY_TIMEOUT)}
        for m in brought:
            m = ready.get(m.name, m)
            # Still starting (a batch job waiting in its queue): kept, and started later.
            later = (m.detail or "starting") if m.state == "starting" else None
            error = None if m.state == "running" or later else m.detail or f"its agent is {m.state}"
            if error is None:
                self.started.append(m.name)
            self.log(f"{m.name}: {error or later or 'worker started'}")
            said = {
                "host": m.name,
                "error": error,
                "note": None if error or later else m.detail,
                "waiting": later,
            }
            sys.stdout.write(json.dumps(said) + "\n")
        sys.stdout.write(json.dumps({"done": True}) + "\n")
        sys.stdout.flush()
        self.note()
        # shoal up has what it waited for; from here on this process is alone.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

    def keep(self) -> None:
        """Start ended agents again until told to stop; drain first if told to."""
        while True:
            self.wake.wait(1.0)
            self.wake.clear()
            if self.stop.is_set():
                break
            if self.draining:
                self.fleet.stop(drain=True)
                break
            try:
                changed = self._look()
            except _PASSING as e:
                self.log(f"cannot look after the machines now ({e}); trying again")
                continue
            if changed:
                self.note()

    def _look(self) -> bool:
        """One look: note ended agents, start those due again; whether anything changed."""
        changed = bool(self.fleet.settle())
        ended = self.fleet.watch()
        if self.sizer is not None:
            self.sizer.noticed(ended)
        if self.sizer is not None and time.monotonic() - self.sized_at >= SIZE_EVERY:
            self.sized_at = time.monotonic()
            self.sizer.step()
            ended += self.sizer.ended
            self.sizer.ended = []
            changed = True
        for m, why in ended:
            changed = True
            if self.sizer is not None and m.pool in {pool.name for pool in self.sizer.pools}:
                # Sized to the queue: the pool starts a new machine when work waits.
                if m.state != "preempted":  # the sizer said so already
                    self.log(f"{m.name}: {m.state} ({why})")
                continue
            # A fixed pool is held at its size: a machine taken away (a
            # container killed) is started again like a lost agent.
            if m.exit_code in p.ON_PURPOSE:
                self.log(f"{m.name}: worker stopped ({why})")
                continue
            self._later(m.name)
            self.log(
                f"{m.name}: worker lost ({why}); starting it again in {self.delay[m.name]:.0f} s"
            )
        due = [n for n, when in self.retry_at.items() if time.monotonic() >= when]
        if not due:
            return changed
        for n in due:
            del self.retry_at[n]
        for m in self.fleet.restart(due):
            if m.state == "failed":
                self._later(m.name)
                self.log(
                    f"{m.name}: cannot start the worker again ({m.detail}); "
                    f"next try in {self.delay[m.name]:.0f} s"
                )
            else:
                self.delay.pop(m.name, None)
                self.log(f"{m.name}: worker started again")
        return True

    def sizer_may_grow(self, pool: Pool) -> bool:
        """Whether the pool may get machines later though it has none now."""
        return self.sizer is not None and elastic(pool)

    def _later(self, name: str) -> None:
        """Try ``name`` again later, twice as late as the time before."""
        self.delay[name] = min(RESTART_MOST, self.delay.get(name, RESTART_FIRST / 2) * 2)
        self.retry_at[name] = time.monotonic() + self.delay[name]

    def close(self) -> None:
        try:
            self.fleet.stop()
        except _PASSING as e:
            # The machines are down; the boss did not hear of it. `shoal
            # machines` shows them as they were until it does.
            self.log(f"cannot record the machines as stopped: {e}")
        up_file(self.state).unlink(missing_ok=True)
        self.log("stopped")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.launch.keeper")
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    token = sys.stdin.readline().strip()
    given: dict[str, Any] = json.loads(sys.stdin.readline())
    # Live on as a child of no one: whoever started us reaps this process at
    # once and reads on from the pipe we keep.
    if os.fork() > 0:
        os._exit(0)
    state = StateDir(Path(args.state))
    pools = [Pool.from_dict(pool) for pool in given["pools"]]
    client = BossClient(given["boss"], token, tls=state_tls(state))
    # The agents get a worker token of their own, never the boss's (which this keeper keeps).
    agent_token = AgentToken(
        "up", lambda name: client.add_token(name, "worker"), client.revoke_token
    )
    fleet = Fleet(
        BossBook(client),
        owner_name("up", state.root),
        Site(state.root, launcher="up"),
        BossAccess(url=given["boss"], token=agent_token, direct_url=given.get("direct")),
    )
    sizer = Autoscaler(
        fleet,
        [pool for pool in pools if elastic(pool)],
        client.demand,
        forget=client.worker_lost,
        log=lambda text: Keeper.log(keeper, text),
    )
    keeper = Keeper(state, pools, fleet, sizer)

    def stop(signum: int, frame: Any) -> None:
        keeper.stop.set()
        keeper.wake.set()

    def drain(signum: int, frame: Any) -> None:
        keeper.draining = True
        keeper.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, drain)
    try:
        keeper.bring_up()
        if keeper.started or any(keeper.sizer_may_grow(pool) for pool in pools):
            keeper.keep()
    finally:
        keeper.close()
        with contextlib.suppress(*_PASSING):
            agent_token.revoke()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
