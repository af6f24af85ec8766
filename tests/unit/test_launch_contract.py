"""The launch contract: the registry, and a fleet over a provider it knows only by contract."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.exceptions import BadInput
from shoal.launch import providers
from shoal.launch.contract import AgentSeen, BossAccess, Machine, Pool, Site
from shoal.launch.fleet import Fleet, take_down


class Book:
    """The machines' record, in memory, as the boss's database keeps it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Machine] = {}
        self.agents: dict[str, AgentSeen] = {}  # what registered, by machine name

    def record(self, owner: str, machines: Sequence[Machine]) -> None:
        for m in machines:
            self.rows[(owner, m.name)] = m.replace(owner=owner)

    def machines(self, owner: str | None = None) -> list[Machine]:
        return [
            m.replace(agent=self.agents.get(m.name))
            for (o, _), m in self.rows.items()
            if owner is None or o == owner
        ]


class Rented:
    """A provider of pretend machines, which checks it is asked only for recorded ones."""

    name = "rented"
    noun = "rented box"
    book: Book
    instances: list[Rented] = []

    def __init__(self, site: Site) -> None:
        self.site = site
        self.running: dict[str, Machine] = {}
        self.asked: list[list[str]] = []
        self.downed: list[tuple[list[str], bool]] = []
        Rented.instances.append(self)

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return [
            Machine(name=f"{pool.name}-{i}", pool=pool.name, provider=self.name, slots=4)
            for i in range(count)
        ]

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        out = []
        for m in self.plan(pool, count):
            if only is not None and m.name not in only:
                continue
            recorded = [r for (_, name), r in self.book.rows.items() if name == m.name]
            assert recorded and recorded[0].state == "requested", "asked before it was recorded"
            if m.name not in self.running:
                self.running[m.name] = m.replace(state="starting", provider_id=f"i-{m.name}")
            out.append(self.running[m.name])
        self.asked.append([m.name for m in out])
        return out

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        self.downed.append(([m.name for m in machines], drain))
        for m in machines:
            self.running.pop(m.name, None)

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        return [m if m.name in self.running else m.replace(state="stopped") for m in machines]


@pytest.fixture
def book() -> Iterator[Book]:
    made = Book()
    Rented.book = made
    Rented.instances = []
    providers.register("rented", Rented)
    yield made
    providers._KNOWN.pop("rented", None)


def fleet(book: Book, tmp_path: Path, owner: str = "up:here") -> Fleet:
    return Fleet(book, owner, Site(tmp_path), BossAccess(url="http://127.0.0.1:1", token=str))


def test_an_unknown_provider_is_refused_in_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as refused:
        providers.get("aws-typo", Site(tmp_path))
    message = str(refused.value)
    assert (
        "aws-typo" in message
        and "known: aws, azure, digitalocean, docker, gce, local, opennebula, openstack, slurm, ssh, vagrant"
        in message
        and "\n" not in message
    )
    assert providers.get("local", Site(tmp_path)).name == "local"
    assert providers.get("ssh", Site(tmp_path)).name == "ssh"


def test_machines_are_recorded_before_the_provider_is_asked_and_as_they_go(
    book: Book, tmp_path: Path
) -> None:
    f = fleet(book, tmp_path)
    started = f.launch(Pool(name="cpu", provider="rented", count=2))
    assert [m.state for m in started] == ["starting", "starting"]
    recorded = {name: m for (_, name), m in book.rows.items()}
    assert recorded["cpu-0"].state == "starting" and recorded["cpu-0"].provider_id == "i-cpu-0"

    # Its agent registers: readiness comes from the boss's record, not from the provider.
    assert not f.boss.registered("cpu-0")
    book.agents["cpu-0"] = AgentSeen(worker_id=7, state="active", registered=1.0)
    assert [m.name for m in f.settle()] == ["cpu-0"]
    assert book.rows[("up:here", "cpu-0")].state == "running"
    assert book.rows[("up:here", "cpu-0")].agent == book.agents["cpu-0"]
    assert f.boss.registered("cpu-0")


def test_an_ended_agent_is_told_once_with_the_reason_it_gave_the_boss(
    book: Book, tmp_path: Path
) -> None:
    f = fleet(book, tmp_path)
    f.launch(Pool(name="cpu", provider="rented", count=2))
    provider = Rented.instances[-1]
    book.agents["cpu-1"] = AgentSeen(7, "stopped", 1.0, reason="bundle setup failed")
    del provider.running["cpu-1"]
    provider.status = lambda ms: [  # type: ignore[method-assign]
        m
        if m.name in provider.running
        else m.replace(state="stopped", exit_code=p.EXIT_SETUP_FAILED, detail="exit code 3")
        for m in ms
    ]
    [(ended, why)] = f.watch()
    assert ended.name == "cpu-1"
    assert why == "bundle setup failed" + p.TAKES_NO_MORE
    assert book.rows[("up:here", "cpu-1")].state == "stopped"
    assert [m.name for m in f.live()] == ["cpu-0"]
    assert f.watch() == []  # told once
    # An agent that said no goodbye: what its provider saw.
    del provider.running["cpu-0"]
    [(_, why)] = f.watch()
    assert why == "exit code 3" + p.TAKES_NO_MORE


def test_restart_starts_only_the_machines_named(book: Book, tmp_path: Path) -> None:
    f = fleet(book, tmp_path)
    f.launch(Pool(name="cpu", provider="rented", count=3))
    provider = Rented.instances[-1]
    del provider.running["cpu-0"], provider.running["cpu-2"]
    f.watch()
    again = f.restart(["cpu-2"])
    assert [m.name for m in again] == ["cpu-2"] and provider.asked[-1] == ["cpu-2"]
    assert "cpu-0" not in provider.running


