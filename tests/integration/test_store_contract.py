"""The store contract: the scheduler's state machine on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shoal import protocol as p
from shoal.exceptions import NotFound
from shoal.scheduler import Scheduler, WorkerShape
from shoal.store import Store
from tests.scheduling import Clock, MidRng, report, run_of, states, take, worker


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    store = Store(db_url)
    yield Scheduler(store, clock=Clock())
    store.close()


def test_dependencies_gate_readiness_and_outputs_flow(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of("tasks:\n- {name: a, run: x, outputs: [o.txt]}\n- {name: b, run: y, after: [a]}\n")
    )
    w = worker(sched)
    assert states(sched, rid) == {"a": "ready", "b": "waiting"}
    (a,) = take(sched, w, free=5)
    assert a.task == "a"
    out = report(sched, w, a, outputs=["o.txt"], free=1)
    assert not out.made_ready  # this worker took all there was: nobody else to wake
    (b,) = out.response.assignments
    assert b.task == "b"
    assert [(f.path, f.dest) for f in b.fetch] == [(f"runs/{rid}/a/o.txt", "inputs/a/o.txt")]
    report(sched, w, b)
    assert sched.run_view(rid)["state"] == "succeeded"


def test_idle_workers_are_woken_only_for_work_left_over(sched: Scheduler) -> None:
    sched.submit(
        run_of(
            "tasks:\n- {name: a, run: x}\n- {name: b, run: y, after: [a]}\n- {name: c, run: y, after: [a]}\n"
        )
    )
    w = worker(sched)
    (a,) = take(sched, w)
    out = report(sched, w, a, free=1)
    assert len(out.response.assignments) == 1 and out.made_ready


def test_priority_then_submission_order_across_runs(sched: Scheduler) -> None:
    r1 = sched.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, priority: 5}\n"))
    r2 = sched.submit(run_of("tasks:\n- {name: c, run: x}\n- {name: d, run: x, priority: 5}\n"))
    w = worker(sched, slots=4)
    got = [(a.run_id, a.task) for a in take(sched, w, free=4)]
    assert got == [(r1, "b"), (r2, "d"), (r1, "a"), (r2, "c")]


def test_slots_hosts_and_labels_decide_who_takes_what(sched: Scheduler) -> None:
    sched.submit(
        run_of(
            "tasks:\n- {name: big, run: x, slots: 3}\n- {name: pinned, run: x, host: other}\n"
            "- {name: gpu, run: x, requires: {gpu: true}}\n- {name: small, run: x}\n"
        )
    )
    plain = worker(sched, "plain", slots=2)
    assert [a.task for a in take(sched, plain, free=2)] == ["small"]
    other = worker(sched, "other", slots=4, gpu=True)
    assert [a.task for a in take(sched, other, free=4)] == ["big", "pinned"]
    assert [a.task for a in take(sched, other, free=1)] == ["gpu"]


def test_task_needing_more_slots_than_any_worker_is_reported(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of("tasks:\n- {name: huge, run: x, slots: 8}\n- {name: after, run: x, after: [huge]}\n")
    )
    worker(sched, slots=2)
    assert "more slots than any worker" in sched.run_view(rid)["warnings"][0]
    failed = sched.fail_unplaceable(rid, [WorkerShape("w", 2)])
    assert [(f.names, f.reason) for f in failed] == [
        (["huge"], "needs 8 slots, more slots than any worker has (2 at most)")
    ]
    assert states(sched, rid) == {"huge": "failed", "after": "upstream_failed"}
    assert sched.run_view(rid)["state"] == "failed"


def test_tasks_no_worker_can_take_never_hide_one_it_can(sched: Scheduler) -> None:
    # Ten ready tasks that need a label come first; the claim looks past them
    # (it used to take the first 2 x free + 8 and filter labels afterwards).
    gpu = "".join(f"- {{name: train-{i}, run: x, requires: {{gpu: true}}}}\n" for i in range(10))
    rid = sched.submit(run_of(f"tasks:\n{gpu}- {{name: plain, run: x}}\n"))
    w = worker(sched, "cpu-only")
    got = take(sched, w)
    assert [a.task for a in got] == ["plain"]
    report(sched, w, got[0])
    assert states(sched, rid)["plain"] == "succeeded"
    assert take(sched, w) == []
    # A worker with the label takes them; one whose label has another value does not.
    assert take(sched, worker(sched, "gpu-false", gpu=False)) == []
    assert take(sched, worker(sched, "gpu-one", gpu=1)) == []  # 1 is not true
    assert [a.task for a in take(sched, worker(sched, "gpu", gpu=True), free=2)] == [
        "train-0",
        "train-1",
    ]
    # Labels match as JSON values, all of them: a string, a number (8 is 8.0).
    sched.submit(
        run_of(
            "tasks:\n- {name: zone, run: x, requires: {zone: eu-1}}\n"
            "- {name: two, run: x, requires: {zone: eu-1, cores: 8}}\n"
            "- {name: real, run: x, requires: {cores: 8.0}}\n"
        )
    )
    us = worker(sched, "us", zone="us-1", cores=8)
    assert [a.task for a in take(sched, us, free=3)] == ["real"]  # 8 is 8.0
    eu = worker(sched, "eu", zone="eu-1", cores=8, extra="yes")
    assert [a.task for a in take(sched, eu, free=3)] == ["zone", "two"]


def test_tasks_no_connected_worker_can_take_are_named(sched: Scheduler) -> None:
    gpu = "".join(f"- {{name: train-{i}, run: x, requires: {{gpu: true}}}}\n" for i in range(10))
    rid = sched.submit(
        run_of(
            f"tasks:\n{gpu}- {{name: x, run: x, host: h9}}\n"
            "- {name: both, run: x, requires: {gpu: true, ram: big}}\n- {name: plain, run: x}\n"
        )
    )
    assert "warnings" not in sched.run_view(rid)  # no worker yet: they wait for one
    worker(sched, "cpu-1", ram="big")
    worker(sched, "gpu-1", gpu=True)
    view = sched.run_view(rid)
    assert view["warnings"] == [
        "task 'x' is pinned to host 'h9', no such worker",
        "task 'both' needs labels gpu=true, ram=big that no one worker has together",
    ]
    assert view["unplaceable"][0] == {
        "tasks": ["x"],
        "count": 1,
        "reason": "is pinned to host 'h9', no such worker",
    }
    # The workers of a `shoal run` are all it will have: what none can take fails.
    failed = sched.fail_unplaceable(
        rid, [WorkerShape("cpu-1", 1, {"ram": "big"}), WorkerShape("cpu-2", 1)]
    )
    assert failed[0].sentence() == (
        "10 tasks ('train-0', 'train-1', 'train-2', …): each needs labels gpu=true "
        "that no worker has"
    )
    assert [(f.count, f.reason) for f in failed] == [
        (10, "needs labels gpu=true that no worker has"),
        (1, "is pinned to host 'h9', no such worker"),
        (1, "needs labels gpu=true that no worker has"),
    ]
    tasks = {t["name"]: t for t in sched.tasks_view(rid)}
    assert tasks["train-7"]["state"] == "failed"
    assert tasks["train-7"]["cause"] == "needs labels gpu=true that no worker has"
    assert tasks["plain"]["state"] == "ready"


def test_failure_marks_downstream_and_unrelated_tasks_go_on(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of(
            "tasks:\n- {name: bad, run: x}\n- {name: child, run: x, after: [bad]}\n"
            "- {name: grandchild, run: x, after: [child]}\n- {name: fine, run: x}\n"
        )
    )
    w = worker(sched, slots=2)
    bad, fine = take(sched, w, free=2)
    report(sched, w, bad, code=3)
    assert states(sched, rid)["grandchild"] == "upstream_failed"
    assert sched.run_view(rid)["state"] == "running"
    report(sched, w, fine)
    view = sched.run_view(rid)
    assert view["state"] == "failed"
    assert view["counts"] == {"failed": 1, "upstream_failed": 2, "succeeded": 1}
    task = sched.task_view(rid, "bad")
    assert task["exit_code"] == 3 and task["cause"] == "exit code 3"


def test_retries_run_a_failed_command_again(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: flaky, run: x, retries: 2}\n"))
    w = worker(sched)
    (first,) = take(sched, w)
    assert report(sched, w, first, code=1, free=1).response.assignments == []  # backing off
    assert states(sched, rid) == {"flaky": "ready"}
    sched.clock.now += 3.5  # type: ignore[attr-defined]  # past 2 s x 1.5 jitter at most
    (second,) = take(sched, w)
    assert second.number == 2 and second.attempt_id != first.attempt_id
    report(sched, w, second, result=42)
    task = sched.task_view(rid, "flaky")
    assert task["state"] == "succeeded" and task["attempts"] == 2 and task["result"] == 42
    assert [a["state"] for a in task["attempt_list"]] == ["failed", "succeeded"]


def test_result_is_recorded_once_and_late_reports_are_dropped(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(sched)
    (a,) = take(sched, w)
    report(sched, w, a, result="first")
    report(sched, w, a, result="second")  # the same attempt again: fenced
    other = worker(sched, "other")
    report(sched, other, a, result="third")  # another worker claiming it: fenced
    assert sched.results(rid) == {"a": "first"}
    assert sched.task_view(rid, "a")["attempts"] == 1
    kinds = [e["kind"] for e in sched.events_view(rid)]
    assert kinds.count("task_succeeded") == 1


def test_cancel_stops_running_attempts_and_retry_brings_them_back(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"))
    w = worker(sched)
    (a,) = take(sched, w)
    assert sched.cancel(rid) == 2
    assert sched.run_view(rid)["state"] == "cancelled"
    answer = sched.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id], free_slots=1)).response
    assert answer.cancel == [a.attempt_id] and answer.assignments == []
    assert sched.retry(rid) == 2
    assert states(sched, rid) == {"a": "ready", "b": "waiting"}
    assert sched.run_view(rid)["state"] == "running"
    (again,) = take(sched, w)
    assert again.task == "a" and again.number == 2


def test_interrupted_attempt_is_ready_again_without_counting_a_failure(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(sched)
    (a,) = take(sched, w)
    r = p.Report(attempt_id=a.attempt_id, outcome=p.INTERRUPTED, cause="worker stopped")
    sched.sync(p.SyncRequest(worker_id=w, finished=[r]))
    assert states(sched, rid) == {"a": "ready"}
    assert sched.task_view(rid, "a")["attempt_list"][0]["state"] == p.INTERRUPTED


def test_batched_reports_ready_a_join_once(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of(
            "tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: j, run: x, after: [a, b]}\n"
        )
    )
    w = worker(sched, slots=2)
    a, b = take(sched, w, free=2)
    reports = [p.Report(attempt_id=x.attempt_id, outcome=p.SUCCEEDED, exit_code=0) for x in (a, b)]
    out = sched.sync(p.SyncRequest(worker_id=w, finished=reports, free_slots=2))
    assert [x.task for x in out.response.assignments] == ["j"]
    assert states(sched, rid)["j"] == "running"


def test_unknown_run_worker_and_task(sched: Scheduler) -> None:
    with pytest.raises(NotFound):
        sched.run_view(99)
    with pytest.raises(NotFound):
        sched.sync(p.SyncRequest(worker_id=99))
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    with pytest.raises(NotFound):
        sched.task_view(rid, "nope")
    assert sched.resolve_run("run") == rid
    assert sched.resolve_run(str(rid)) == rid
    with pytest.raises(NotFound):
        sched.resolve_run("no-such-run")


def test_dag_of_many_tasks_in_one_transaction(sched: Scheduler) -> None:
    tasks = "\n".join(
        f"- {{name: t{i}, run: x{', after: [t' + str(i - 1) + ']' if i else ''}}}"
        for i in range(300)
    )
    rid = sched.submit(run_of("tasks:\n" + tasks))
    counts = sched.run_view(rid)["counts"]
    assert counts == {"ready": 1, "waiting": 299}


def test_lost_attempt_makes_the_task_ready_until_too_many_losses(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"))
    clock = sched.clock
    for loss in range(1, 4):
        w = worker(sched, f"w{loss}")
        (a,) = take(sched, w)
        clock.now += 10  # type: ignore[attr-defined]
        assert sched.expire() is False  # the lease (30 s) has not run out
        clock.now += 25  # type: ignore[attr-defined]
        readied = sched.expire()
        assert readied is (loss < 3)
        # The worker comes back: it is told to stop, and its report is dropped.
        answer = sched.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id])).response
        assert answer.cancel == [a.attempt_id]
        report(sched, w, a, result="too late")
    task = sched.task_view(rid, "a")
    assert task["state"] == "failed" and task["cause"].startswith(
        "lost: no sync for 35s from worker w3"
    )
    assert [x["state"] for x in task["attempt_list"]] == ["lost", "lost", "lost"]
    assert states(sched, rid)["b"] == "upstream_failed"
    assert sched.results(rid) == {}


def test_an_assignment_that_never_reached_its_worker_runs_elsewhere(sched: Scheduler) -> None:
    """The answer to a sync was lost (its boss died): the worker's next sync tells."""
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w1, w2 = worker(sched, "w1"), worker(sched, "w2")
    (lost,) = take(sched, w1)
    sched.clock.now += 1  # type: ignore[attr-defined]
    # w1 syncs again without naming the attempt: it never heard of it.
    assert take(sched, w1, free=0) == []
    assert sched.expire() is True  # at the next sweep, not a whole lease later
    (again,) = take(sched, w2)
    assert again.task == "a" and again.attempt_id != lost.attempt_id
    attempts = sched.task_view(rid, "a")["attempt_list"]
    assert attempts[0]["state"] == "lost"
    assert attempts[0]["cause"] == "lost: its assignment never reached worker w1"


