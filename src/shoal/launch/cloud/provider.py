"""The cloud providers: a VM per machine through libcloud, then driven over ssh.

One class serves every cloud (:mod:`shoal.launch.cloud.kinds` holds what
differs). Starting a machine:

1. the VM is created in ONE API call, tagged ``shoal-boss`` (this state
   folder's boss, :meth:`Site.boss_tag`), ``shoal-pool`` and ``shoal-machine``,
   with user-data that puts the user's public key on it and arms the idle
   watchdog (:mod:`shoal.launch.cloud.watchdog`); the machine was recorded
   (``requested``) before the call, and its provider id is recorded as soon
   as the call answers;
2. once the cloud says it runs and gives it the address the pool asks for
   (``address: public | private``), ssh is tried until it answers, within
   the pool's ``boot_timeout``;
3. from there it is an ssh host like any other (:class:`SshAgent`: the agent
   zipapp, a reverse tunnel to the boss, bundles by hash), whose agent
   touches the watchdog's file while it runs.

A VM that cannot be made to run a worker is terminated at once: nothing is
left running that does no work. ``down`` terminates; a machine whose id was
never recorded (its launcher was killed mid-call) is found by its tags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.exceptions import BadInput, ShoalError
from shoal.launch.contract import BossAccess, Machine, Pool, Site, numbered
from shoal.launch.lifeline import begin_up
from shoal.launch.ssh.agent import SshAgent
from shoal.launch.ssh.client import SshFailed, SshHost, each_host, ssh_error
from shoal.spec.inventory import Host

if TYPE_CHECKING:
    from shoal.launch.cloud.api import Cloud, NodeInfo

__all__ = [
    "ALIVE_FILE",
    "CloudProvider",
    "aws",
    "azure",
    "boss_tags",
    "digitalocean",
    "gce",
    "opennebula",
    "openstack",
]

# Between looks at a booting VM (the cloud's API, then its ssh port): soon at
# first, then less often, up to the last.
POLL_FIRST, POLL_EVERY = 0.25, 2.0
# What the agent on a VM touches while it runs; the watchdog reads it (and
# made it, for the VM's user: the agent can touch it, not make it).
ALIVE_FILE = "/var/lib/shoal/agent-alive"
# Cloud states that say the VM is gone or going.
_GONE = ("terminated", "stopped", "stopping")


def boss_tags(site: Site, pool: str | None = None, machine: str | None = None) -> dict[str, str]:
    """The tags shoal puts on a rented machine (those given), to find it again.

    ``shoal-boss``: the state folder's boss; ``shoal-owner``: which launcher
    (``up`` or ``run``) started it, so that ``shoal down`` spares the
    machines of a ``shoal run`` that still runs.
    """
    tags = {"shoal-boss": site.boss_tag()}
    if pool is not None:
        tags["shoal-pool"] = pool
    if machine is not None:
        tags["shoal-machine"] = machine
    return tags


class CloudProvider:
    """VMs of one cloud (``kind``: aws, gce, …), each an ssh host once it answers."""

    noun = "cloud VM"

    def __init__(self, site: Site, kind: str) -> None:
        self.site = site
        self.name = kind
        self.agents: dict[str, SshAgent] = {}
        self.stopping: set[str] = set()  # names taken down here: not preempted
        self.pools: dict[str, Pool] = {}  # the pools started here, by name
        self._clouds: dict[str, Cloud] = {}
        self._lock = threading.Lock()

    # -- the cloud's API ------------------------------------------------------

    def cloud(self, pool: Pool) -> Cloud:
        """The API client for the pool's cloud account and place (one per distinct fields)."""
        from shoal.launch.cloud.api import Cloud

        key = json.dumps(dict(pool.fields), sort_keys=True, default=str)
        with self._lock:
            if key not in self._clouds:
                self._clouds[key] = Cloud(self.name, pool.fields)
            return self._clouds[key]

    # -- the contract ---------------------------------------------------------

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return numbered(pool, self.name, count, pool.slots or 1)

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        """Create each VM, wait until it answers on ssh, start its agent; each as it went."""
        pyz, todo = begin_up(self, pool, count, only)
        return each_host(lambda m: self._one(pool, m, boss, pyz), todo)

    def _one(self, pool: Pool, m: Machine, boss: BossAccess, pyz: Path) -> Machine:
        cloud = self.cloud(pool)
        node = self._existing(cloud, pool, m)
        try:
            if node is None:
                node = cloud.create(
                    m.name,
                    {**boss_tags(self.site, pool.name, m.name), "shoal-owner": self.site.launcher},
                    self._user_data(pool),
                    _public_key(pool),
                )
            m = m.replace(state="starting", provider_id=node.id, price=node.price)
            boss.note(m)
            if self._cancelled(m.name):
                raise ShoalError("taken down while it was starting")
            node = self._wait_running(cloud, pool, node)
            m = m.replace(address=_address(pool, node), detail="booting")
            boss.note(m)
            host = self.host(pool, m)
            self._wait_ssh(pool, host)
            agent = self._agent(pool, host, m)
            agent.start(pyz, boss)
            assert agent.proc is not None
            return m.replace(state="running", detail="agent copied" if agent.copied else "")
        except (ShoalError, OSError, subprocess.SubprocessError) as e:
            line = e.line if isinstance(e, SshFailed) else str(e)
            if m.provider_id:
                # A VM that runs no worker costs money for nothing: terminate it now.
                with contextlib.suppress(ShoalError, OSError):
                    cloud.destroy([m.provider_id])
            return m.replace(state="failed", detail=line)

    def _existing(self, cloud: Cloud, pool: Pool, m: Machine) -> NodeInfo | None:
        """The live VM already made for this machine (a restarted agent), if any."""
        agent = self.agents.get(m.name)
        if agent is None:
            return None
        found = cloud.find(boss_tags(self.site, pool.name, m.name))
        live = [n for n in found if n.state not in _GONE]
        return live[0] if live else None

    def _cancelled(self, name: str) -> bool:
        with self._lock:
            return name in self.stopping

    def _user_data(self, pool: Pool) -> str:
        from shoal.launch.cloud.watchdog import user_data

        return user_data(
            idle_stop=float(pool.idle_stop or 600.0),
            public_key=_public_key(pool),
            user=str(_field(pool, "user")),
        )

    def _wait_running(self, cloud: Cloud, pool: Pool, node: NodeInfo) -> NodeInfo:
        """The VM once the cloud says it runs and has the address the pool asks for."""
        deadline = time.monotonic() + _boot_timeout(pool)
        wait = POLL_FIRST
        while True:
            if self._cancelled(node.name):
                raise ShoalError("taken down while it was starting")
            if node.state == "running" and _address(pool, node, strict=False):
                return node
            if node.state in _GONE:
                raise ShoalError(f"the cloud {node.state} it before it ran")
            if time.monotonic() > deadline:
                raise ShoalError(
                    f"the cloud did not run it within {_boot_timeout(pool):.0f} s "
                    f"(still {node.state}): raise the pool's boot_timeout, or check the image"
                )
            time.sleep(wait)
            wait = min(POLL_EVERY, wait * 2)
            node = cloud.nodes([node.id]).get(node.id) or dataclasses.replace(
                node, state="terminated"
            )

    def _wait_ssh(self, pool: Pool, host: Host) -> None:
        """Until ssh on the VM answers (sshd starts after the cloud says it runs)."""
        deadline = time.monotonic() + _boot_timeout(pool)
        ssh = SshHost(host)
        wait = POLL_FIRST
        while True:
            if self._cancelled(host.name):
                raise ShoalError("taken down while it was starting")
            done = ssh.run("true", timeout=30)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                line = ssh_error(done.stderr.decode(errors="replace"))
                raise SshFailed(host.name, f"no ssh within {_boot_timeout(pool):.0f} s: {line}")
            time.sleep(wait)
            wait = min(POLL_EVERY, wait * 2)

    def _agent(self, pool: Pool, host: Host, m: Machine) -> SshAgent:
        agent = SshAgent(
            host,
            labels=m.labels,
            log=self.site.logs / f"{self.name}-{m.name}.log",
            log_cap=self.site.log_cap,
            options=[f"--alive-file={ALIVE_FILE}"],
        )
        self.agents[m.name] = agent
        return agent

    def host(self, pool: Pool, m: Machine) -> Host:
        """How ssh reaches a machine of the pool: its address, the pool's user and key."""
        known = self.site.root / "ssh" / f"known_hosts-{self.name}-{m.name}"
        known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        options = [str(o) for o in pool.fields.get("ssh_options") or []]
        return Host(
            name=m.name,
            address=m.address,
            user=str(_field(pool, "user")),
            identity=str(_key_path(pool)),
            slots=pool.slots or 0,
            labels=dict(m.labels),
            python=str(_field(pool, "python")),
            # A new VM has a new host key: trusted on first use, one file per machine.
            ssh_options=(
                *("-o", "StrictHostKeyChecking=accept-new"),
                *("-o", f"UserKnownHostsFile={known}"),
                *options,
            ),
        )

    def ssh_hosts(self, pool: Pool, machines: Sequence[Machine]) -> list[Host]:
        """The machines as ssh hosts (``shoal ssh/pull/inject --pool``)."""
        return [self.host(pool, m) for m in machines if m.address]

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As the cloud and the agents say: a VM the cloud ended behind shoal's back is preempted."""
        by_pool: dict[str, list[Machine]] = {}
        for m in machines:
            by_pool.setdefault(m.pool, []).append(m)
        seen: dict[str, Machine] = {}
        for pool_name, mine in by_pool.items():
            pool = self._pool(pool_name)
            ids = [m.provider_id for m in mine if m.provider_id]
            nodes = self.cloud(pool).nodes(ids) if pool is not None and ids else {}
            for m in mine:
                node = nodes.get(m.provider_id)
                gone = pool is not None and m.provider_id and (node is None or node.state in _GONE)
                if gone and not self._cancelled(m.name):
                    said = "gone" if node is None else node.state
                    seen[m.name] = m.replace(
                        state="preempted", detail=f"the cloud says it is {said}"
                    )
                    continue
                seen[m.name] = self._agent_status(m)
                if not seen[m.name].live and pool is not None and m.provider_id:
                    # Its agent ended: a VM that runs no worker is terminated at
                    # once (the pool starts a new one when work waits).
                    with contextlib.suppress(ShoalError, OSError):
                        self.cloud(pool).destroy([m.provider_id])
        return [seen[m.name] for m in machines]

    def _agent_status(self, m: Machine) -> Machine:
        agent = self.agents.get(m.name)
        if agent is None or agent.proc is None:
            return m
        code = agent.proc.poll()
        if code is None:
            return m
        from shoal.launch import procs

        why = procs.last_words(agent.log_path, agent.log_offset, code)
        return m.replace(state="stopped", exit_code=code, detail=why)

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Stop the agents (after a drain, if asked), then terminate the VMs."""
        with self._lock:
            self.stopping |= {m.name for m in machines}

        def one(m: Machine) -> None:
            agent = self.agents.pop(m.name, None)
            if agent is not None:
                if drain and agent.proc is not None:
                    agent.drain()
                    agent.proc.wait()
                agent.stop()
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    agent.ssh.close()

        each_host(one, list(machines))
        self.terminate(machines)

    def terminate(
        self, machines: Sequence[Machine], pools: Mapping[str, Pool] | None = None
    ) -> None:
        """Terminate the machines' VMs; those whose id was never recorded, found by their tags."""
        by_pool: dict[str, list[Machine]] = {}
        for m in machines:
            by_pool.setdefault(m.pool, []).append(m)
        for pool_name, mine in by_pool.items():
            pool = (pools or {}).get(pool_name) or self._pool(pool_name)
            if pool is None:
                raise BadInput(
                    f"cannot reach the cloud of pool {pool_name}: its pool is not known here "
                    "(give the pool file again: shoal down --pool FILE)"
                )
            cloud = self.cloud(pool)
            ids = [m.provider_id for m in mine if m.provider_id]
            unknown = [m.name for m in mine if not m.provider_id]
            for name in unknown:
                ids += [n.id for n in cloud.find(boss_tags(self.site, pool_name, name))]
            if ids:
                cloud.destroy(ids)

    def sweep(self, pool: Pool, *, spare: str | None = None) -> list[str]:
        """Terminate every VM of this boss in the pool's cloud account and place; their ids.

        ``spare``: an owner (``run``) whose VMs are left alone: it still runs.
        """
        cloud = self.cloud(pool)
        found = [
            n
            for n in cloud.find(boss_tags(self.site))
            if n.state != "terminated" and (spare is None or n.tags.get("shoal-owner") != spare)
        ]
        if found:
            cloud.destroy([n.id for n in found])
        return [n.id for n in found]

    def _pool(self, name: str) -> Pool | None:
        """The pool so named: as this provider started it, else as the state folder remembers."""
        with self._lock:
            if name in self.pools:
                return self.pools[name]
        from shoal.launch.pools import remembered

        return remembered(self.site).get(name)


