"""A worker's usage report travels in its sync, optionally; the boss's orders are said once."""

from __future__ import annotations

from shoal import protocol as p
from shoal.agent.usage import UsageProbe
from shoal.boss.web import WorkerOrders


def test_an_older_agent_without_a_usage_report_still_syncs() -> None:
    old = {"worker_id": 3, "finished": [], "running": [7], "free_slots": 1}
    assert p.SyncRequest.from_dict(old).usage is None
    assert "usage" not in p.SyncRequest(worker_id=3).to_dict()  # what an older boss reads
    sent = p.SyncRequest(worker_id=3, usage={"cpu": 12.5, "memory_used": 2e9}).to_dict()
    assert p.SyncRequest.from_dict(sent).usage == {"cpu": 12.5, "memory_used": 2e9}


def test_the_agent_reads_its_machines_cpu_and_memory_every_few_seconds() -> None:
    probe = UsageProbe()
    first = probe.reading()
    assert first is not None
    assert 0 <= first["cpu"] <= 100 and first["cores"] >= 1
    assert 0 < first["memory_used"] < first["memory_total"]
    assert probe.reading() is None  # fresh still: a sync does not wait on /proc


def test_a_drain_is_said_once_and_a_stop_cancels_what_runs() -> None:
    orders = WorkerOrders()
    assert orders.heard(1, {"cpu": 50.0, "bogus": 1.0}, 100.0) is None
    assert orders.usage[1] == {"cpu": 50.0, "at": 100.0}
    orders.give(1, "drain")
    assert orders.tell(1, [5], p.SyncResponse()).stop is True
    # Said twice, an agent takes it as "interrupt what runs now".
    assert orders.tell(1, [5], p.SyncResponse()).stop is False
    orders.give(1, "stop")
    orders.give(1, "drain")  # a stop is not taken back
    answer = orders.tell(1, [5, 6], p.SyncResponse(cancel=[9]))
    assert answer.cancel == [5, 6, 9]
    orders.gone(1)
    assert orders.tell(1, [5], p.SyncResponse()) == p.SyncResponse()
    assert 1 not in orders.usage