def test_syncs_renew_leases(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(sched)
    (a,) = take(sched, w)
    for _ in range(5):
        sched.clock.now += 20  # type: ignore[attr-defined]
        sched.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id]))
        sched.expire()
    assert states(sched, rid) == {"a": "running"}
    assert [w["state"] for w in sched.workers_view()] == ["active"]


def test_a_restarted_boss_gives_running_attempts_a_whole_lease(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(sched)
    take(sched, w)
    sched.clock.now += 100  # type: ignore[attr-defined]  # the boss was down this long
    assert sched.extend_leases() == 1
    sched.expire()
    assert states(sched, rid) == {"a": "running"}


def test_a_straggler_gets_one_backup_and_the_first_to_finish_wins(sched: Scheduler) -> None:
    sched.speculate_min = 5.0
    rid = sched.submit(run_of("tasks:\n- name: t-{i}\n  matrix: {i: [1, 2, 3, 4]}\n  run: x\n"))
    slow, fast = worker(sched, "slow"), worker(sched, "fast", slots=3)
    (straggler,) = take(sched, slow)
    quick = take(sched, fast, free=3)
    for a in quick:
        r = p.Report(
            attempt_id=a.attempt_id, outcome=p.SUCCEEDED, exit_code=0, started=0.0, ended=2.0
        )
        sched.sync(p.SyncRequest(worker_id=fast, finished=[r]))
    assert take(sched, fast) == []  # running 0 s: not a straggler yet
    sched.clock.now += 4.5  # type: ignore[attr-defined]
    assert take(sched, fast) == []  # more than 2 x the median (2 s), but under the minimum
    sched.clock.now += 1  # type: ignore[attr-defined]
    assert take(sched, slow) == []  # never a backup on the worker that runs it
    (backup,) = take(sched, fast)
    assert backup.task == straggler.task and backup.number == 2
    assert take(sched, fast) == []  # one backup at most
    report(sched, fast, backup, result="backup")
    answer = sched.sync(p.SyncRequest(worker_id=slow, running=[straggler.attempt_id])).response
    assert answer.cancel == [straggler.attempt_id]
    report(sched, slow, straggler, result="original")
    task = sched.task_view(rid, straggler.task)
    assert task["result"] == "backup"
    assert sorted(a["state"] for a in task["attempt_list"]) == ["succeeded", "superseded"]
    assert sched.run_view(rid)["state"] == "succeeded"


def test_a_failed_backup_leaves_the_original_running(sched: Scheduler) -> None:
    sched.speculate_min = 0.0
    rid = sched.submit(run_of("tasks:\n- name: t-{i}\n  matrix: {i: [1, 2, 3]}\n  run: x\n"))
    slow, fast = worker(sched, "slow"), worker(sched, "fast", slots=2)
    (straggler,) = take(sched, slow)
    for a in take(sched, fast, free=2):
        r = p.Report(
            attempt_id=a.attempt_id, outcome=p.SUCCEEDED, exit_code=0, started=0.0, ended=1.0
        )
        sched.sync(p.SyncRequest(worker_id=fast, finished=[r]))
    sched.clock.now += 3  # type: ignore[attr-defined]
    (backup,) = take(sched, fast)
    report(sched, fast, backup, code=1)
    assert states(sched, rid)[straggler.task] == "running"
    report(sched, slow, straggler, result="original")
    assert sched.results(rid)[straggler.task] == "original"


def test_speculative_false_means_no_backup(sched: Scheduler) -> None:
    sched.speculate_min = 0.0
    sched.submit(
        run_of("tasks:\n- name: t-{i}\n  matrix: {i: [1, 2, 3]}\n  run: x\n  speculative: false\n")
    )
    slow, fast = worker(sched, "slow"), worker(sched, "fast", slots=2)
    take(sched, slow)
    for a in take(sched, fast, free=2):
        r = p.Report(
            attempt_id=a.attempt_id, outcome=p.SUCCEEDED, exit_code=0, started=0.0, ended=1.0
        )
        sched.sync(p.SyncRequest(worker_id=fast, finished=[r]))
    sched.clock.now += 100  # type: ignore[attr-defined]
    assert take(sched, fast) == []


def test_retry_back_off_doubles(sched: Scheduler) -> None:
    sched.rng = MidRng()  # type: ignore[assignment]
    rid = sched.submit(run_of("tasks:\n- {name: f, run: x, retries: 3, retry_delay: 10s}\n"))
    w = worker(sched)
    waits = []
    (a,) = take(sched, w)
    for _ in range(2):
        failed_at = sched.clock.now  # type: ignore[attr-defined]
        report(sched, w, a, code=1)
        while not (got := take(sched, w)):
            sched.clock.now += 1  # type: ignore[attr-defined]
        (a,) = got
        waits.append(sched.clock.now - failed_at)  # type: ignore[attr-defined]
    assert waits == [10, 20]
    assert sched.task_view(rid, "f")["attempts"] == 3


def test_resume_reuses_unchanged_tasks_and_their_outputs(sched: Scheduler) -> None:
    text = "tasks:\n- {name: a, run: x, outputs: [o]}\n- {name: b, run: y, after: [a]}\n- {name: c, run: z}\n"
    first = sched.submit(run_of(text))
    w = worker(sched, slots=2)
    a, c = take(sched, w, free=2)
    report(sched, w, a, result=1, outputs=["o"])
    report(sched, w, c, code=2)
    (b,) = take(sched, w)
    report(sched, w, b, code=3)
    second = sched.submit(run_of(text), reuse=True)
    view = {t["name"]: t for t in sched.tasks_view(second)}
    assert view["a"]["cached"] and view["a"]["state"] == "succeeded" and view["a"]["result"] == 1
    assert not view["b"]["cached"] and view["b"]["state"] == "ready"
    (b2,) = [x for x in take(sched, w, free=2) if x.task == "b"]
    assert [(f.path, f.dest) for f in b2.fetch] == [(f"runs/{first}/a/o", "inputs/a/o")]
    changed = sched.submit(run_of(text.replace("run: x", "run: x2")), reuse=True)
    assert not any(t["cached"] for t in sched.tasks_view(changed))


def test_reduction_shows_partial_values_then_the_final_result(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of(
            "flow: 'a | b | c; a + b + c'\ntasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: c, run: x}\n"
        )
    )
    w = worker(sched, slots=3)
    a, b, c = take(sched, w, free=3)
    report(sched, w, b, result=20)
    view = sched.run_view(rid)
    assert view["final"] == "sum-1" and view["partial"] == {"sum-1": 20} and view["result"] is None
    report(sched, w, a, result=1)
    assert sched.run_view(rid)["partial"] == {"sum-1": 21}
    report(sched, w, c, result=300)
    view = sched.run_view(rid)
    assert view["state"] == "succeeded" and view["result"] == 321 and view["partial"] == {}
    total = sched.task_view(rid, "sum-1")
    assert total["attempts"] == 0 and total["worker"] is None  # the boss, not a worker


def test_reducer_command_gets_its_operands_on_stdin(sched: Scheduler) -> None:
    sched.submit(
        run_of(
            "tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: m, reduce: [a, b], run: pick}\n"
        )
    )
    w = worker(sched, slots=2)
    a, b = take(sched, w, free=2)
    report(sched, w, a, result=[1])
    (m,) = report(sched, w, b, result="two", free=1).response.assignments
    assert m.task == "m" and json.loads(m.stdin or "") == {"a": [1], "b": "two"}


# -- the dashboard's reads ---------------------------------------------------


def _finished_at(sched: Scheduler, w: int, a: p.Assignment, after: float, code: int = 0) -> None:
    sched.clock.now += after  # type: ignore[attr-defined]
    report(sched, w, a, code=code)


def test_a_page_of_tasks_is_filtered_searched_and_sorted(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of(
            "tasks:\n- {name: a_1, run: x}\n- {name: ab1, run: x}\n- {name: b.2, run: x}\n"
            "- {name: c-3, run: x}\n- {name: d-4, run: x}\n"
        )
    )
    w = worker(sched, slots=4)
    got = {a.task: a for a in take(sched, w, free=4)}  # all but d-4, at 1000
    _finished_at(sched, w, got["ab1"], 1)  # ran 1 s
    _finished_at(sched, w, got["a_1"], 2)  # 3 s
    _finished_at(sched, w, got["c-3"], 1, code=1)  # 4 s, failed
    # b.2 still runs; d-4 is ready: neither has a duration.

    def page(**kw: Any) -> tuple[list[str], int]:
        found = sched.tasks_page(rid, **kw)
        return [t["name"] for t in found["tasks"]], found["total"]

    assert page() == (["a_1", "ab1", "b.2", "c-3", "d-4"], 5)
    assert page(sort="name", limit=2) == (["a_1", "ab1"], 5)
    assert page(sort="name", limit=2, offset=2) == (["b.2", "c-3"], 5)
    assert page(sort="duration") == (["c-3", "a_1", "ab1", "b.2", "d-4"], 5)
    assert page(sort="-duration") == (["ab1", "a_1", "c-3", "b.2", "d-4"], 5)
    assert page(sort="no-such-order") == (["a_1", "ab1", "b.2", "c-3", "d-4"], 5)
    assert page(states=["succeeded"]) == (["a_1", "ab1"], 2)
    assert page(states=["failed", "ready"]) == (["c-3", "d-4"], 2)
    # A search is for the text as typed: _ and . are no wildcards.
    assert page(search="a_1") == (["a_1"], 1)
    assert page(search=".") == (["b.2"], 1)
    assert page(search="-") == (["c-3", "d-4"], 2)
    assert page(search="%") == ([], 0)
    assert page(search="1", states=["succeeded"], sort="-duration") == (["ab1", "a_1"], 2)
    row = sched.tasks_page(rid, search="c-3")["tasks"][0]
    assert (row["state"], row["exit_code"], row["worker"], row["duration"]) == (
        "failed",
        1,
        "w",
        0.0,
    )


def test_the_graph_folds_matrix_groups_and_the_throughput_counts_ends(sched: Scheduler) -> None:
    rid = sched.submit(
        run_of(
            "tasks:\n- {name: prep, run: x}\n"
            "- name: sim-{i}\n  matrix: {i: [1, 2, 3]}\n  run: x\n  after: [prep]\n"
            "- {name: total, run: x, after: ['sim-*']}\n"
        )
    )
    assert sched.throughput(rid) == {"start": 1000.0, "width": 0, "rates": []}
    w = worker(sched, slots=3)
    (prep,) = take(sched, w)
    sims = report(sched, w, prep, free=3).response.assignments
    sched.clock.now += 10  # type: ignore[attr-defined]
    report(sched, w, sims[0])
    graph = sched.graph(rid)
    assert [(n["id"], n["counts"], n["total"]) for n in graph["nodes"]] == [
        ("prep", {"succeeded": 1}, 1),
        ("sim-{i}", {"succeeded": 1, "running": 2}, 3),
        ("total", {"waiting": 1}, 1),
    ]
    assert sorted((e["source"], e["target"]) for e in graph["edges"]) == [
        ("prep", "sim-{i}"),
        ("sim-{i}", "total"),
    ]
    rates = sched.throughput(rid, buckets=10)
    assert (rates["start"], rates["width"]) == (1000.0, 1.0)
    assert rates["rates"][0] == 1.0 and rates["rates"][-1] == 1.0 and sum(rates["rates"]) == 2.0


def test_a_tasks_events_and_the_metrics_counts(sched: Scheduler) -> None:
    rid = sched.submit(run_of("tasks:\n- {name: a, run: x, retries: 1, retry_delay: 0}\n"))
    w = worker(sched)
    (a,) = take(sched, w)
    report(sched, w, a, code=2)
    (again,) = take(sched, w)
    events = sched.task_events(rid, "a")
    assert [(e["kind"], e["detail"]) for e in events] == [
        ("attempt_started", None),
        ("task_retried", "exit code 2"),
        ("attempt_started", None),
    ]
    assert all(e["run_id"] == rid and e["worker_id"] == w for e in events)
    counts = sched.metrics_counts()
    assert counts["tasks"] == {"running": 1} and counts["ready"] == 0
    assert counts["workers"] == {"active": 1}
    assert sorted(counts["attempts"], key=str) == sorted(
        [("failed", "exit code 2", 1), ("running", None, 1)], key=str
    )
    with pytest.raises(NotFound):
        sched.task_events(rid, "nope")
    assert again.number == 2


def test_the_bosses_serving_a_database_are_listed(db_url: str) -> None:
    store = Store(db_url)
    try:
        with store.transaction() as tx:
            first = tx.insert_boss("http://127.0.0.1:1", "here", 11, 1000.0)
            second = tx.insert_boss("http://127.0.0.1:2", "there", 22, 1000.0)
            tx.touch_boss(first, 1001.0, True)
            tx.stop_boss(second, 1002.0)
        with store.read() as tx:
            assert tx.others_serving(second, 1000.5) is True
            assert tx.others_serving(first, 1000.5) is False  # the other one stopped
        # Those serving, and those gone in the last hour (the stopped one went long ago).
        bosses = Scheduler(store).bosses_view()
        assert [(b["id"], b["state"], b["housekeeper"], b["pid"]) for b in bosses] == [
            (first, "serving", True, 11)
        ]
        with store.read() as tx:
            rows = tx.list_bosses(0.0)
        assert [(b.host, b.state, b.housekeeper, b.last_seen) for b in rows] == [
            ("here", "serving", True, 1001.0),
            ("there", "stopped", False, 1002.0),
        ]
    finally:
        store.close()


# -- schema, several bosses ----------------------------------------------------


def _schema(url: str) -> dict[str, Any]:
    """Everything about a database's schema that a migration could get wrong."""
    from sqlalchemy import create_engine, inspect

    store = Store(url)
    # The URL as shoal gives it to SQLAlchemy (SQLite's store runs without it).
    engine = store.engine if store.engine is not None else create_engine(store.url)
    found: dict[str, Any] = {}
    try:
        insp = inspect(engine)
        for table in sorted(insp.get_table_names()):
            found[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in insp.get_columns(table)
                ],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in insp.get_foreign_keys(table)
                ),
                "unique": sorted(
                    (u["name"], tuple(u["column_names"]))
                    for u in insp.get_unique_constraints(table)
                ),
                "indexes": sorted(
                    (
                        i["name"],
                        tuple(str(c) for c in i["column_names"]),
                        bool(i["unique"]),
                        str(sorted((k, str(v)) for k, v in i.get("dialect_options", {}).items())),
                    )
                    for i in insp.get_indexes(table)
                ),
            }
    finally:
        if engine is not store.engine:
            engine.dispose()
        store.close()
    return found


