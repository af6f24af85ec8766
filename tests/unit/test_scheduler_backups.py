"""Backups of stragglers, on the in-memory store: when one is made, where, and who wins."""

from __future__ import annotations

from shoal import protocol as p
from tests.scheduling import (
    GROUP,
    clock,
    kinds,
    on_memory,
    report,
    run_of,
    states,
    straggling,
    take,
    worker,
)


def test_no_backup_before_twice_the_median_nor_before_the_minimum() -> None:
    s = on_memory(speculate_min=10.0, speculate_factor=2.0)
    _, _, fast, _ = straggling(s)
    clock(s).now += 4.5  # past 2 x the median (2 s), not past the minimum
    assert take(s, fast) == []
    clock(s).now += 6  # 10.5 s
    (backup,) = take(s, fast)
    assert (backup.task, backup.number) == ("t-1", 2)


def test_no_backup_while_the_group_has_fewer_than_two_finished() -> None:
    s = on_memory(speculate_min=0.0)
    rid = s.submit(run_of("tasks:\n- name: t-{i}\n  matrix: {i: [1, 2]}\n  run: x\n"))
    slow, fast = worker(s, "slow"), worker(s, "fast")
    take(s, slow)
    (a,) = take(s, fast)
    report(s, fast, a, started=0.0, ended=1.0)
    clock(s).now += 1000
    assert take(s, fast) == []  # one duration is no median
    assert states(s, rid) == {"t-1": "running", "t-2": "succeeded"}


def test_a_backup_only_when_nothing_is_ready_and_never_on_the_same_worker() -> None:
    s = on_memory(speculate_min=0.0)
    rid, slow, fast, straggler = straggling(s)
    clock(s).now += 5
    s.submit(run_of("name: more\ntasks:\n- {name: fresh, run: x}\n"))
    assert [a.task for a in take(s, fast)] == ["fresh"]  # ready work first
    assert take(s, slow) == []  # its own straggler: no
    (backup,) = take(s, fast)
    assert backup.task == straggler.task
    assert take(s, worker(s, "third")) == []  # one backup at most
    assert states(s, rid)[straggler.task] == "running"


def test_a_backup_goes_only_where_the_task_may_run() -> None:
    s = on_memory(speculate_min=0.0)
    text = "tasks:\n- name: t-{i}\n  matrix: {i: [1, 2, 3, 4]}\n  run: x\n  requires: {gpu: true}\n"
    straggler = straggling(s, text, gpu=True)[3]
    clock(s).now += 5
    assert take(s, worker(s, "plain", slots=3)) == []  # lacks the label
    assert [a.task for a in take(s, worker(s, "gpu-2", gpu=True))] == [straggler.task]


def test_the_first_to_finish_wins_and_the_other_is_told_to_stop() -> None:
    s = on_memory(speculate_min=0.0)
    rid, slow, fast, straggler = straggling(s)
    clock(s).now += 5
    (backup,) = take(s, fast)
    out = report(s, fast, backup, result="backup")
    assert out.finished_runs == [rid]  # the straggler's task was the last
    answer = s.sync(p.SyncRequest(worker_id=slow, running=[straggler.attempt_id])).response
    assert answer.cancel == [straggler.attempt_id]
    task = s.task_view(rid, straggler.task)
    assert task["result"] == "backup" and task["worker"] == "fast"
    assert sorted(a["state"] for a in task["attempt_list"]) == ["succeeded", "superseded"]
    assert kinds(s, rid).count("run_succeeded") == 1


def test_when_the_original_finishes_first_the_backup_is_superseded() -> None:
    s = on_memory(speculate_min=0.0)
    rid, slow, fast, straggler = straggling(s)
    clock(s).now += 5
    (backup,) = take(s, fast)
    report(s, slow, straggler, result="original")
    answer = s.sync(p.SyncRequest(worker_id=fast, running=[backup.attempt_id])).response
    assert answer.cancel == [backup.attempt_id]
    assert s.results(rid)[straggler.task] == "original"


def test_a_failed_backup_leaves_the_original_to_finish() -> None:
    s = on_memory(speculate_min=0.0)
    rid, slow, fast, straggler = straggling(s)
    clock(s).now += 5
    (backup,) = take(s, fast)
    report(s, fast, backup, code=1)
    assert states(s, rid)[straggler.task] == "running"
    attempts = s.task_view(rid, straggler.task)["attempt_list"]
    assert [a["state"] for a in attempts] == ["running", "failed"]
    report(s, slow, straggler, result="original")
    assert s.run_view(rid)["state"] == "succeeded"


def test_no_backups_for_tasks_that_say_so_nor_from_a_scheduler_told_not_to() -> None:
    s = on_memory(speculate_min=0.0)
    _, _, fast, _ = straggling(s, GROUP + "  speculative: false\n")
    clock(s).now += 100
    assert take(s, fast) == []
    quiet = on_memory(speculate=False, speculate_min=0.0)
    _, _, fast, _ = straggling(quiet)
    clock(quiet).now += 100
    assert take(quiet, fast) == []
