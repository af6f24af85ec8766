"""Reductions of each kind of value, and the error that names both operands."""

from __future__ import annotations

import pytest

from shoal.scheduler.combine import ReduceError, combine


@pytest.mark.parametrize(
    ("values", "total"),
    [
        ([1, 2, 3.5], 6.5),
        (["ab", "c"], "abc"),
        ([[1], [2, 3]], [1, 2, 3]),
        ([{"a": 1, "b": 1}, {"b": 2}], {"a": 1, "b": 2}),
        ([7], 7),
    ],
)
def test_each_kind(values: list[object], total: object) -> None:
    assert combine([(f"t{i}", v) for i, v in enumerate(values)]) == total


def test_operands_are_not_changed() -> None:
    first = {"a": 1}
    combine([("x", first), ("y", {"b": 2})])
    assert first == {"a": 1}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1, "x"], "cannot add a string (task 'b') to a number (task 'a')"),
        ([[1], {"k": 1}], "cannot add an object (task 'b') to a list (task 'a')"),
        ([None, 1], "task 'a' gave no result, which cannot be added"),
        ([True, 1], "task 'a' gave a boolean"),
        ([1, None], "cannot add no result (task 'b') to a number (task 'a')"),
    ],
)
def test_mixing_kinds_names_both_operands(values: list[object], message: str) -> None:
    with pytest.raises(ReduceError) as info:
        combine(list(zip("ab", values, strict=True)))
    assert message in str(info.value)