def test_migrating_the_oldest_schema_gives_the_same_database_as_a_fresh_one(
    db_url: str, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy import insert

    from shoal.store import schema

    # The oldest database shoal ever made, with a run and a worker in it.
    old = Store.__new__(Store)
    old.url, old.is_sqlite, old.is_postgres = (
        db_url,
        db_url.startswith("sqlite"),
        "postgres" in db_url,
    )
    engine = Store._make_engine(old)
    v1 = schema.metadata_at(1)
    with engine.begin() as conn:
        v1.create_all(conn)
        conn.execute(insert(v1.tables["meta"]).values(key="schema_version", value="1"))
        conn.execute(
            insert(v1.tables["workers"]).values(
                name="w1", host="h", slots=2, labels="{}", state="active", registered=1, last_sync=1
            )
        )
    engine.dispose()

    migrated = Store(db_url)
    assert migrated.schema_version() == schema.SCHEMA_VERSION == len(schema.MIGRATIONS) + 1
    with migrated.read() as tx:
        assert [w.name for w in tx.list_workers()] == ["w1"]  # nothing stored was lost
    migrated.close()

    fresh_url = (
        f"sqlite:///{request.getfixturevalue('tmp_path') / 'fresh.db'}"
        if db_url.startswith("sqlite")
        else None
    )
    if fresh_url is None:
        from tests.conftest import fresh_postgres

        with fresh_postgres(request.getfixturevalue("postgres_server")) as url:
            assert _schema(db_url) == _schema(url)
    else:
        assert _schema(db_url) == _schema(fresh_url)


def test_a_database_from_a_newer_shoal_is_refused(db_url: str) -> None:
    from shoal.exceptions import StoreError
    from shoal.store import schema

    store = Store(db_url)
    with store.transaction() as tx:
        tx.execute("UPDATE meta SET value = :v", {"v": str(schema.SCHEMA_VERSION + 1)})
    store.close()
    with pytest.raises(StoreError, match="newer than this shoal"):
        Store(db_url)


def test_two_bosses_claiming_at_once_never_hand_out_a_task_twice(db_url: str) -> None:
    """Two schedulers (as in two boss processes) over one database, syncing in threads."""
    import threading

    stores = [Store(db_url), Store(db_url)]
    bosses = [Scheduler(st) for st in stores]
    rid = bosses[0].submit(
        run_of(f"tasks:\n- {{name: 't-{{i}}', run: x, matrix: {{i: {list(range(300))}}}}}\n")
    )
    handed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(boss: Scheduler, name: str) -> None:
        try:
            w = worker(boss, name, slots=4)
            held: list[p.Assignment] = []
            for _ in range(1000):
                finished = [
                    p.Report(
                        attempt_id=a.attempt_id,
                        outcome=p.SUCCEEDED,
                        exit_code=0,
                        run_id=a.run_id,
                        task=a.task,
                    )
                    for a in held
                ]
                got = boss.sync(
                    p.SyncRequest(worker_id=w, finished=finished, free_slots=4)
                ).response.assignments
                with lock:
                    handed.extend(a.task for a in got)
                held = got
                if not got:
                    break
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(bosses[i % 2], f"w{i}")) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert len(handed) == 300 and len(set(handed)) == 300
    view = bosses[1].run_view(rid)
    assert view["state"] == "succeeded", view
    for st in stores:
        st.close()


