"""Recording what finished, on the in-memory store: wins, failures, retries, dropped reports."""

from __future__ import annotations

import pytest

from shoal import protocol as p
from shoal.exceptions import NotFound
from shoal.scheduler import Scheduler, describe_exit
from shoal.scheduler.sync import MAX_RETRY_DELAY
from tests.scheduling import (
    MidRng,
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

PAIR = "tasks:\n- {name: a, run: x, outputs: [o.txt]}\n- {name: b, run: y, after: [a]}\n"


def finished(s: Scheduler, w: int, a: p.Assignment, outcome: str, **kw: object) -> None:
    r = p.Report(attempt_id=a.attempt_id, outcome=outcome, run_id=a.run_id, task=a.task, **kw)  # type: ignore[arg-type]
    s.sync(p.SyncRequest(worker_id=w, finished=[r]))


def test_a_success_records_result_outputs_and_worker_and_readies_the_dependents() -> None:
    s = on_memory()
    rid = s.submit(run_of(PAIR))
    w = worker(s)
    (a,) = take(s, w)
    clock(s).now += 3
    out = report(s, w, a, result={"rows": 10}, outputs=["o.txt"], started=1000.5, ended=1002.5)
    assert out.made_ready and out.finished_runs == []
    task = s.task_view(rid, "a")
    assert (task["state"], task["result"], task["outputs"], task["exit_code"]) == (
        "succeeded",
        {"rows": 10},
        ["o.txt"],
        0,
    )
    assert (task["worker"], task["duration"], task["cause"]) == ("w", 2.0, None)
    assert states(s, rid)["b"] == "ready"
    assert kinds(s, rid)[-1] == "task_succeeded"


def test_a_winning_report_promotes_its_outputs_in_the_same_transaction() -> None:
    promoted: list[tuple[int, str, list[str]]] = []

    def promote(attempt_id: int, prefix: str, names: list[str]) -> list[str]:
        promoted.append((attempt_id, prefix, names))
        return []

    s = on_memory(promote=promote)
    rid = s.submit(run_of(PAIR))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a, outputs=["o.txt"])
    assert promoted == [(a.attempt_id, f"runs/{rid}/a/", ["o.txt"])]


def test_a_report_without_outputs_promotes_nothing() -> None:
    called: list[int] = []
    s = on_memory(promote=lambda attempt_id, prefix, names: called.append(attempt_id) or [])
    s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a)
    assert called == []


def test_an_output_that_never_reached_the_boss_fails_the_attempt() -> None:
    s = on_memory(promote=lambda attempt_id, prefix, names: names[1:])
    rid = s.submit(run_of("tasks:\n- {name: a, run: x, outputs: [x, y], retries: 1}\n"))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a, outputs=["x", "y"])
    task = s.task_view(rid, "a")
    # A failure like any other: it is retried.
    assert (task["state"], task["cause"], task["outputs"]) == (
        "ready",
        "output 'y' never reached the boss",
        [],
    )
    assert task["attempt_list"][0]["state"] == "failed"


@pytest.mark.parametrize(
    ("exit_code", "cause"),
    [
        (3, "exit code 3"),
        (-9, "killed by SIGKILL"),
        (-200, "killed by signal 200"),
        (None, "no exit code"),
    ],
)
def test_a_failure_says_how_the_command_ended(exit_code: int | None, cause: str) -> None:
    assert describe_exit(exit_code) == cause
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    finished(s, w, a, p.FAILED, exit_code=exit_code)
    task = s.task_view(rid, "a")
    assert (task["state"], task["cause"], task["exit_code"]) == ("failed", cause, exit_code)


def test_the_workers_own_cause_wins_over_the_exit_code() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    finished(s, w, a, p.FAILED, exit_code=124, cause="timed out after 30s")
    assert s.task_view(rid, "a")["cause"] == "timed out after 30s"


