"""Definition keys: what makes a task the same task again, for resuming runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shoal.spec.model import RunSpec

__all__ = ["definition_keys", "topological"]


def definition_keys(spec: RunSpec, bundle: str | None) -> dict[str, str]:
    """A hash of each task's definition, its run's env, setup and bundle, and its dependencies' keys."""
    by_name = {t.name: t for t in spec.tasks}
    shared = json.dumps([dict(spec.env), spec.setup, bundle], sort_keys=True)
    keys: dict[str, str] = {}
    for t in topological(spec):
        # What the task does, not how it is scheduled (group, priority and
        # speculation change nothing about its result).
        definition = [
            t.name,
            t.run,
            t.download,
            t.upload,
            t.cleanup,
            t.inputs,
            t.outputs,
            sorted(t.env.items()),
            t.timeout,
            t.retries,
            t.slots,
            t.host,
            sorted(t.requires.items()),
            t.retry_delay,
            t.reduce,
            shared,
            [keys[d] for d in t.after],
        ]
        text = json.dumps(definition, separators=(",", ":"))
        keys[t.name] = hashlib.sha256(text.encode()).hexdigest()[:32]
    assert len(keys) == len(by_name)
    return keys


def topological(spec: RunSpec) -> list[Any]:
    """The tasks with every task after its dependencies (the spec has no cycles)."""
    by_name = {t.name: t for t in spec.tasks}
    done: set[str] = set()
    order = []
    for root in spec.tasks:
        stack = [(root, False)]
        while stack:
            task, expanded = stack.pop()
            if task.name in done:
                continue
            if expanded or not task.after:
                done.add(task.name)
                order.append(task)
                continue
            stack.append((task, True))
            stack.extend((by_name[d], False) for d in task.after if d not in done)
    return order
