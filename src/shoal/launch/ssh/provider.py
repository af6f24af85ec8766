"""The ``ssh`` provider: the hosts of an inventory, one agent on each.

A hosts inventory is an ``ssh`` pool (:func:`pool_of`): its hosts travel in
the pool's ``hosts`` field as plain data, so a keeper in another process gets
them too. A machine is a host; its provider id is ``PID:TICKS`` of the local
ssh command that holds its agent (:mod:`shoal.launch.procs`): ending that
command closes the agent's lifeline, wherever it is.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from shoal.exceptions import ShoalError
from shoal.launch import procs
from shoal.launch.contract import BossAccess, FieldSpec, Machine, Pool, ProviderSchema, Site
from shoal.launch.ssh.agent import SshAgent
from shoal.launch.ssh.client import SshFailed, each_host
from shoal.spec.inventory import Host, Inventory

__all__ = [
    "HOSTS_POOL",
    "SCHEMA",
    "SshProvider",
    "host_fields",
    "host_of",
    "pool_of",
]

# The pool an inventory given with --hosts becomes.
HOSTS_POOL = "hosts"

# An ssh pool of a pool file names its inventory (relative to the pool file);
# the pool file's reader puts the inventory's hosts in the pool's 'hosts'.
SCHEMA = ProviderSchema(
    fields={
        "inventory": FieldSpec("str", required=True, help="a hosts inventory, e.g. hosts.yaml"),
    }
)


def host_fields(host: Host) -> dict[str, Any]:
    """A host as plain data (JSON)."""
    return {
        "name": host.name,
        "address": host.address,
        "user": host.user,
        "port": host.port,
        "identity": host.identity,
        "slots": host.slots,
        "labels": dict(host.labels),
        "python": host.python,
        "ssh_options": list(host.ssh_options),
    }


def host_of(data: Mapping[str, Any]) -> Host:
    """A host from :func:`host_fields`' data."""
    fields = dict(data)
    fields["ssh_options"] = tuple(fields.get("ssh_options") or ())
    fields["labels"] = dict(fields.get("labels") or {})
    return Host(**fields)


def pool_of(inventory: Inventory, name: str = HOSTS_POOL) -> Pool:
    """The ``ssh`` pool of an inventory's hosts, every one of them."""
    return Pool(
        name=name,
        provider="ssh",
        count=len(inventory.hosts),
        fields={
            "inventory": inventory.path,
            "hosts": [host_fields(h) for h in inventory.hosts],
        },
    )