def test_housekeeping_is_done_by_one_boss_and_another_takes_over(db_url: str) -> None:
    stores = [Store(db_url), Store(db_url)]
    first, second = (st.housekeeping_lock() for st in stores)
    assert first.hold()
    if stores[0].is_sqlite:
        assert second.hold()  # one boss per SQLite file: no election
    else:
        assert not second.hold()
        assert first.hold()  # held, and still held
        first.release()  # as when its boss dies and its connection closes
        # The server lets the lock go once it has ended the closed session.
        deadline = time.monotonic() + 10
        while not second.hold() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.hold()
        assert not first.hold()
    first.release()
    second.release()
    for st in stores:
        st.close()


def test_work_made_ready_by_another_boss_wakes_this_one(pg_url: str) -> None:
    import threading

    here, there = Store(pg_url), Store(pg_url)
    woken = threading.Event()
    stop = here.listen("here", woken.set)
    try:
        time.sleep(0.5)
        woken.clear()  # listening wakes once on connecting
        boss = Scheduler(there)
        boss.origin = "there"
        boss.submit(run_of("tasks:\n- {name: a, run: x}\n"))
        assert woken.wait(5), "no wake-up for work another boss made ready"
        woken.clear()
        own = Scheduler(here)
        own.origin = "here"
        own.submit(run_of("tasks:\n- {name: b, run: x}\n"))
        assert not woken.wait(1.5), "a boss was woken by its own notice"
    finally:
        stop()
        here.close()
        there.close()


def test_a_database_other_than_sqlite_or_postgresql_is_refused_in_one_line() -> None:
    from shoal.exceptions import BadInput

    with pytest.raises(BadInput, match="neither SQLite nor PostgreSQL"):
        Store("mysql://alice@db/shoal")


def test_the_partial_indexes_hold_only_their_state_on_both_databases(db_url: str) -> None:
    # The claim and the lease sweep read these: a whole-table index would make
    # each claim walk every task that ever ran.
    store = Store(db_url)
    try:
        with store.read() as tx:
            if store.is_postgres:
                rows = tx.records("SELECT indexname AS name, indexdef AS sql FROM pg_indexes")
            else:
                rows = tx.records("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        found = {r.name: r.sql for r in rows}
        for name, state in (
            ("ix_tasks_ready", "ready"),
            ("ix_tasks_running", "running"),
            ("ix_attempts_lease", "running"),
        ):
            assert "WHERE" in found[name] and f"'{state}'" in found[name], found[name]
    finally:
        store.close()