def _field(pool: Pool, name: str) -> Any:
    """A provider field of the pool, at the cloud's default where the pool leaves it out."""
    from shoal.launch.cloud.kinds import with_defaults

    return with_defaults(pool.provider, pool.fields).get(name)


def _boot_timeout(pool: Pool) -> float:
    return float(_field(pool, "boot_timeout"))


def _key_path(pool: Pool) -> Path:
    return Path(str(_field(pool, "key"))).expanduser()


def _public_key(pool: Pool) -> str:
    """The public half of the pool's ssh key, put on every VM."""
    from shoal.launch.cloud.kinds import public_key

    return public_key(str(_field(pool, "key")))


def _address(pool: Pool, node: NodeInfo, *, strict: bool = True) -> str:
    """The address shoal connects to: ``address: private``, else public where it has one."""
    want = str(_field(pool, "address"))
    found = node.address(want)
    if found or not strict:
        return found
    raise ShoalError(f"the cloud gave it no {want} address")


def _maker(kind: str) -> Callable[[Site], CloudProvider]:
    def make(site: Site) -> CloudProvider:
        return CloudProvider(site, kind)

    make.__name__ = kind
    return make


aws = _maker("aws")
gce = _maker("gce")
azure = _maker("azure")
digitalocean = _maker("digitalocean")
openstack = _maker("openstack")
opennebula = _maker("opennebula")
