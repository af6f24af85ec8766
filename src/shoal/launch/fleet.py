"""The machines one launcher holds, whatever their provider.

``shoal run`` (:mod:`shoal.session`) and the keeper of ``shoal up``
(:mod:`shoal.launch.keeper`) each hold a :class:`Fleet`: it records every
machine in the boss's database before asking its provider for it, tells
when a machine's agent has registered (readiness) or ended (and why: the
reason its agent gave the boss when it said goodbye), starts lost ones
again, and takes them all down. It knows providers only through the
contract (:mod:`shoal.launch.contract`) and the registry
(:mod:`shoal.launch.providers`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace

from shoal import protocol as p
from shoal.exceptions import BadInput
from shoal.launch import providers
from shoal.launch.book import MachineBook
from shoal.launch.contract import AgentSeen, BossAccess, Machine, Pool, Provider, Site

__all__ = ["Fleet", "take_down", "why_stopped"]

# How long the book's answer to "has it registered?" is reused: providers
# ask it for every machine they wait for, several times a second.
SEEN_FOR = 0.2


def why_stopped(m: Machine, told: Machine | None) -> str:
    """Why a machine's agent ended: its goodbye's reason, else what its provider saw."""
    reason = told.agent.reason if told is not None and told.agent is not None else ""
    why = reason or m.detail or "its agent ended"
    if m.exit_code == p.EXIT_SETUP_FAILED and not why.endswith(p.TAKES_NO_MORE):
        why += p.TAKES_NO_MORE
    return why


class Fleet:
    """Machines from any providers, recorded under one owner in one book."""

    def __init__(
        self,
        book: MachineBook,
        owner: str,
        site: Site,
        boss: BossAccess,
        *,
        given: Mapping[str, Provider] | None = None,
    ) -> None:
        self.book = book
        self.owner = owner
        self.site = site
        self.boss = replace(boss, registered=self._registered, note=self._note)
        self.pools: dict[str, Pool] = {}
        self.machines: dict[str, Machine] = {}
        self._providers: dict[str, Provider] = {}
        # Provider instances made before the fleet, by pool name (agents spawned ahead).
        self._given = dict(given or {})
        self._lock = threading.Lock()
        self._seen: dict[str, Machine] = {}
        self._seen_at = 0.0

    # -- bringing machines up ---------------------------------------------

    def provider(self, pool: Pool) -> Provider:
        """The provider instance that holds this pool's machines."""
        with self._lock:
            if pool.name not in self._providers:
                given = self._given.pop(pool.name, None)
                self._providers[pool.name] = given or providers.get(pool.provider, self.site)
                self.pools[pool.name] = pool
                if pool.provider != "local":
                    # So that `shoal down` (its provider's sweep) and `--pool NAME`
                    # reach its machines whatever happens to us.
                    from shoal.launch.pools import remember

                    remember(self.site, [pool])
            return self._providers[pool.name]

    def plan(self, pool: Pool, count: int | None = None) -> list[Machine]:
        """The machines the pool would have (nothing is started or recorded)."""
        return self.provider(pool).plan(pool, pool.size if count is None else count)

    def launch(self, pool: Pool, count: int | None = None) -> list[Machine]:
        """Record the pool's machines, then ask their provider for them; how each went."""
        n = pool.size if count is None else count
        provider = self.provider(pool)
        planned = provider.plan(pool, n)
        with self._lock:
            taken = [m.name for m in planned if self.machines.get(m.name, m).pool != pool.name]
        if taken:
            raise BadInput(f"machine names {', '.join(taken)} are in two pools: rename one")
        self.record([m.replace(state="requested") for m in planned])
        try:
            started = provider.up(pool, n, self.boss)
        except BaseException as e:
            self.record([m.replace(state="failed", detail=str(e)) for m in planned])
            raise
        self.record(started)
        return started

    def grow(self, pool: Pool, count: int) -> list[Machine]:
        """Record ``count`` more machines for the pool (``requested``); start them with :meth:`start`.

        Rented machines get names never used before (a terminated VM keeps its
        record); others (hosts, local workers) reuse the names of stopped ones.
        """
        provider = self.provider(pool)
        rented = providers.schema(pool.provider).rented
        with self._lock:
            mine = [m for m in self.machines.values() if m.pool == pool.name]
        taken = {m.name for m in mine if rented or m.live}
        planned = provider.plan(pool, len(taken) + count)
        fresh = [m for m in planned if m.name not in taken][:count]
        self.record([m.replace(state="requested") for m in fresh])
        return fresh

    def start(self, pool: Pool, names: Collection[str]) -> list[Machine]:
        """Ask the pool's provider for these recorded machines; how each went."""
        with self._lock:
            mine = [m for m in self.machines.values() if m.pool == pool.name]
        top = max((_index(m.name, pool.name) for m in mine), default=0)
        try:
            started = self.provider(pool).up(pool, max(top, len(mine)), self.boss, only=names)
        except BaseException as e:
            self.record([self.machines[n].replace(state="failed", detail=str(e)) for n in names])
            raise
        self.record(started)
        return started

    def end(self, names: Collection[str], *, state: str, detail: str) -> list[Machine]:
        """Stop these machines now (they took too long to start, or sat idle): ``state`` with why."""
        by_pool: dict[str, list[Machine]] = {}
        with self._lock:
            for n in names:
                m = self.machines.get(n)
                if m is not None and m.live:
                    by_pool.setdefault(m.pool, []).append(m)
        ended: list[Machine] = []
        for pool_name, machines in by_pool.items():
            self.provider(self.pools[pool_name]).down(machines, False)
            ended += [m.replace(state=state, detail=detail) for m in machines]
        self.record(ended)
        return ended

    def restart(self, names: Collection[str]) -> list[Machine]:
        """Start these machines again (their agents ended); how each went."""
        out: list[Machine] = []
        for pool_name, pool in list(self.pools.items()):
            mine = [n for n in names if n in self.machines and self.machines[n].pool == pool_name]
            if not mine:
                continue
            self.record([self.machines[n].replace(state="requested") for n in mine])
            started = self.provider(pool).up(pool, pool.size, self.boss, only=mine)
            self.record(started)
            out += started
        return out

    def _note(self, m: Machine) -> None:
        """A provider's word on a machine it is starting (its id, say), recorded at once."""
        self.record([m])

    def record(self, machines: Sequence[Machine]) -> None:
        """Note these machines here and in the book."""
        with self._lock:
            for m in machines:
                self.machines[m.name] = m
        self.book.record(self.owner, machines)

    # -- watching them ------------------------------------------------------

    def _book(self, fresh: bool = False) -> dict[str, Machine]:
        """The book's machines of this owner, by name (from a moment ago unless ``fresh``)."""
        with self._lock:
            if not fresh and time.monotonic() - self._seen_at < SEEN_FOR:
                return self._seen
        seen = {m.name: m for m in self.book.machines(self.owner)}
        with self._lock:
            self._seen, self._seen_at = seen, time.monotonic()
        return seen

    def recorded(self) -> dict[str, Machine]:
        """This owner's machines as the book has them now (with the times it stamped), by name."""
        return self._book(fresh=True)

    def _registered(self, name: str, fresh: bool = False) -> bool:
        told = self._book(fresh=fresh).get(name)
        return told is not None and told.agent is not None

    def settle(self) -> list[Machine]:
        """Machines whose agent registered are ``running``, with the worker it is; those."""
        seen = self._book(fresh=True)
        ready = []
        for m in self.live():
            told = seen.get(m.name)
            if told is not None and told.agent is not None and m.agent != told.agent:
                ready.append(m.replace(state="running", agent=told.agent))
        if ready:
            self.record(ready)
        return ready

    def live(self) -> list[Machine]:
        """The machines that have not stopped or failed."""
        with self._lock:
            return [m for m in self.machines.values() if m.live]

    def watch(self) -> list[tuple[Machine, str]]:
        """Machines whose agent ended since the last look, with why; each told once.

        What a provider says of a live machine (where it runs, why it waits:
        a batch job in a queue) is recorded too, when it changed.
        """
        ended: list[Machine] = []
        for pool_name, pool in list(self.pools.items()):
            mine = [m for m in self.live() if m.pool == pool_name and m.state != "requested"]
            if mine:
                said = self.provider(pool).status(mine)
                ended += [m for m in said if not m.live]
                self._note_live(m for m in said if m.live)
        if not ended:
            return []
        seen = self._book(fresh=True)
        out = [(m, why_stopped(m, seen.get(m.name))) for m in ended]
        # A machine its provider took away stays 'preempted'; any other, 'stopped'.
        self.record(
            [
                m.replace(state="preempted" if m.state == "preempted" else "stopped", detail=why)
                for m, why in out
            ]
        )
        return [(self.machines[m.name], why) for m, why in out]

    def _note_live(self, seen: Iterable[Machine]) -> None:
        """Record the address and detail a provider gives live machines, where they changed."""
        changed = []
        with self._lock:
            for s in seen:
                m = self.machines.get(s.name)
                if m is not None and m.live and (s.address, s.detail) != (m.address, m.detail):
                    # Onto the machine as recorded now: it may have registered meanwhile.
                    changed.append(m.replace(address=s.address, detail=s.detail))
        if changed:
            self.record(changed)

    def wait_running(self, names: Collection[str], timeout: float) -> list[Machine]:
        """Wait until each named machine runs (its agent registered) or ended; them."""
        deadline = time.monotonic() + timeout
        while True:
            self.settle()
            self.watch()
            with self._lock:
                waiting = [
                    n for n in names if n in self.machines and self.machines[n].state == "starting"
                ]
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        with self._lock:
            return [self.machines[n] for n in names if n in self.machines]

    # -- taking them down ---------------------------------------------------

    def stop(self, *, drain: bool = False) -> list[Machine]:
        """Take every live machine down (``drain``: after what runs); those stopped."""
        stopped: list[Machine] = []
        for pool_name, pool in list(self.pools.items()):
            mine = [m for m in self.live() if m.pool == pool_name]
            if mine:
                self.provider(pool).down(mine, drain)
                stopped += mine
        if not stopped:
            return []
        # The worker each one ran, for the record: one may have registered just now.
        seen = self._book(fresh=True)
        stopped = [
            m.replace(state="stopped", detail="taken down", agent=_agent(seen.get(m.name), m))
            for m in stopped
        ]
        self.record(stopped)
        return stopped


def _index(name: str, pool: str) -> int:
    """The number in a machine name ``POOL-N`` (0 when it has none)."""
    tail = name.removeprefix(f"{pool}-")
    return int(tail) if tail != name and tail.isdigit() else 0


def _agent(told: Machine | None, m: Machine) -> AgentSeen | None:
    return told.agent if told is not None and told.agent is not None else m.agent


def take_down(book: MachineBook, owner: str, site: Site, *, drain: bool) -> list[Machine]:
    """Stop the live machines ``owner`` recorded, through their providers (a launcher gone)."""
    left = [m for m in book.machines(owner) if m.live]
    by_provider: dict[str, list[Machine]] = {}
    for m in left:
        by_provider.setdefault(m.provider, []).append(m)
    for name, machines in by_provider.items():
        providers.get(name, site).down(machines, drain)
    stopped = [m.replace(state="stopped", detail="taken down") for m in left]
    book.record(owner, stopped)
    return stopped