def test_stop_takes_down_every_live_machine_and_records_it(book: Book, tmp_path: Path) -> None:
    f = fleet(book, tmp_path)
    f.launch(Pool(name="cpu", provider="rented", count=2))
    f.stop(drain=True)
    assert Rented.instances[-1].downed == [(["cpu-0", "cpu-1"], True)]
    assert {m.state for m in book.rows.values()} == {"stopped"}
    assert f.live() == []


def test_a_launcher_gone_its_recorded_machines_are_found_and_stopped(
    book: Book, tmp_path: Path
) -> None:
    fleet(book, tmp_path, owner="up:a").launch(Pool(name="cpu", provider="rented", count=2))
    fleet(book, tmp_path, owner="up:b").launch(Pool(name="gpu", provider="rented", count=1))
    # The first launcher dies; another process stops its machines from the record alone.
    stopped = take_down(book, "up:a", Site(tmp_path), drain=False)
    assert sorted(m.name for m in stopped) == ["cpu-0", "cpu-1"]
    assert Rented.instances[-1].downed == [(["cpu-0", "cpu-1"], False)]
    states = {name: m.state for (_, name), m in book.rows.items()}
    assert states == {"cpu-0": "stopped", "cpu-1": "stopped", "gpu-0": "starting"}


class Clashing(Rented):
    """Names its machines as Rented's first pool does, whatever the pool."""

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return [Machine(name="cpu-0", pool=pool.name, provider="clashing")]


def test_two_pools_may_not_name_the_same_machine(book: Book, tmp_path: Path) -> None:
    f = fleet(book, tmp_path)
    f.launch(Pool(name="cpu", provider="rented", count=1))
    providers.register("clashing", Clashing)
    try:
        with pytest.raises(BadInput, match="cpu-0 are in two pools"):
            f.launch(Pool(name="other", provider="clashing", count=1))
    finally:
        providers._KNOWN.pop("clashing", None)
    assert [m.pool for m in book.rows.values()] == ["cpu"]  # nothing recorded, nothing asked


def test_pools_and_machines_travel_as_plain_data() -> None:
    pool = Pool(name="hpc", provider="slurm", min=0, max=50, slots=32, fields={"partition": "x"})
    assert Pool.from_dict(pool.to_dict()) == pool
    m = Machine(
        name="h1",
        pool="hosts",
        provider="ssh",
        labels={"gpu": True},
        price=0.25,
        agent=AgentSeen(3, "active", 2.0),
    )
    assert Machine.from_dict(m.to_dict()) == m


def test_an_inventory_is_an_ssh_pool_that_travels_as_plain_data(tmp_path: Path) -> None:
    import json

    from shoal.launch.pools import hosts_pool, run_pools
    from shoal.spec.inventory import parse_text

    inventory = parse_text(
        "hosts:\n"
        "  - {name: a, address: 10.0.0.5, user: me, port: 2222, slots: 4, labels: {gpu: true}}\n"
        "  - {address: node2}\n"
    )
    pool = hosts_pool(inventory)
    # What the keeper gets on its standard input plans the same machines.
    again = Pool.from_dict(json.loads(json.dumps(pool.to_dict())))
    ssh = providers.get(pool.provider, Site(tmp_path))
    planned = ssh.plan(again, again.size)
    assert [(m.name, m.address, m.slots, dict(m.labels)) for m in planned] == [
        ("a", "me@10.0.0.5:2222", 4, {"gpu": True}),
        ("node2", "node2", 1, {}),
    ]
    assert [p.provider for p in run_pools(2, 3, inventory)] == ["ssh", "local"]
    assert [p.provider for p in run_pools(2, 3, None)] == ["local"]


def test_a_machine_held_by_a_process_gone_is_found_and_stopped_by_its_handle(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess

    from shoal.launch import procs

    # Stands for the ssh command a killed keeper left behind.
    holder = subprocess.Popen(["sleep", "60"])
    try:
        m = Machine(name="h1", pool="hosts", provider="ssh", provider_id=procs.handle(holder.pid))
        ssh = providers.get("ssh", Site(tmp_path))
        assert ssh.status([m]) == [m]  # as recorded, while its holder runs
        ssh.down([m], drain=False)
        assert holder.wait(30) == -signal.SIGTERM  # its agent's lifeline closes
        assert ssh.status([m])[0].state == "stopped"
        # A handle whose PID was reused names another process: left alone.
        stale = m.replace(provider_id=f"{holder.pid}:1")
        assert not procs.send(stale.provider_id)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_an_agent_that_registered_then_ended_at_once_did_start(tmp_path: Path) -> None:
    # Its bundle's setup failed on its first task: it registered, said goodbye
    # and ended between two looks. The host started (the run says why its
    # worker left); it is no host that failed to start.
    import sys

    from shoal.launch.lifeline import HeldAgent

    looks: list[bool] = []

    def registered(name: str, fresh: bool = False) -> bool:
        looks.append(fresh)
        return fresh  # only a look made now sees it

    agent = HeldAgent("h3", tmp_path / "h3.log")
    agent.launch([sys.executable, "-c", "import sys; sys.stdin.readline()"], "token")
    assert agent.proc is not None
    agent.proc.wait(30)
    try:
        access = BossAccess(url="http://127.0.0.1:1", token=str, registered=registered)
        assert agent.registered(access)
        assert looks[-1] is True
    finally:
        agent.stop()  # closes its stdin
