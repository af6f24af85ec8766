"""Submitting a run, on the in-memory store: what is ready, what waits, what is reused."""

from __future__ import annotations

from shoal.scheduler import Scheduler
from tests.scheduling import kinds, memory, on_memory, report, run_of, states, take, worker

CHAIN = "tasks:\n- {name: a, run: x, outputs: [o]}\n- {name: b, run: y, after: [a]}\n- {name: c, run: z}\n"


def test_tasks_without_dependencies_are_ready_and_the_others_wait() -> None:
    s = on_memory()
    rid = s.submit(run_of(CHAIN))
    assert states(s, rid) == {"a": "ready", "b": "waiting", "c": "ready"}
    view = s.run_view(rid)
    assert (view["state"], view["total"], view["unfinished"], view["active"]) == (
        "running",
        3,
        3,
        3,
    )
    assert view["counts"] == {"ready": 2, "waiting": 1}
    assert kinds(s, rid) == ["run_submitted"]
    assert s.events_view(rid)[0]["detail"] == "run"  # the run's name: the file's stem


def test_submitting_work_wakes_the_other_bosses_with_this_ones_tag() -> None:
    s = on_memory()
    s.origin = "here"
    s.submit(run_of(CHAIN))
    assert memory(s).notices == ["here"]


def test_the_same_submission_key_gives_the_run_the_first_submission_made() -> None:
    s = on_memory()
    first = s.submit(run_of(CHAIN), key="k-1")
    assert s.submit(run_of(CHAIN), key="k-1") == first
    assert [r["run"] for r in s.runs_view()] == [first]
    other = s.submit(run_of(CHAIN), key="k-2")
    assert other != first
    assert sorted(r["run"] for r in s.runs_view()) == [first, other]


def test_a_run_takes_its_name_env_bundle_and_setup_to_every_assignment() -> None:
    s = on_memory()
    s.submit(
        run_of(
            "name: sweep\nenv: {MODE: fast, KEEP: run}\nsetup: pip install x\n"
            "tasks:\n- name: t\n  run: [one, two]\n  download: get\n  upload: put\n"
            "  cleanup: rm\n  inputs: [data/in.csv]\n  outputs: [out.json]\n"
            "  env: {MODE: slow}\n  timeout: 90s\n  slots: 2\n"
        ),
        bundle="b" * 64,
    )
    (a,) = take(s, worker(s, slots=2), free=2)
    assert (a.run, a.task, a.number, a.slots) == ("sweep", "t", 1, 2)
    assert (a.run_cmds, a.download, a.upload, a.cleanup) == (
        ["one", "two"],
        ["get"],
        ["put"],
        ["rm"],
    )
    assert a.env == {"MODE": "slow", "KEEP": "run"}  # the task's own env wins
    assert (a.timeout, a.outputs, a.bundle, a.setup) == (
        90.0,
        ["out.json"],
        "b" * 64,
        "pip install x",
    )
    assert [(f.path, f.dest) for f in a.fetch] == [("data/in.csv", "data/in.csv")]
    assert a.stdin is None


def _first_run(s: Scheduler) -> int:
    """The chain's first run: a succeeds (result 1, output o), c fails, so b fails."""
    first = s.submit(run_of(CHAIN))
    w = worker(s, slots=2)
    a, c = take(s, w, free=2)
    report(s, w, a, result=1, outputs=["o"])
    report(s, w, c, code=2)
    (b,) = take(s, w)
    report(s, w, b, code=3)
    assert states(s, first) == {"a": "succeeded", "b": "failed", "c": "failed"}
    return first


def test_with_reuse_an_unchanged_success_is_not_run_again() -> None:
    s = on_memory()
    first = _first_run(s)
    second = s.submit(run_of(CHAIN), reuse=True)
    tasks = {t["name"]: t for t in s.tasks_view(second)}
    a = tasks["a"]
    assert (a["state"], a["cached"], a["result"], a["outputs"], a["source_run"]) == (
        "succeeded",
        True,
        1,
        ["o"],
        first,
    )
    # b did not succeed before: it runs, and a's outputs come from the first run.
    assert (tasks["b"]["state"], tasks["b"]["cached"]) == ("ready", False)
    assert (tasks["c"]["state"], tasks["c"]["cached"]) == ("ready", False)
    view = s.run_view(second)
    assert (view["cached"], view["unfinished"]) == (1, 2)
    assert kinds(s, second) == ["run_submitted", "tasks_cached"]
    assert s.events_view(second)[1]["detail"] == "1 tasks"


