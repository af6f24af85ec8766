"""Reductions: ``a + b + c`` over task results.

Numbers add, strings and lists concatenate, objects merge (a later operand's
keys win). Mixing kinds is an error that names both operands. Pure: the boss
calls it as operands' results arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoal.exceptions import ShoalError

__all__ = ["ReduceError", "combine", "kind_of"]


class ReduceError(ShoalError):
    """The operands cannot be added together."""


def kind_of(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "a boolean" if isinstance(value, bool) else "no result"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_ADDABLE = {"a number", "a string", "a list", "an object"}


def combine(operands: Sequence[tuple[str, Any]]) -> Any:
    """The sum of ``(task name, result)`` pairs, in order."""
    if not operands:
        raise ReduceError("nothing to add")
    first_name, total = operands[0]
    kind = kind_of(total)
    if kind not in _ADDABLE:
        raise ReduceError(f"task '{first_name}' gave {kind}, which cannot be added")
    if isinstance(total, dict):
        total = dict(total)
    elif isinstance(total, list):
        total = list(total)
    for name, value in operands[1:]:
        other = kind_of(value)
        if other != kind:
            raise ReduceError(f"cannot add {other} (task '{name}') to {kind} (task '{first_name}')")
        if isinstance(total, dict):
            total.update(value)
        else:
            total = total + value
    return total
