"""The autoscaler: machines that never join are terminated and replaced with back-off;
preempted ones have their workers told gone, and are replaced."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shoal.launch import providers
from shoal.launch.autoscale import Autoscaler
from shoal.launch.contract import AgentSeen, BossAccess, Machine, Pool, ProviderSchema, Site
from shoal.launch.fleet import Fleet


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Book:
    """A machine book in memory that stamps times from the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, Machine] = {}
        self.agents: dict[str, AgentSeen] = {}

    def record(self, owner: str, machines: Sequence[Machine]) -> None:
        for m in machines:
            before = self.rows.get(m.name)
            requested = (
                self.clock() if before is None or m.state == "requested" else before.requested
            )
            self.rows[m.name] = m.replace(owner=owner, requested=requested, agent=None)

    def machines(self, owner: str | None = None) -> list[Machine]:
        return [m.replace(agent=self.agents.get(m.name)) for m in self.rows.values()]


class Fake:
    """A provider whose machines start only when the test says, and vanish when it says."""

    name = "fake"
    noun = "fake machine"
    instances: dict[str, str] = {}  # name -> "starting", "running", "gone", "terminated"

    def __init__(self, site: Site) -> None:
        pass

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return [
            Machine(name=f"{pool.name}-{i + 1}", pool=pool.name, provider="fake", slots=1)
            for i in range(count)
        ]

    def up(
        self, pool: Pool, count: int, boss: BossAccess, *, only: Collection[str] | None = None
    ) -> list[Machine]:
        out = []
        for m in self.plan(pool, count):
            if only is None or m.name in only:
                Fake.instances[m.name] = "starting"
                out.append(m.replace(state="starting", provider_id=m.name))
        return out

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        for m in machines:
            Fake.instances[m.name] = "terminated"

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        return [
            m.replace(state="preempted") if Fake.instances.get(m.name) == "gone" else m
            for m in machines
        ]


@pytest.fixture
def fake() -> Iterator[None]:
    Fake.instances = {}
    providers.register("fake", Fake, ProviderSchema(fields={}, rented=True))
    yield
    providers._KNOWN.pop("fake", None)
    providers._SCHEMAS.pop("fake", None)


def _setup(tmp_path: Path, pool: Pool) -> tuple[Clock, Book, Fleet, Autoscaler, list[Any]]:
    clock = Clock()
    book = Book(clock)
    fleet = Fleet(book, "up:test", Site(tmp_path), BossAccess(url="", token=lambda: ""))
    forgotten: list[Any] = []
    demand = {"ready": [{"slots": 1, "host": None, "requires": {}, "n": 1}], "workers": []}
    sizer = Autoscaler(
        fleet,
        [pool],
        lambda: {**demand, "now": clock()},
        forget=lambda worker, why: forgotten.append((worker, why)),
        clock=clock,
    )
    return clock, book, fleet, sizer, forgotten


def test_a_machine_that_never_joins_is_terminated_and_the_pool_backs_off(
    fake: None, tmp_path: Path
) -> None:
    pool = Pool(name="cpu", provider="fake", min=0, max=1, fields={"boot_timeout": 30})
    clock, book, _fleet, sizer, _ = _setup(tmp_path, pool)
    sizer.step()
    sizer.join()
    assert Fake.instances == {"cpu-1": "starting"}
    clock.now += 30 + 60 + 1  # past its boot timeout and the time an agent has to register
    sizer.step()
    assert Fake.instances["cpu-1"] == "terminated"
    assert book.rows["cpu-1"].state == "failed"
    assert "did not run a worker within 90 s" in book.rows["cpu-1"].detail
    # Work still waits, but the pool backs off before it tries again.
    sizer.step()
    sizer.join()
    assert set(Fake.instances) == {"cpu-1"}
    assert sizer.backoff["cpu"] == 10.0


def test_a_preempted_machine_has_its_worker_told_gone_and_is_replaced(
    fake: None, tmp_path: Path
) -> None:
    pool = Pool(name="cpu", provider="fake", min=0, max=1)
    clock, book, fleet, sizer, forgotten = _setup(tmp_path, pool)
    sizer.step()
    sizer.join()
    book.agents["cpu-1"] = AgentSeen(7, "active", clock.now + 5)
    clock.now += 10
    sizer.step()
    assert fleet.machines["cpu-1"].state == "running"
    assert sizer.boot["cpu"] == [5.0]  # from being asked for to its agent registering

    Fake.instances["cpu-1"] = "gone"
    sizer.step()
    sizer.join()
    assert book.rows["cpu-1"].state == "preempted"
    assert forgotten and forgotten[0][0] == 7 and "preempted" in forgotten[0][1]
    # Work waits: a new machine (a new name: rented machines keep their records).
    assert Fake.instances.get("cpu-2") == "starting"


def test_a_machine_that_ends_before_its_worker_registers_makes_the_pool_back_off(
    fake: None, tmp_path: Path
) -> None:
    # A batch job that Slurm cannot launch ends at once, again and again.
    pool = Pool(name="cpu", provider="fake", min=0, max=1)
    _clock, book, _fleet, sizer, forgotten = _setup(tmp_path, pool)
    sizer.step()
    sizer.join()
    assert Fake.instances == {"cpu-1": "starting"}
    Fake.instances["cpu-1"] = "gone"
    sizer.step()
    sizer.join()
    assert book.rows["cpu-1"].state == "preempted"
    assert not forgotten  # it had no worker to forget
    # Work still waits, but the pool backs off before it tries again.
    assert set(Fake.instances) == {"cpu-1"}
    assert sizer.backoff["cpu"] == 10.0
