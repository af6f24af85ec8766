"""Definition keys: what makes a task the same task again when a run is resumed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shoal.scheduler.keys import definition_keys, topological
from tests.scheduling import run_of

BASE = "env: {A: '1'}\nsetup: prep\ntasks:\n- {name: a, run: x}\n- {name: b, run: y, after: [a]}\n"


def keys(text: str = BASE, bundle: str | None = "b1") -> dict[str, str]:
    return definition_keys(run_of(text), bundle)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("run: x", "run: x2"),
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, outputs: [o]}"),
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, env: {B: '2'}}"),
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, timeout: 5s}"),
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, slots: 2}"),
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, requires: {gpu: true}}"),
        lambda t: t.replace("env: {A: '1'}", "env: {A: '2'}"),
        lambda t: t.replace("setup: prep", "setup: other"),
    ],
)
def test_what_a_task_does_changes_its_key_and_its_dependents_keys(
    change: Callable[[str], str],
) -> None:
    before, after = keys(), keys(change(BASE))
    assert before["a"] != after["a"]
    assert before["b"] != after["b"]  # b's input may differ


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, priority: 9}"),
        lambda t: t.replace("{name: a, run: x}", "{name: a, run: x, speculative: false}"),
    ],
)
def test_how_a_task_is_scheduled_does_not_change_its_key(change: Callable[[str], str]) -> None:
    assert keys(change(BASE)) == keys()


def test_another_bundle_changes_every_key_and_a_dependent_alone_keeps_its_dependency() -> None:
    assert keys(bundle="b2")["a"] != keys()["a"]
    changed = keys(BASE.replace("run: y", "run: y2"))
    assert changed["a"] == keys()["a"] and changed["b"] != keys()["b"]
    assert keys() == keys()  # the same file gives the same keys


def test_dependencies_come_before_the_tasks_that_need_them() -> None:
    spec = run_of(
        "tasks:\n- {name: d, run: x, after: [b, c]}\n- {name: c, run: x, after: [a]}\n"
        "- {name: b, run: x, after: [a]}\n- {name: a, run: x}\n- {name: e, run: x}\n"
    )
    order = [t.name for t in topological(spec)]
    assert sorted(order) == ["a", "b", "c", "d", "e"]
    for task in spec.tasks:
        assert all(order.index(d) < order.index(task.name) for d in task.after)