class SshProvider:
    """One agent per host, each held by an ssh command of this process."""

    name = "ssh"
    noun = "ssh host"

    def __init__(self, site: Site) -> None:
        self.site = site
        self.agents: dict[str, SshAgent] = {}
        # Agents started ahead of their boss (spawn), by host, until up adopts them.
        self._early: dict[str, tuple[SshAgent, threading.Thread]] = {}
        self._early_lock = threading.Lock()

    def spawn(self, pool: Pool, url: str) -> None:
        """Start the hosts' agents before their boss exists (``shoal run``); :meth:`up` adopts them.

        In the background, one thread a host: each waits for its master
        connection (opened ahead, see ``connect_ahead``), starts the agent
        with a tunnel to ``url`` (the socket the boss will serve, listening
        already), and the agent loads while the boss does, then waits on its
        stdin for the token. A host whose start fails here is started anew
        by ``up``, which says why if it fails again.
        """
        self.site.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        for host in self.hosts(pool, pool.size):
            agent = self._agent(pool, host)
            thread = threading.Thread(
                target=self._ahead, args=(agent, url), name=f"ssh-ahead-{host.name}", daemon=True
            )
            self._early[host.name] = (agent, thread)
            thread.start()

    def _ahead(self, agent: SshAgent, url: str) -> None:
        from shoal.launch.zipapp import agent_zipapp

        try:
            agent.spawn_ahead(agent_zipapp(self.site.agents), url)
        except SshFailed as e:
            agent.ahead_error = e
        except (OSError, subprocess.SubprocessError) as e:
            agent.ahead_error = SshFailed(agent.host.name, str(e))
        with self._early_lock:
            if agent.discarded:  # the session ended while it started
                agent.stop()

    def discard_spawned(self) -> None:
        """Stop the agents :meth:`spawn` started that no :meth:`up` adopted.

        One still starting (a host slow to answer) is stopped as its start
        ends, without waiting for it here.
        """
        with self._early_lock:
            early, self._early = self._early, {}
            for agent, _ in early.values():
                agent.discarded = True
        for agent, thread in early.values():
            if not thread.is_alive():
                agent.stop()

    def _adopted(self, host: Host, boss: BossAccess) -> SshAgent | None:
        """The host's agent started ahead, given its token and registered; None: start it anew.

        Raises the :class:`SshFailed` its start met (the host refused the key,
        say): starting it again would only meet it again.
        """
        with self._early_lock:
            early = self._early.pop(host.name, None)
        if early is None:
            return None
        agent, thread = early
        thread.join()
        if agent.ahead_error is not None:
            raise agent.ahead_error
        return agent if agent.adopt(boss) else None

    def _agent(self, pool: Pool, host: Host, certs: Sequence[tuple[str, bytes]] = ()) -> SshAgent:
        return SshAgent(
            host,
            labels=self._machine(pool, host).labels,
            log=self.site.logs / f"ssh-{host.name}.log",
            log_cap=self.site.log_cap,
            certs=certs,
        )

    def hosts(self, pool: Pool, count: int) -> list[Host]:
        return [host_of(h) for h in pool.fields.get("hosts", [])][:count]

    def _machine(self, pool: Pool, host: Host) -> Machine:
        return Machine(
            name=host.name,
            pool=pool.name,
            provider=self.name,
            address=host.destination + (f":{host.port}" if host.port else ""),
            slots=host.slots,
            labels={**pool.labels, **host.labels},
        )

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return [self._machine(pool, h) for h in self.hosts(pool, count)]

    def ssh_hosts(self, pool: Pool, machines: Sequence[Machine]) -> list[Host]:
        """The inventory's hosts of these machines, in their order (a machine is a host)."""
        by_name = {h.name: h for h in (host_of(d) for d in pool.fields.get("hosts", []))}
        return [by_name[m.name] for m in machines if m.name in by_name]

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        """Start every host's agent at once; each ``running`` once it registered, or ``failed``."""
        from shoal.launch.zipapp import agent_zipapp

        pyz = agent_zipapp(self.site.agents)
        self.site.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        todo = [h for h in self.hosts(pool, count) if only is None or h.name in only]
        tls = (boss.direct_url or boss.url).startswith("https://")

        def one(host: Host) -> Machine:
            m = self._machine(pool, host)
            agent = self.agents.get(host.name)
            if agent is not None and agent.alive() and agent.proc is not None:
                return m.replace(state="running", provider_id=procs.handle(agent.proc.pid))
            try:
                from shoal.security.certs import machine_certs

                certs = machine_certs(self.site.root / "certs", host.name) if tls else ()
            except ShoalError as e:
                return m.replace(state="failed", detail=str(e))
            try:
                early = self._adopted(host, boss)
                if early is not None:
                    self.agents[host.name] = agent = early
                else:
                    agent = self.agents[host.name] = self._agent(pool, host, certs)
                    agent.start(pyz, boss)
            except SshFailed as e:
                return m.replace(state="failed", detail=e.line)
            except (OSError, subprocess.SubprocessError) as e:
                return m.replace(state="failed", detail=str(e))
            assert agent.proc is not None
            return m.replace(
                state="running",
                provider_id=procs.handle(agent.proc.pid),
                detail="agent copied" if agent.copied else "",
            )

        return each_host(one, todo)

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As given while their ssh command runs; ``stopped`` once it has ended."""
        out = []
        for m in machines:
            agent = self.agents.get(m.name)
            if agent is None or agent.proc is None:  # held by another process
                found = procs.parse_handle(m.provider_id)
                out.append(m if found and procs.alive(*found) else m.replace(state="stopped"))
                continue
            code = agent.proc.poll()
            if code is None:
                out.append(m)
                continue
            # The boss's record of its goodbye says why, where it said one.
            why = procs.last_words(agent.log_path, agent.log_offset, code)
            out.append(m.replace(state="stopped", exit_code=code, detail=why))
        return out

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Close their lifelines (after a drain, if asked); end the ssh commands."""

        def one(m: Machine) -> None:
            agent = self.agents.get(m.name)
            if agent is None or agent.proc is None:
                # Held by a process that is gone (a killed keeper): ending its
                # ssh command closes the agent's lifeline; no drain from here.
                procs.send(m.provider_id, signal.SIGTERM)
                return
            if drain:
                agent.drain()
                agent.proc.wait()
            agent.stop()
            # The master connection would end by itself soon after anyway.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                agent.ssh.close()

        each_host(one, list(machines))
