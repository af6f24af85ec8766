"""Leases, on the in-memory store: lost attempts run again; too many losses fail the task."""

from __future__ import annotations

from shoal import protocol as p
from shoal.scheduler import Scheduler
from tests.scheduling import (
    clock,
    kinds,
    memory,
    on_memory,
    report,
    run_of,
    states,
    straggling,
    take,
    worker,
)

PAIR = "tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"


def heartbeat(s: Scheduler, w: int, *attempts: p.Assignment) -> None:
    s.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id for a in attempts]))


def test_an_attempt_whose_lease_runs_out_is_lost_and_its_task_runs_elsewhere() -> None:
    s = on_memory(lease_seconds=30.0)
    rid = s.submit(run_of(PAIR))
    w1, w2 = worker(s, "w1"), worker(s, "w2")
    assert [x.task for x in take(s, w1)] == ["a"]
    heartbeat(s, w2)  # w2 keeps syncing; w1 falls silent
    clock(s).now += 29
    heartbeat(s, w2)
    assert s.expire() is False  # the lease has not run out
    assert states(s, rid)["a"] == "running"
    clock(s).now += 2
    assert s.expire() is True
    assert states(s, rid)["a"] == "ready"
    workers = {w["name"]: w["state"] for w in s.workers_view()}
    assert workers == {"w1": "lost", "w2": "active"}
    lost = s.task_view(rid, "a")["attempt_list"][0]
    assert (lost["state"], lost["cause"]) == ("lost", "lost: no sync for 31s from worker w1")
    (again,) = take(s, w2)
    assert (again.task, again.number) == ("a", 2)
    assert "attempt_lost" in kinds(s, rid)


def test_a_worker_that_comes_back_is_told_to_stop_and_its_report_dropped() -> None:
    s = on_memory(lease_seconds=10.0)
    rid = s.submit(run_of(PAIR))
    w = worker(s)
    (a,) = take(s, w)
    clock(s).now += 11
    s.expire()
    answer = s.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id])).response
    assert answer.cancel == [a.attempt_id]
    report(s, w, a, result="late")
    assert s.results(rid) == {}
    assert s.workers_view()[0]["state"] == "active"  # it synced: it is back


def test_syncs_that_name_an_attempt_renew_its_lease() -> None:
    s = on_memory(lease_seconds=10.0)
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    for _ in range(4):
        clock(s).now += 6
        heartbeat(s, w, a, b)
        s.expire()
    assert states(s, rid) == {"a": "running", "b": "running"}
    clock(s).now += 6
    heartbeat(s, w, a)  # b is no longer named: its worker never heard of it
    s.expire()
    assert states(s, rid) == {"a": "running", "b": "ready"}
    cause = s.task_view(rid, "b")["attempt_list"][0]["cause"]
    assert cause == "lost: its assignment never reached worker w"


def test_after_max_losses_the_task_fails_and_so_does_what_depends_on_it() -> None:
    s = on_memory(lease_seconds=5.0, max_losses=2)
    rid = s.submit(run_of(PAIR))
    for n in (1, 2):
        w = worker(s, f"w{n}")
        take(s, w)
        clock(s).now += 6
        assert s.expire() is (n < 2)
    view = s.task_view(rid, "a")
    assert view["state"] == "failed"
    assert view["cause"] == "lost: no sync for 6s from worker w2 (2 attempts lost)"
    assert states(s, rid)["b"] == "upstream_failed"
    assert s.run_view(rid)["state"] == "failed"
    assert kinds(s, rid)[-4:] == ["attempt_lost", "task_failed", "upstream_failed", "run_failed"]


def test_a_lost_attempt_of_a_task_with_another_still_running_leaves_the_task_to_it() -> None:
    s = on_memory(lease_seconds=60.0, speculate_min=0.0)
    rid, _, fast, straggler = straggling(s)
    clock(s).now += 5
    (backup,) = take(s, fast)
    clock(s).now += 56  # slow is silent past its lease; fast syncs
    heartbeat(s, fast, backup)
    s.expire()
    assert states(s, rid)[straggler.task] == "running"  # the backup still holds it
    report(s, fast, backup, result="done")
    assert s.run_view(rid)["state"] == "succeeded"


def test_the_sweep_wakes_workers_when_anything_is_ready_and_only_then() -> None:
    s = on_memory(lease_seconds=5.0)
    s.origin = "boss-1"
    s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    notices = memory(s).notices
    w = worker(s)
    take(s, w)
    before = len(notices)
    assert s.expire() is False  # nothing to do, nothing ready
    assert len(memory(s).notices) == before
    clock(s).now += 6
    assert s.expire() is True
    assert memory(s).notices[-1] == "boss-1"


def test_a_restarted_boss_gives_every_running_attempt_a_whole_lease() -> None:
    s = on_memory(lease_seconds=30.0)
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    w = worker(s, slots=2)
    take(s, w, free=2)
    clock(s).now += 300  # the boss was away this long
    assert s.extend_leases() == 2
    clock(s).now += 29
    s.expire()
    assert states(s, rid) == {"a": "running", "b": "running"}
    clock(s).now += 2
    s.expire()
    assert states(s, rid) == {"a": "ready", "b": "ready"}


def test_a_worker_that_says_goodbye_is_stopped_and_its_tasks_lost_at_the_next_sweep() -> None:
    s = on_memory(lease_seconds=5.0)
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    take(s, w)
    s.worker_stopped(w, "interrupted")
    assert s.workers_view()[0]["state"] == "stopped"
    clock(s).now += 6
    assert s.expire() is True
    assert states(s, rid) == {"a": "ready"}
    assert s.workers_view()[0]["state"] == "stopped"  # not lost: it said goodbye
