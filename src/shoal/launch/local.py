"""The ``local`` provider: worker agents as processes on this machine.

A machine is one agent process, named ``POOL-N``. Each gets its own process
group, so a Ctrl-C at the terminal reaches only the command that started
them, which then stops them in order: SIGTERM (take no more work), or
SIGUSR1 (interrupt what runs), SIGKILL as the last resort. An agent also
stops when the process that started it ends (``--parent``).

Its provider id is ``PID:TICKS`` (:mod:`shoal.launch.procs`), so a process
that did not start it can stop it too.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from shoal.agent.client import CREDENTIAL_VARS
from shoal.launch import procs
from shoal.launch.contract import BossAccess, Machine, Pool, ProviderSchema, Site, label_args
from shoal.statedir import open_private

__all__ = ["DEFAULT_POOL", "SCHEMA", "LocalProvider"]

# A local pool has no fields of its own: count (or min/max), slots and labels say it all.
SCHEMA = ProviderSchema(fields={})

# The pool `shoal run` makes for its -j workers; theirs are the plain names.
DEFAULT_POOL = "local"
# How long stopped agents get to leave before they are killed (drain aside).
STOP_TIMEOUT = 10.0


class LocalProvider:
    """Agents on this machine, started and stopped by PID."""

    name = "local"
    noun = "local worker"

    def __init__(self, site: Site) -> None:
        self.site = site
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._offsets: dict[str, int] = {}
        # Agents started ahead of their boss (see spawn), by machine name, with
        # the URL they were given; each waits on its stdin for its token.
        self._early: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return [
            Machine(
                name=f"{pool.name}-{i + 1}",
                pool=pool.name,
                provider=self.name,
                address=socket.gethostname(),
                slots=pool.slots or 1,
                labels=dict(pool.labels),
            )
            for i in range(count)
        ]

    def log(self, pool: str, machine: str) -> Path:
        """The agent's log: ``worker-N.log`` for ``shoal run``'s own pool."""
        n = machine.removeprefix(f"{pool}-")
        return self.site.logs / (
            f"worker-{n}.log" if pool == DEFAULT_POOL else f"worker-{machine}.log"
        )

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        """Start the agents; they are ``starting`` until they register (not waited for)."""
        out = []
        for m in self.plan(pool, count):
            if only is not None and m.name not in only:
                continue
            proc = self.procs.get(m.name)
            if proc is None or proc.poll() is not None:
                proc = self._adopt(m, boss.url) or self._spawn(m, pool, boss.url)
                try:
                    self._hand_token(proc, boss)
                except BaseException:
                    proc.kill()  # no token for it (the database failed, say)
                    proc.wait()
                    raise
                self.procs[m.name] = proc
            out.append(m.replace(state="starting", provider_id=procs.handle(proc.pid)))
        return out

    def spawn(self, pool: Pool, url: str) -> None:
        """Start the pool's agents before their boss exists; :meth:`up` adopts them.

        Python and the agent's modules load while the boss loads its own: each
        agent then waits on its stdin for the token, which ``up`` writes once
        the boss has issued it, and its requests wait in the listening
        socket's backlog (``url``) until the boss serves.
        """
        for m in self.plan(pool, pool.size):
            self._early[m.name] = (url, self._spawn(m, pool, url))

    def discard_spawned(self) -> None:
        """Stop the agents :meth:`spawn` started that no :meth:`up` adopted."""
        early, self._early = self._early, {}
        for _, proc in early.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()

    def _adopt(self, m: Machine, url: str) -> subprocess.Popen[bytes] | None:
        """The agent spawned ahead for this machine, if it waits for this boss."""
        spawned = self._early.pop(m.name, None)
        if spawned is None:
            return None
        their_url, proc = spawned
        if their_url == url and proc.poll() is None:
            return proc
        self._early[m.name] = spawned
        self.discard_spawned()  # not what this boss needs: none of them is
        return None

    def _spawn(self, m: Machine, pool: Pool, url: str) -> subprocess.Popen[bytes]:
        """An agent for this machine, reading its token from stdin (see _hand_token)."""
        self.site.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        # No boss credential in the environment the agent starts with: its tasks
        # could read it in /proc/PID/environ. The token goes on its stdin.
        env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        options = label_args(pool.labels)
        if self.site.log_cap is not None:
            options.append(f"--log-cap={self.site.log_cap}")
        log = open_private(self.log(pool.name, m.name))
        self._offsets[m.name] = log.tell()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "shoal.agent"),
                    f"--boss={url}",
                    f"--slots={m.slots}",
                    f"--name={m.name}",
                    f"--workdir={self.site.work}",
                    f"--parent={os.getpid()}",
                    "--token-file=/dev/stdin",
                    *options,
                ],
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        return proc

    def _hand_token(self, proc: subprocess.Popen[bytes], boss: BossAccess) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(boss.token().encode() + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it ended already: status() says how

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As given while their agent's process runs; ``stopped`` once it has ended."""
        out = []
        for m in machines:
            proc = self.procs.get(m.name)
            if proc is None:  # started by another process: known by its handle
                found = procs.parse_handle(m.provider_id)
                out.append(m if found and procs.alive(*found) else m.replace(state="stopped"))
                continue
            code = proc.poll()
            if code is None:
                out.append(m)
                continue
            # The boss's record of its goodbye says why, where it said one.
            why = procs.last_words(self.log(m.pool, m.name), self._offsets.get(m.name, 0), code)
            out.append(m.replace(state="stopped", exit_code=code, detail=why))
        return out

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Drain (SIGTERM, wait however long) or interrupt (SIGUSR1), then kill what is left."""
        sig = signal.SIGTERM if drain else signal.SIGUSR1
        mine = []
        for m in machines:
            proc = self.procs.get(m.name)
            if proc is not None and proc.poll() is None:
                # One signal each: two SIGTERMs back to back may arrive as one.
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                mine.append(proc)
            else:
                procs.send(m.provider_id, sig)
        deadline = None if drain else time.monotonic() + STOP_TIMEOUT
        for proc in mine:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not _ended_within(proc, left):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        others = [m.provider_id for m in machines if self.procs.get(m.name) not in mine]
        _wait_gone(others, deadline)


def _ended_within(proc: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Whether the process ends within ``timeout`` seconds (None: however long it takes).

    Woken by the kernel as it ends (a pidfd): ``Popen.wait(timeout)`` would
    look in sleeps of up to 50 ms, and every ``shoal run`` waits so for its
    workers at the end.
    """
    if proc.poll() is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd here (not Linux 5.3+), or reaped meanwhile
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return proc.poll() is not None


def _wait_gone(handles: list[str], deadline: float | None) -> None:
    """Wait for processes not ours to end; past the deadline, kill them."""
    while True:
        left = [h for h in handles if (f := procs.parse_handle(h)) is not None and procs.alive(*f)]
        if not left:
            return
        if deadline is not None and time.monotonic() > deadline:
            for h in left:
                procs.send(h, signal.SIGKILL)
            return
        time.sleep(0.05)