def test_a_failure_fails_everything_downstream_and_ends_the_run() -> None:
    s = on_memory()
    rid = s.submit(
        run_of(
            "tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"
            "- {name: c, run: x, after: [b]}\n- {name: d, run: x, after: [a, c]}\n"
        )
    )
    w = worker(s)
    (a,) = take(s, w)
    out = report(s, w, a, code=1, result=[1, 2])
    assert out.finished_runs == [rid]
    tasks = {t["name"]: t for t in s.tasks_view(rid)}
    assert tasks["a"]["result"] == [1, 2]  # a failed task keeps what it wrote
    for name in "bcd":
        assert (tasks[name]["state"], tasks[name]["cause"]) == (
            "upstream_failed",
            "upstream a failed",
        )
    view = s.run_view(rid)
    assert (view["state"], view["unfinished"]) == ("failed", 0)
    # Cause before effect: the failure, what it failed downstream, the run's end.
    assert kinds(s, rid)[-5:] == ["task_failed", *["upstream_failed"] * 3, "run_failed"]


def test_a_failed_command_is_retried_with_doubling_back_off_then_fails() -> None:
    s = on_memory(rng=MidRng())  # type: ignore[arg-type]
    rid = s.submit(run_of("tasks:\n- {name: f, run: x, retries: 2, retry_delay: 4s}\n"))
    w = worker(s)
    waits = []
    (a,) = take(s, w)
    for _ in range(2):
        failed_at = clock(s).now
        report(s, w, a, code=1)
        assert states(s, rid) == {"f": "ready"}
        while not (got := take(s, w)):
            clock(s).now += 1
        (a,) = got
        waits.append(clock(s).now - failed_at)
    assert waits == [4, 8]
    report(s, w, a, code=1)
    task = s.task_view(rid, "f")
    assert (task["state"], task["attempts"]) == ("failed", 3)
    assert kinds(s, rid).count("task_retried") == 2


@pytest.mark.parametrize(
    ("delay", "failures", "low", "high"),
    [
        (2.0, 1, 1.0, 3.0),  # the delay, with jitter of half either way
        (2.0, 3, 4.0, 12.0),  # doubled per failure
        (500.0, 2, MAX_RETRY_DELAY * 0.5, MAX_RETRY_DELAY * 1.5),  # at most ten minutes
        (0.0, 5, 0.0, 0.0),  # no delay: at once
    ],
)
def test_back_off_doubles_with_jitter_up_to_ten_minutes(
    delay: float, failures: int, low: float, high: float
) -> None:
    from shoal.scheduler.sync import backoff

    s = on_memory()
    waits = [backoff(s, delay, failures) for _ in range(200)]
    assert all(low <= x <= high for x in waits)
    if high > low:
        assert len(set(waits)) > 100  # jittered: workers do not all come back at once


def test_an_interrupted_attempt_is_ready_again_and_counts_no_failure() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x, retries: 0}\n"))
    w = worker(s)
    (a,) = take(s, w)
    finished(s, w, a, p.INTERRUPTED, cause="worker stopped")
    assert states(s, rid) == {"a": "ready"}
    (again,) = take(s, w)
    report(s, w, again)
    task = s.task_view(rid, "a")
    assert task["state"] == "succeeded"  # no retries, yet it ran again
    assert [x["state"] for x in task["attempt_list"]] == ["interrupted", "succeeded"]
    assert s.workers_view()[0]["failed"] == 0


def test_an_outcome_the_boss_does_not_know_counts_as_interrupted() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    finished(s, w, a, "vanished")
    assert states(s, rid) == {"a": "ready"}
    assert s.task_view(rid, "a")["attempt_list"][0]["state"] == p.INTERRUPTED


def test_reports_of_attempts_the_boss_ended_are_dropped_and_said_so() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    w, other = worker(s, "w", slots=2), worker(s, "other")
    a, b = take(s, w, free=2)
    report(s, other, a, result="not yours")  # from a worker that does not hold it
    report(s, w, a, result="mine")
    report(s, w, a, result="again")  # the same attempt twice
    s.cancel(rid)
    report(s, w, b, result="too late")  # cancelled meanwhile
    finished(
        s, w, p.Assignment(attempt_id=999, run_id=rid, run="run", task="x", number=1), p.SUCCEEDED
    )
    assert s.results(rid) == {"a": "mine"}
    dropped = [e for e in s.events_view(None) if e["kind"] == "report_dropped"]
    assert [e["detail"] for e in dropped] == [
        "succeeded after the attempt was running",
        "succeeded after the attempt was succeeded",
        "succeeded after the attempt was cancelled",
        "succeeded after the attempt was unknown",
    ]
    assert [(e["attempt_id"], e["task_id"] is not None) for e in dropped] == [
        (a.attempt_id, True),
        (a.attempt_id, True),
        (b.attempt_id, True),
        (999, False),
    ]
    assert s.workers_view()[1]["done"] == 0  # the other worker's report counted nothing


