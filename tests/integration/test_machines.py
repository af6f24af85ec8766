"""Machines in the database (SQLite and PostgreSQL), and the local provider through the contract."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.exceptions import BadInput
from shoal.launch import procs, providers
from shoal.launch.book import BossBook, StoreBook
from shoal.launch.contract import BossAccess, Machine, Pool, Site
from shoal.launch.fleet import Fleet
from shoal.machines import Machines
from shoal.scheduler import Scheduler
from shoal.store import Store
from tests.conftest import RunningBoss, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = Store(db_url)
    yield made
    made.close()


def machine(name: str, state: str, **more: object) -> dict[str, object]:
    return {"name": name, "pool": "cpu", "provider": "ssh", "state": state, **more}


def test_a_machine_is_one_row_per_owner_and_name_stamped_by_the_boss_clock(store: Store) -> None:
    clock = Clock()
    book = Machines(store, clock)
    book.record("up:a", [machine("h1", "requested", slots=4, labels={"gpu": True})])
    clock.now = 1005.0
    book.record("up:a", [machine("h1", "starting", provider_id="12:34", address="h1:22")])
    book.record("up:b", [machine("h1", "requested")])
    [a] = book.view("up:a")
    assert (a["state"], a["requested"], a["since"]) == ("starting", 1000.0, 1005.0)
    assert (a["slots"], a["labels"], a["provider_id"]) == (4, {"gpu": True}, "12:34")
    assert [m["owner"] for m in book.view()] == ["up:a", "up:b"]


def test_a_machines_agent_is_the_worker_registered_under_its_name_since_it_was_requested(
    store: Store,
) -> None:
    clock = Clock()
    sched = Scheduler(store, clock=clock)
    book = Machines(store, clock)
    old = sched.register(p.Registration(name="h1", host="h1", slots=1)).worker_id
    clock.now = 1010.0
    book.record("up:a", [machine("h1", "starting")])
    assert book.view("up:a")[0]["agent"] is None  # yesterday's h1 is not this one
    clock.now = 1020.0
    new = sched.register(p.Registration(name="h1", host="h1", slots=1)).worker_id
    sched.worker_stopped(new, "bundle setup failed with exit code 1")
    agent = book.view("up:a")[0]["agent"]
    assert agent["worker_id"] == new != old
    assert (agent["state"], agent["reason"]) == ("stopped", "bundle setup failed with exit code 1")

    # Once recorded as its machine's agent, the worker names its machine.
    book.record("up:a", [machine("h1", "running", agent=agent)])
    workers = book.name_workers(sched.workers_view())
    assert {w["id"]: w["machine"] for w in workers} == {old: None, new: "h1"}


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (machine("h1", "exploded"), "'state' must be one of requested, starting"),
        (machine("", "running"), "'name' must be a non-empty string"),
        (machine("h\x001", "running"), "'name' must be a non-empty string"),
        ({"name": "h1", "state": "running"}, "'pool' must be a non-empty string"),
        (machine("h1", "running", slots=-1), "'slots' must be a whole number"),
        (machine("h1", "running", price="cheap"), "'price' must be a number"),
        (machine("h1", "running", labels=[1]), "'labels' must be an object"),
        ("h1", "machine #2 must be an object"),
    ],
)
def test_a_bad_machine_is_refused_in_one_line_and_nothing_is_recorded(
    store: Store, sent: object, said: str
) -> None:
    book = Machines(store)
    book.record("up:a", [machine("h0", "running")])
    with pytest.raises(BadInput, match=said):
        book.record("up:a", [machine("h9", "requested"), sent])  # type: ignore[list-item]
    assert [m["name"] for m in book.view()] == ["h0"]
    with pytest.raises(BadInput, match="'owner' must be a non-empty string"):
        book.record(" ", [machine("h1", "running")])


def _local(boss: RunningBoss, tmp_path: Path, book: StoreBook | BossBook) -> Fleet:
    return Fleet(
        book,
        "run:test",
        Site(tmp_path / "state"),
        BossAccess(url=boss.url, token=lambda: boss.token),
    )


def test_local_workers_through_the_contract_ready_on_registration_and_stopped_by_handle(
    boss: RunningBoss, tmp_path: Path
) -> None:
    fleet = _local(boss, tmp_path, StoreBook(Machines(boss.boss.store)))
    pool = Pool(name="local", provider="local", count=2, slots=3, labels={"zone": "a"})
    started = fleet.launch(pool)
    assert [(m.name, m.state, m.slots) for m in started] == [
        ("local-1", "starting", 3),
        ("local-2", "starting", 3),
    ]
    running = fleet.wait_running(["local-1", "local-2"], timeout=60)
    assert [m.state for m in running] == ["running", "running"]
    workers = {w["name"]: w for w in boss.scheduler.workers_view()}
    assert workers["local-1"]["labels"] == {"zone": "a"} and workers["local-1"]["slots"] == 3

    # Another process, with nothing but the record, stops one by its handle.
    other = providers.get("local", Site(tmp_path / "state"))
    record = {m.name: m for m in StoreBook(Machines(boss.boss.store)).machines("run:test")}
    assert other.status([record["local-1"]])[0].state == "running"
    other.down([record["local-1"]], drain=False)
    [(ended, why)] = wait_for(fleet.watch, timeout=30, what="local-1 to end")
    assert ended.name == "local-1" and why  # said why, from its goodbye or its exit
    assert other.status([record["local-1"]])[0].state == "stopped"

    fleet.stop()
    found = procs.parse_handle(record["local-2"].provider_id)
    assert found is not None and not procs.alive(*found)
    assert {m.state for m in StoreBook(Machines(boss.boss.store)).machines()} == {"stopped"}


def test_a_killed_local_worker_is_told_with_how_it_ended(boss: RunningBoss, tmp_path: Path) -> None:
    fleet = _local(boss, tmp_path, StoreBook(Machines(boss.boss.store)))
    [m] = fleet.launch(Pool(name="local", provider="local", count=1))
    fleet.wait_running([m.name], timeout=60)
    found = procs.parse_handle(fleet.machines[m.name].provider_id)
    assert found is not None
    os.kill(found[0], signal.SIGKILL)
    [(ended, why)] = wait_for(fleet.watch, timeout=30, what="the worker to end")
    assert ended.exit_code == -signal.SIGKILL and why == "killed by SIGKILL"
    fleet.stop()


def test_the_keepers_book_is_the_boss_api(boss: RunningBoss, tmp_path: Path) -> None:
    from shoal.client import BossClient

    with BossClient(boss.url, boss.token) as client:
        fleet = _local(boss, tmp_path, BossBook(client))
        [m] = fleet.launch(Pool(name="cpu", provider="local", count=1))
        assert m.name == "cpu-1"
        assert (tmp_path / "state" / "logs" / "worker-cpu-1.log").exists()
        fleet.wait_running([m.name], timeout=60)
        [listed] = client.machines()
        assert (listed["name"], listed["state"], listed["owner"]) == (
            "cpu-1",
            "running",
            "run:test",
        )
        worker = next(w for w in client.workers() if w["name"] == "cpu-1")
        assert worker["machine"] == "cpu-1"
        fleet.stop()
        assert [m["state"] for m in client.machines()] == ["stopped"]
        with pytest.raises(BadInput, match="'state' must be one of"):
            client.put("/machines", {"owner": "x", "machines": [machine("h1", "on fire")]})
    assert Machine.from_dict(listed).agent is not None  # the worker it ran, as the boss knew it
