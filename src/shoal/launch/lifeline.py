"""An agent on another machine held by a local command's standard input: its lifeline.

``ssh HOST …`` and ``docker exec -i CONTAINER …`` both carry the agent's
standard input from a local process. The token is written on it first (never
on a command line); then it stays open: a line ``drain`` asks the agent to
finish what runs and exit, and its end (the local command closed or killed)
stops the agent (``--lifeline``). The agent is ready once it has registered
with the boss, never when a log line says so.

The providers that hold their machines' agents so (``docker``, ``vagrant``,
the clouds) begin their ``up`` alike: :func:`begin_up`.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol

from shoal.exceptions import ShoalError
from shoal.launch import procs
from shoal.launch.contract import READY_TIMEOUT, BossAccess, Machine, Pool, Site
from shoal.launch.zipapp import agent_zipapp
from shoal.statedir import open_private

__all__ = ["HeldAgent", "Holder", "begin_up"]


class Holder(Protocol):
    """A provider that holds its machines' agents, as :func:`begin_up` sees it."""

    site: Site
    stopping: set[str]  # names taken down here: not preempted
    pools: dict[str, Pool]  # the pools started here, by name
    _lock: threading.Lock  # guards ``stopping`` and ``pools``

    def plan(self, pool: Pool, count: int) -> list[Machine]: ...


def begin_up(
    provider: Holder, pool: Pool, count: int, only: Collection[str] | None
) -> tuple[Path, list[Machine]]:
    """What such a provider's ``up`` does first; the agent zipapp and the machines to start.

    The zipapp is built and the logs folder made; the machines are the
    pool's plan (those named in ``only``, if given), no longer counted as
    taken down here (so that their start is not cancelled); and the pool is
    remembered, for the machines' later ``status`` and ``down``.
    """
    pyz = agent_zipapp(provider.site.agents)
    provider.site.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    todo = [m for m in provider.plan(pool, count) if only is None or m.name in only]
    with provider._lock:
        provider.stopping -= {m.name for m in todo}
        provider.pools[pool.name] = pool
    return pyz, todo


class HeldAgent:
    """The local command that holds one agent, and the log of what it says."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name  # the worker name it registers as
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0

    def failure(self, line: str) -> ShoalError:
        """The error to raise when the agent cannot be started (why in ``line``)."""
        return ShoalError(f"{self.name}: {line}")

    def launch(self, argv: Sequence[str], token: str | None) -> None:
        """Start the command, its output to the log, and hand the agent the token on stdin.

        Without a token (started ahead of its boss), the agent waits for
        :meth:`hand_token`.
        """
        log = open_private(self.log_path)
        self.log_offset = log.tell()
        try:
            self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=log, stderr=log)
        finally:
            log.close()
        if token is not None:
            self.hand_token(token)

    def hand_token(self, token: str) -> None:
        """Give the agent its token, on the stdin it waits on."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(token.encode() + b"\n")
        self.proc.stdin.flush()

    def registered(self, boss: BossAccess) -> bool:
        """Wait until the agent registers (True) or its command ends first (False).

        Registration says the boss took the agent; a command that ends first
        failed, and its log says why (:meth:`last_words`). One that ended
        right after it registered (its bundle's setup failed at once, say)
        did start: the boss heard its goodbye, and the run says why it left.
        """
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while self.proc.poll() is None:
            if boss.registered(self.name):
                return True
            if time.monotonic() > deadline:
                self.stop()
                raise self.failure(
                    f"the agent did not register with the boss within {READY_TIMEOUT:.0f} s "
                    f"(see {self.log_path})"
                )
            time.sleep(0.05)
        return boss.registered(self.name, fresh=True)

    def last_words(self) -> str:
        """Why the command ended, from what it wrote to the log since it started."""
        code = self.proc.returncode if self.proc is not None else None
        return procs.last_words(self.log_path, self.log_offset, code)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def drain(self) -> None:
        """Ask the agent to take no more work and to exit once what runs is done."""
        if self.alive() and self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"drain\n")
                self.proc.stdin.flush()

    def stop(self) -> None:
        """Close the lifeline: the agent stops its attempts and exits; then end the command."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