def test_a_runs_count_of_cached_tasks_stays_right_as_its_other_tasks_succeed() -> None:
    s = on_memory()
    _first_run(s)
    second = s.submit(run_of(CHAIN), reuse=True)
    assert s.run_view(second)["cached"] == 1
    w = worker(s, "w2", slots=3)
    while given := [x for x in take(s, w, free=3) if x.run_id == second]:
        for x in given:
            report(s, w, x)
    view = s.run_view(second)
    assert (view["state"], view["counts"], view["cached"]) == ("succeeded", {"succeeded": 3}, 1)
    # Another run of the same database counts its own.
    third = s.submit(run_of(CHAIN), reuse=True)
    assert s.run_view(third)["cached"] == 3


def test_reused_outputs_stay_where_they_were_made_however_often_reused() -> None:
    s = on_memory()
    first = _first_run(s)
    second = s.submit(run_of(CHAIN), reuse=True)
    third = s.submit(run_of(CHAIN), reuse=True)
    assert {t["name"]: t["source_run"] for t in s.tasks_view(third)}["a"] == first
    w = worker(s, "w2", slots=3)
    b = next(x for x in take(s, w, free=3) if x.run_id == third and x.task == "b")
    assert [(f.path, f.dest) for f in b.fetch] == [(f"runs/{first}/a/o", "inputs/a/o")]
    assert second != third


def test_without_reuse_nothing_is_taken_from_earlier_runs() -> None:
    s = on_memory()
    _first_run(s)
    again = s.submit(run_of(CHAIN))
    assert states(s, again) == {"a": "ready", "b": "waiting", "c": "ready"}
    assert s.run_view(again)["cached"] == 0


def test_a_success_under_another_bundle_or_another_command_is_not_reused() -> None:
    s = on_memory()
    _first_run(s)
    other_bundle = s.submit(run_of(CHAIN), reuse=True, bundle="f" * 64)
    assert s.run_view(other_bundle)["cached"] == 0
    other_command = s.submit(run_of(CHAIN.replace("run: x", "run: x2")), reuse=True)
    assert s.run_view(other_command)["cached"] == 0


def test_a_task_whose_dependency_runs_again_runs_again_too() -> None:
    s = on_memory()
    text = "tasks:\n- {name: a, run: x}\n- {name: b, run: y, after: [a]}\n"
    first = s.submit(run_of(text))
    w = worker(s)
    (a,) = take(s, w)
    (b,) = report(s, w, a, free=1).response.assignments
    report(s, w, b)
    assert s.run_view(first)["state"] == "succeeded"
    # a changed: b is unchanged itself, but its input may not be.
    changed = s.submit(run_of(text.replace("run: x", "run: x2")), reuse=True)
    assert states(s, changed) == {"a": "ready", "b": "waiting"}


def test_a_run_reused_whole_succeeds_at_once_and_wakes_nobody() -> None:
    s = on_memory()
    text = "tasks:\n- {name: a, run: x}\n- {name: b, run: y, after: [a]}\n"
    s.submit(run_of(text))
    w = worker(s)
    (a,) = take(s, w)
    report(s, w, a)
    (b,) = take(s, w)
    report(s, w, b)
    notices = len(memory(s).notices)
    again = s.submit(run_of(text), reuse=True)
    view = s.run_view(again)
    assert (view["state"], view["cached"], view["unfinished"]) == ("succeeded", 2, 0)
    assert kinds(s, again) == ["run_submitted", "tasks_cached", "run_succeeded"]
    assert len(memory(s).notices) == notices  # nothing became ready
    assert take(s, w) == []


def test_a_reduction_whose_operands_are_all_reused_is_computed_at_submit() -> None:
    s = on_memory()
    text = "flow: 'a | b; a + b'\ntasks:\n- {name: a, run: x}\n- {name: b, run: y}\n"
    first = s.submit(run_of(text))
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    report(s, w, a, result=1)
    report(s, w, b, result="two")  # a number and a string do not add
    assert s.run_view(first)["state"] == "failed"
    again = s.submit(run_of(text), reuse=True)
    view = s.run_view(again)
    assert view["state"] == "failed"  # decided in the submission: no worker was needed
    total = s.task_view(again, "sum-1")
    assert total["state"] == "failed"
    assert (
        total["cause"] == "reduction failed: cannot add a string (task 'b') to a number (task 'a')"
    )
    assert kinds(s, again)[-2:] == ["task_failed", "run_failed"]
