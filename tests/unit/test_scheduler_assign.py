"""Handing out work in a sync, on the in-memory store: who takes what, in which order."""

from __future__ import annotations

import pytest

from shoal import protocol as p
from shoal.exceptions import NotFound
from tests.scheduling import clock, kinds, on_memory, report, run_of, states, take, worker


def names(assignments: list[p.Assignment]) -> list[str]:
    return [a.task for a in assignments]


def test_a_worker_gets_as_many_tasks_as_it_has_free_slots() -> None:
    s = on_memory()
    s.submit(run_of("tasks:\n- name: 't-{i}'\n  run: x\n  matrix: {i: [1, 2, 3, 4, 5]}\n"))
    w = worker(s, slots=3)
    assert names(take(s, w, free=3)) == ["t-1", "t-2", "t-3"]
    assert take(s, w, free=0) == []  # a sync without free slots only reports and renews
    assert names(take(s, w, free=1)) == ["t-4"]


def test_tasks_are_packed_into_the_free_slots_in_order_skipping_what_does_not_fit() -> None:
    s = on_memory()
    s.submit(
        run_of(
            "tasks:\n- {name: two, run: x, slots: 2}\n- {name: three, run: x, slots: 3}\n"
            "- {name: one-a, run: x}\n- {name: one-b, run: x}\n"
        )
    )
    w = worker(s, slots=4)
    # two (2 slots), then three does not fit the 2 left, then one-a and one-b do.
    assert names(take(s, w, free=4)) == ["two", "one-a", "one-b"]
    assert names(take(s, w, free=3)) == ["three"]


def test_a_task_needing_more_slots_than_the_worker_has_is_never_its() -> None:
    s = on_memory()
    s.submit(run_of("tasks:\n- {name: big, run: x, slots: 3}\n"))
    small = worker(s, "small", slots=2)
    assert take(s, small, free=5) == []  # it says 5 free, but it has 2 slots
    assert names(take(s, worker(s, "large", slots=3), free=3)) == ["big"]


def test_a_pinned_task_goes_only_to_the_worker_of_that_name() -> None:
    s = on_memory()
    s.submit(run_of("tasks:\n- {name: there, run: x, host: node-7}\n- {name: any, run: x}\n"))
    other = worker(s, "node-1", slots=2)
    assert names(take(s, other, free=2)) == ["any"]
    assert names(take(s, worker(s, "node-7"), free=1)) == ["there"]


@pytest.mark.parametrize(
    ("requires", "labels", "taken"),
    [
        ("{gpu: true}", {"gpu": True}, True),
        ("{gpu: true}", {"gpu": 1}, False),  # JSON values: true is not 1
        ("{gpu: true}", {"gpu": "true"}, False),
        ("{gpu: true}", {}, False),
        ("{cores: 8}", {"cores": 8.0}, True),  # 8 is 8.0
        ("{zone: eu-1}", {"zone": "eu-1", "extra": "ok"}, True),
        ("{zone: eu-1, gpu: true}", {"zone": "eu-1"}, False),  # all of them
        ("{zone: eu-1, gpu: true}", {"zone": "eu-1", "gpu": True}, True),
    ],
)
def test_required_labels_are_matched_as_json_values(
    requires: str, labels: dict[str, object], taken: bool
) -> None:
    s = on_memory()
    s.submit(run_of(f"tasks:\n- {{name: t, run: x, requires: {requires}}}\n"))
    assert names(take(s, worker(s, **labels))) == (["t"] if taken else [])


def test_higher_priority_first_then_the_order_of_submission_across_runs() -> None:
    s = on_memory()
    r1 = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, priority: 5}\n"))
    r2 = s.submit(run_of("tasks:\n- {name: c, run: x, priority: 9}\n- {name: d, run: x}\n"))
    w = worker(s, slots=4)
    got = [(a.run_id, a.task) for a in take(s, w, free=4)]
    assert got == [(r2, "c"), (r1, "b"), (r1, "a"), (r2, "d")]


def test_tasks_nobody_here_can_take_never_starve_one_this_worker_can() -> None:
    s = on_memory()
    # Far more tasks than a claim looks at (2 x free + 8), all pinned elsewhere, first.
    pinned = "".join(f"- {{name: p-{i}, run: x, host: elsewhere}}\n" for i in range(40))
    labelled = "".join(f"- {{name: g-{i}, run: x, requires: {{gpu: true}}}}\n" for i in range(40))
    rid = s.submit(run_of(f"tasks:\n{pinned}{labelled}- {{name: plain, run: x, priority: -1}}\n"))
    w = worker(s, "cpu")
    (a,) = take(s, w)
    assert a.task == "plain"
    report(s, w, a)
    assert states(s, rid)["plain"] == "succeeded"


