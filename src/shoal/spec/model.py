"""The task model: a run and its tasks after expansion, as plain frozen data.

:class:`RunSpec` and :class:`TaskSpec` are what a task file, a flow or the
Python API becomes once it has been checked; the client sends a run as
:meth:`RunSpec.to_dict` and the boss rebuilds it with
:func:`shoal.spec.spec_from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULTABLE", "RUN_FIELDS", "TASK_FIELDS", "RunSpec", "TaskSpec"]

TASK_FIELDS = (
    "name",
    "run",
    "download",
    "upload",
    "cleanup",
    "inputs",
    "outputs",
    "after",
    "matrix",
    "env",
    "timeout",
    "retries",
    "slots",
    "priority",
    "host",
    "requires",
    "retry_delay",
    "speculative",
    "reduce",
)
RUN_FIELDS = ("name", "bundle", "setup", "env", "defaults", "tasks", "flow")
DEFAULTABLE = tuple(f for f in TASK_FIELDS if f not in ("name", "matrix"))


@dataclass(frozen=True)
class TaskSpec:
    """One task after matrix expansion, ready to be stored."""

    name: str
    run: tuple[str, ...]
    download: tuple[str, ...] = ()
    upload: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0
    slots: int = 1
    priority: int = 0
    host: str | None = None
    requires: Mapping[str, Any] = field(default_factory=dict)
    retry_delay: float = 2.0
    speculative: bool = True
    group: str = ""
    reduce: tuple[str, ...] = ()  # operands: the boss combines their results
    values: Mapping[str, Any] = field(default_factory=dict)  # the matrix values it was made with
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task as plain JSON-ready data: every field."""
        return {
            "name": self.name,
            "run": list(self.run),
            "download": list(self.download),
            "upload": list(self.upload),
            "cleanup": list(self.cleanup),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "after": list(self.after),
            "env": dict(self.env),
            "timeout": self.timeout,
            "retries": self.retries,
            "slots": self.slots,
            "priority": self.priority,
            "host": self.host,
            "requires": dict(self.requires),
            "retry_delay": self.retry_delay,
            "speculative": self.speculative,
            "group": self.group,
            "reduce": list(self.reduce),
            "values": dict(self.values),
        }

    def sparse_dict(self) -> dict[str, Any]:
        """Only the fields that differ from their defaults (the form ``shoal submit`` sends).

        A 100,000-task run is a fifth of the size this way, and the boss
        reads it back the faster.
        """
        out: dict[str, Any] = {}
        for k, v in self.to_dict().items():
            if k in ("name", "run"):
                out[k] = v
            elif k == "group":
                if v != self.name:
                    out[k] = v
            elif v != _DEFAULTS[k]:
                out[k] = v
        return out


_DEFAULTS = {
    k: v
    for k, v in TaskSpec(name="", run=()).to_dict().items()
    if k not in ("name", "run", "group")
}


@dataclass(frozen=True)
class RunSpec:
    """A whole run: its tasks in file order and what they share."""

    name: str
    tasks: tuple[TaskSpec, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    bundle: Path | None = None
    setup: str | None = None
    source: str | None = None
    final: str | None = None  # the task whose result is the run's result

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the boss; the bundle travels separately, by hash."""
        return {
            "name": self.name,
            "env": dict(self.env),
            "setup": self.setup,
            "final": self.final,
            "tasks": [t.sparse_dict() for t in self.tasks],
        }
