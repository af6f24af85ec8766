"""Reductions the boss computes, on the in-memory store: values so far, the total, errors."""

from __future__ import annotations

from shoal.scheduler import Scheduler
from tests.scheduling import kinds, on_memory, report, run_of, states, take, worker

SUM = "flow: 'a | b | c; a + b + c'\ntasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: c, run: x}\n"


def operands(s: Scheduler, text: str = SUM) -> tuple[int, int, dict[str, object]]:
    rid = s.submit(run_of(text))
    w = worker(s, slots=3)
    return rid, w, {a.task: a for a in take(s, w, free=3)}


def test_a_reduction_adds_its_operands_results_once_all_succeeded() -> None:
    s = on_memory()
    rid, w, got = operands(s)
    report(s, w, got["a"], result=1)  # type: ignore[arg-type]
    report(s, w, got["b"], result=20)  # type: ignore[arg-type]
    assert states(s, rid)["sum-1"] == "waiting"
    out = report(s, w, got["c"], result=300)  # type: ignore[arg-type]
    assert out.finished_runs == [rid]
    view = s.run_view(rid)
    assert (view["state"], view["final"], view["result"]) == ("succeeded", "sum-1", 321)
    total = s.task_view(rid, "sum-1")
    assert (total["state"], total["exit_code"], total["attempts"]) == ("succeeded", 0, 0)
    events = [e for e in s.events_view(rid) if e["task_id"] == total["id"]]
    assert [(e["kind"], e["detail"]) for e in events] == [("task_succeeded", "reduced by the boss")]
    assert kinds(s, rid)[-1] == "run_succeeded"


def test_the_value_so_far_shows_while_operands_finish() -> None:
    s = on_memory()
    rid, w, got = operands(
        s, SUM.replace("a + b + c", "a + b + c").replace("run: x}", "run: x}", 1)
    )
    report(s, w, got["b"], result=["b"])  # type: ignore[arg-type]
    assert s.run_view(rid)["partial"] == {"sum-1": ["b"]}
    report(s, w, got["c"], result=["c"])  # type: ignore[arg-type]
    assert s.run_view(rid)["partial"] == {"sum-1": ["b", "c"]}  # in operand order
    report(s, w, got["a"], result=["a"])  # type: ignore[arg-type]
    view = s.run_view(rid)
    assert view["result"] == ["a", "b", "c"] and view["partial"] == {}


def test_objects_merge_and_a_later_operand_wins() -> None:
    s = on_memory()
    rid, w, got = operands(s)
    report(s, w, got["a"], result={"x": 1, "y": 1})  # type: ignore[arg-type]
    report(s, w, got["b"], result={"y": 2})  # type: ignore[arg-type]
    report(s, w, got["c"], result={"z": 3})  # type: ignore[arg-type]
    assert s.run_view(rid)["result"] == {"x": 1, "y": 2, "z": 3}


def test_operands_that_do_not_add_up_fail_the_reduction_with_both_named() -> None:
    s = on_memory()
    rid, w, got = operands(s)
    report(s, w, got["a"], result=1)  # type: ignore[arg-type]
    report(s, w, got["b"], result="two")  # type: ignore[arg-type]
    assert s.run_view(rid)["partial"] == {"sum-1": 1}  # a mix shows what adds, until the end
    report(s, w, got["c"], result=3)  # type: ignore[arg-type]
    total = s.task_view(rid, "sum-1")
    assert total["state"] == "failed"
    assert (
        total["cause"] == "reduction failed: cannot add a string (task 'b') to a number (task 'a')"
    )
    assert s.run_view(rid)["state"] == "failed"


def test_an_operand_without_a_result_fails_the_reduction() -> None:
    s = on_memory()
    rid, w, got = operands(s)
    report(s, w, got["a"])  # type: ignore[arg-type]
    report(s, w, got["b"], result=2)  # type: ignore[arg-type]
    report(s, w, got["c"], result=3)  # type: ignore[arg-type]
    cause = s.task_view(rid, "sum-1")["cause"]
    assert cause == "reduction failed: task 'a' gave no result, which cannot be added"


def test_a_failed_operand_fails_the_reduction_upstream() -> None:
    s = on_memory()
    rid, w, got = operands(s)
    report(s, w, got["a"], code=1)  # type: ignore[arg-type]
    assert states(s, rid)["sum-1"] == "upstream_failed"
    assert s.task_view(rid, "sum-1")["cause"] == "upstream a failed"


def test_a_reduction_of_reductions_is_computed_in_the_same_sync() -> None:
    s = on_memory()
    text = (
        "tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: c, run: x}\n"
        "- {name: ab, reduce: [a, b]}\n- {name: total, reduce: [ab, c]}\n"
    )
    rid, w, got = operands(s, text)
    report(s, w, got["c"], result=100)  # type: ignore[arg-type]
    report(s, w, got["a"], result=1)  # type: ignore[arg-type]
    out = report(s, w, got["b"], result=2)  # type: ignore[arg-type]
    assert out.finished_runs == [rid]
    assert s.run_view(rid)["state"] == "succeeded"
    assert s.results(rid) == {"a": 1, "b": 2, "c": 100, "ab": 3, "total": 103}


def test_a_command_after_a_reduction_is_ready_once_it_is_computed() -> None:
    s = on_memory()
    text = (
        "flow: 'a | b; a + b; report'\n"
        "tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n- {name: report, run: show}\n"
    )
    rid = s.submit(run_of(text))
    w = worker(s, slots=2)
    a, b = take(s, w, free=2)
    report(s, w, a, result=1)
    # The reduction is computed last in the sync, after the claim: what it
    # makes ready wakes the workers, this one included, for their next sync.
    out = report(s, w, b, result=2, free=1)
    assert out.made_ready and out.response.assignments == []
    assert states(s, rid)["sum-1"] == "succeeded"
    assert [x.task for x in take(s, w)] == ["report"]
