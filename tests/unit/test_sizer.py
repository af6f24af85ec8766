"""Pools sized to the queue: when a pool grows, when it shrinks, and never past its bounds."""

from __future__ import annotations

from typing import Any

from shoal.launch.contract import AgentSeen, Machine, Pool
from shoal.launch.sizer import PoolView, bounds, plan_sizes

NOW = 10_000.0


def pool(name: str = "cpu", **kw: Any) -> Pool:
    values: dict[str, Any] = {"provider": "aws", "min": 0, "max": 4, "slots": 2}
    values.update(kw)
    return Pool(name=name, **values)


def running(name: str, pool_name: str = "cpu", slots: int = 2) -> Machine:
    return Machine(
        name=name,
        pool=pool_name,
        provider="aws",
        slots=slots,
        state="running",
        agent=AgentSeen(1, "active", NOW - 100),
    )


def booting(name: str, pool_name: str = "cpu", slots: int = 2) -> Machine:
    return Machine(name=name, pool=pool_name, provider="aws", slots=slots, state="starting")


def view(p: Pool, machines: list[Machine], boot: float = 60.0) -> PoolView:
    return PoolView(p, machines, boot, p.slots or 1)


def worker(
    name: str, running: int, idle_since: float | None = None, slots: int = 2
) -> dict[str, Any]:
    return {
        "name": name,
        "slots": slots,
        "labels": {},
        "running": running,
        "idle_since": idle_since,
    }


def ready(n: int, slots: int = 1, requires: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"slots": slots, "host": None, "requires": requires or {}, "n": n}


def test_an_empty_pool_grows_for_queued_work_and_never_above_its_max() -> None:
    p = pool()
    demand = {"ready": [ready(40)], "run_seconds": None, "workers": []}
    decision = plan_sizes([view(p, [])], demand, now=NOW)["cpu"]
    assert decision.grow == 4  # 40 tasks want 20 machines of 2 slots; max is 4


def test_machines_already_booting_count_against_the_work() -> None:
    p = pool()
    demand = {"ready": [ready(4)], "run_seconds": None, "workers": []}
    decision = plan_sizes([view(p, [booting("cpu-1"), booting("cpu-2")])], demand, now=NOW)
    assert decision["cpu"].grow == 0


def test_work_that_clears_before_a_machine_would_boot_does_not_grow_the_pool() -> None:
    p = pool()
    m = running("cpu-1")
    # 2 short tasks wait, 2 slots busy: they clear in seconds, a machine takes a minute.
    demand = {"ready": [ready(2)], "run_seconds": 1.0, "workers": [worker("cpu-1", 2)]}
    assert plan_sizes([view(p, [m], boot=60.0)], demand, now=NOW)["cpu"].grow == 0
    # Long tasks: the same backlog waits longer than a boot, so the pool grows.
    demand["run_seconds"] = 600.0
    assert plan_sizes([view(p, [m], boot=60.0)], demand, now=NOW)["cpu"].grow == 1


def test_an_idle_machine_stops_after_idle_stop_but_never_below_min() -> None:
    p = pool(min=1, idle_stop=600.0)
    machines = [running("cpu-1"), running("cpu-2")]
    workers = [worker("cpu-1", 0, NOW - 700), worker("cpu-2", 0, NOW - 900)]
    decision = plan_sizes([view(p, machines)], {"ready": [], "workers": workers}, now=NOW)["cpu"]
    assert decision.stop == ["cpu-2"]  # the longer idle one; cpu-1 stays for min 1
    workers = [worker("cpu-1", 0, NOW - 100), worker("cpu-2", 0, NOW - 100)]
    decision = plan_sizes([view(p, machines)], {"ready": [], "workers": workers}, now=NOW)["cpu"]
    assert decision.stop == []


def test_a_busy_machine_is_never_idle() -> None:
    p = pool(idle_stop=60.0)
    demand = {"ready": [], "workers": [worker("cpu-1", 1, None)]}
    assert plan_sizes([view(p, [running("cpu-1")])], demand, now=NOW)["cpu"].stop == []


def test_a_pool_below_its_min_grows_to_it_without_work() -> None:
    p = pool(min=2)
    decision = plan_sizes([view(p, [running("cpu-1")])], {"ready": []}, now=NOW)["cpu"]
    assert decision.grow == 1


def test_work_needing_a_label_only_one_pool_has_grows_that_pool() -> None:
    plain = pool("cpu")
    gpu = pool("gpu", labels={"gpu": True})
    demand = {"ready": [ready(3, requires={"gpu": True})], "run_seconds": None, "workers": []}
    decisions = plan_sizes([view(plain, []), view(gpu, [])], demand, now=NOW)
    assert decisions["cpu"].grow == 0
    assert decisions["gpu"].grow == 2


def test_work_several_pools_can_take_fills_the_first_then_the_next() -> None:
    first = pool("a", max=1)
    second = pool("b", max=4)
    demand = {"ready": [ready(8)], "run_seconds": None, "workers": []}
    decisions = plan_sizes([view(first, []), view(second, [])], demand, now=NOW)
    assert (decisions["a"].grow, decisions["b"].grow) == (1, 3)


def test_tasks_bigger_than_a_machine_do_not_grow_the_pool() -> None:
    p = pool(slots=2)
    demand = {"ready": [ready(5, slots=4)], "run_seconds": None, "workers": []}
    assert plan_sizes([view(p, [])], demand, now=NOW)["cpu"].grow == 0


def test_a_fixed_count_may_idle_down_and_come_back() -> None:
    p = Pool(name="box", provider="aws", count=3, idle_stop=600.0)
    assert bounds(p) == (0, 3)
    assert bounds(Pool(name="box", provider="local", count=3)) == (3, 3)