def test_a_task_waiting_for_its_retry_is_passed_over_until_its_time() -> None:
    s = on_memory()
    s.submit(
        run_of(
            "tasks:\n- {name: flaky, run: x, retries: 1, retry_delay: 60s}\n- {name: next, run: x}\n"
        )
    )
    w = worker(s)
    (flaky,) = take(s, w)
    report(s, w, flaky, code=1)
    assert names(take(s, w)) == ["next"]  # flaky waits for its back-off (30 s to 90 s)
    clock(s).now += 91
    (again,) = take(s, w)
    assert (again.task, again.number) == ("flaky", 2)


def test_each_attempt_is_numbered_and_its_start_is_recorded() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: t, run: x, retries: 2, retry_delay: 0}\n"))
    w = worker(s)
    numbers = []
    for _ in range(3):
        (a,) = take(s, w)
        numbers.append(a.number)
        report(s, w, a, code=1)
    assert numbers == [1, 2, 3]
    task = s.task_view(rid, "t")
    assert [x["number"] for x in task["attempt_list"]] == [1, 2, 3]
    assert kinds(s, rid).count("attempt_started") == 3
    started = [e for e in s.events_view(rid) if e["kind"] == "attempt_started"]
    assert {e["worker_id"] for e in started} == {w}


def test_outputs_of_every_dependency_are_fetched_under_its_name() -> None:
    s = on_memory()
    rid = s.submit(
        run_of(
            "tasks:\n- {name: a, run: x, outputs: [one.txt, two.txt]}\n- {name: b, run: x}\n"
            "- {name: c, run: x, after: [a, b], inputs: [shared/ref.csv]}\n"
        )
    )
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    report(s, w, a, outputs=["one.txt", "two.txt"])
    (c,) = report(s, w, b, free=1).response.assignments
    assert [(f.path, f.dest) for f in c.fetch] == [
        ("shared/ref.csv", "shared/ref.csv"),
        (f"runs/{rid}/a/one.txt", "inputs/a/one.txt"),
        (f"runs/{rid}/a/two.txt", "inputs/a/two.txt"),
    ]


def test_a_reducer_command_reads_its_operands_results_on_stdin() -> None:
    s = on_memory()
    s.submit(
        run_of(
            "tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"
            "- {name: pick, reduce: [a, b], run: choose}\n"
        )
    )
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    report(s, w, a, result={"score": 3})
    (pick,) = report(s, w, b, free=1).response.assignments  # b gave no result
    assert pick.task == "pick" and pick.run_cmds == ["choose"]
    assert pick.stdin == '{"a": {"score": 3}, "b": null}'


def test_a_sync_from_an_unknown_or_stopped_worker_is_refused() -> None:
    s = on_memory()
    s.submit(run_of("tasks:\n- {name: a, run: x}\n"))
    with pytest.raises(NotFound, match="no active worker 42: register again"):
        take(s, 42)
    w = worker(s)
    s.worker_stopped(w, "idle for 60s")
    with pytest.raises(NotFound, match="register again"):
        take(s, w)
    stopped = [e for e in s.events_view(None) if e["kind"] == "worker_stopped"]
    assert [(e["worker_id"], e["detail"]) for e in stopped] == [(w, "idle for 60s")]


def test_a_worker_is_told_which_of_its_attempts_to_stop() -> None:
    s = on_memory()
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    s.cancel(rid)
    answer = s.sync(p.SyncRequest(worker_id=w, running=[a.attempt_id, b.attempt_id, 999])).response
    assert sorted(answer.cancel) == sorted([a.attempt_id, b.attempt_id])  # 999: no such attempt


def test_a_sync_records_the_worker_and_its_tally() -> None:
    s = on_memory()
    s.boss_id = 7
    s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    clock(s).now += 5
    report(s, w, a)
    report(s, w, b, code=1)
    (view,) = s.workers_view()
    assert (view["done"], view["failed"], view["last_sync"], view["boss"]) == (1, 1, 1005.0, 7)
    assert (view["state"], view["running"], view["slots"]) == ("active", 0, 2)


def test_registration_answers_how_often_to_sync() -> None:
    for lease, beat in ((30.0, 5.0), (2.0, 0.5), (0.4, 0.2)):
        s = on_memory(lease_seconds=lease)
        answer = s.register(p.Registration(name="w", host="h", slots=0, labels={"a": 1}))
        assert (answer.lease_seconds, answer.heartbeat_seconds) == (lease, beat)
    (view,) = s.workers_view()
    assert (view["slots"], view["labels"]) == (1, {"a": 1})  # at least one slot


def test_nothing_ready_means_nothing_given() -> None:
    s = on_memory(speculate=False)
    rid = s.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x, after: [a]}\n"))
    w1, w2 = worker(s, "w1"), worker(s, "w2")
    assert names(take(s, w1)) == ["a"]
    assert take(s, w2) == []  # b waits for a
    assert states(s, rid) == {"a": "running", "b": "waiting"}