def test_the_late_report_of_an_attempt_that_lost_the_race_is_dropped() -> None:
    s = on_memory(speculate_min=0.0)
    rid, slow, fast, straggler = straggling(s)
    clock(s).now += 5
    (backup,) = take(s, fast)
    report(s, fast, backup, result="backup")
    report(s, slow, straggler, result="original", log="late")
    task = s.task_view(rid, straggler.task)
    assert task["result"] == "backup"
    attempts = {x["id"]: x for x in task["attempt_list"]}
    assert attempts[straggler.attempt_id]["state"] == "superseded"
    assert attempts[straggler.attempt_id]["log"] is None
    assert kinds(s, rid).count("task_succeeded") == 4
    assert s.events_view(rid)[-1]["detail"] == "succeeded after the attempt was superseded"


def test_a_report_for_a_task_ended_by_another_boss_meanwhile_is_superseded() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    # Another boss recorded another attempt's win; this attempt was not told yet.
    task = next(iter(memory(s).tables.tasks.values()))
    task.update(state="succeeded", has_result=True, result_json='"theirs"')
    report(s, w, a, result="mine", log="output")
    view = s.task_view(rid, "a")
    assert view["result"] == "theirs"
    attempt = view["attempt_list"][0]
    assert (attempt["state"], attempt["cause"]) == ("superseded", "superseded")
    assert attempt["log"] == f"logs/{rid}/a/{a.attempt_id}.log"  # its log is kept all the same
    assert kinds(s, rid)[-1] == "attempt_superseded"


def test_a_log_is_recorded_where_it_was_written_or_uploaded() -> None:
    s = on_memory()
    rid = s.submit(
        run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: c, run: x}\n")
    )
    w = worker(s, slots=3)
    a, b, c = take(s, w, free=3)
    report(s, w, a, log="inline")
    report(s, w, b, log_uploaded=True)
    report(s, w, c)
    logs = {t["name"]: t["log"] for t in s.tasks_view(rid)}
    assert logs == {
        "a": f"logs/{rid}/a/{a.attempt_id}.log",
        "b": f"logs/{rid}/b/{b.attempt_id}.log",
        "c": None,
    }


def test_a_sync_refused_records_none_of_its_reports() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    w = worker(s)
    (a,) = take(s, w)
    s.worker_stopped(w)
    with pytest.raises(NotFound):
        report(s, w, a)
    assert states(s, rid) == {"a": "running"}  # the whole sync was rolled back
    assert "task_succeeded" not in kinds(s, rid)
    assert memory(s).tables.attempts[a.attempt_id]["state"] == "running"


def test_many_reports_in_one_sync_ready_a_join_once_and_end_the_run_once() -> None:
    s = on_memory()
    rid = s.submit(
        run_of(
            "tasks:\n- name: 'p-{i}'\n  matrix: {i: [1, 2, 3, 4]}\n  run: x\n"
            "- {name: join, run: x, after: ['p-*']}\n"
        )
    )
    w = worker(s, slots=4)
    parts = take(s, w, free=4)
    reports = [p.Report(attempt_id=x.attempt_id, outcome=p.SUCCEEDED, exit_code=0) for x in parts]
    out = s.sync(p.SyncRequest(worker_id=w, finished=reports, free_slots=4))
    assert [x.task for x in out.response.assignments] == ["join"]
    assert s.run_view(rid)["unfinished"] == 1
    out = report(s, w, out.response.assignments[0])
    assert out.finished_runs == [rid]
    assert kinds(s, rid).count("run_succeeded") == 1
    assert s.workers_view()[0]["done"] == 5
