"""Which worker may take which task, and why none may.

A task may run on a worker when the worker has at least its ``slots``, is
the ``host`` it is pinned to (by worker name), and holds every label it
``requires`` with an equal value (as JSON values: ``true`` is not ``1``).
The claim applies this rule in SQL (:mod:`shoal.store.sql.sync`); this
module applies it in Python, to say in one phrase why no worker can take a
task (``shoal status``, ``shoal run``) and to check a backup attempt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WorkerShape", "has_labels", "label_text", "why_unplaceable"]


@dataclass(frozen=True)
class WorkerShape:
    """What of a worker decides what it may take."""

    name: str
    slots: int
    labels: Mapping[str, Any] = field(default_factory=dict)


def _same(a: Any, b: Any) -> bool:
    # JSON equality: a boolean equals only a boolean (Python has True == 1).
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def has_labels(requires: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """Whether ``labels`` hold every label ``requires`` names, with its value."""
    return all(k in labels and _same(labels[k], v) for k, v in requires.items())


def label_text(labels: Mapping[str, Any]) -> str:
    """``gpu=true, zone=eu``: labels as a message shows them."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in labels.items())


def why_unplaceable(
    slots: int, host: str | None, requires: Mapping[str, Any], workers: Sequence[WorkerShape]
) -> str | None:
    """Why none of ``workers`` can take a task, as a phrase after its name; None if one can.

    With no workers at all there is nothing to say: the task waits for one.
    """
    if not workers:
        return None
    if host is not None:
        pinned = [w for w in workers if w.name == host]
        if not pinned:
            return f"is pinned to host '{host}', no such worker"
        w = pinned[0]
        if w.slots < slots:
            return f"is pinned to host '{host}', which has {w.slots} slots; it needs {slots}"
        if not has_labels(requires, w.labels):
            missing = {k: v for k, v in requires.items() if not has_labels({k: v}, w.labels)}
            return f"is pinned to host '{host}', which lacks labels {label_text(missing)}"
        return None
    biggest = max(w.slots for w in workers)
    if slots > biggest:
        return f"needs {slots} slots, more slots than any worker has ({biggest} at most)"
    able = [w for w in workers if w.slots >= slots]
    if any(has_labels(requires, w.labels) for w in able):
        return None
    missing = {
        k: v for k, v in requires.items() if not any(has_labels({k: v}, w.labels) for w in able)
    }
    if missing:
        with_slots = f" with {slots} slots" if len(able) < len(workers) else ""
        return f"needs labels {label_text(missing)} that no worker{with_slots} has"
    return f"needs labels {label_text(requires)} that no one worker has together"
