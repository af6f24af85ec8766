"""Wire messages shared by the boss and the worker agent.

Standard library only: the agent imports this module on hosts where nothing
but ``python3`` is installed. Claimed (and tested in CI) on Python 3.11 and
newer; the agent's modules keep to Python 3.8's syntax and typing all the same
(``tests/unit/test_agent_stdlib.py``).

A worker talks to the boss in two kinds of request:

* ``POST /v1/workers`` with a :class:`Registration`, answered by a
  :class:`Registered`;
* ``POST /v1/sync`` with a :class:`SyncRequest`: what finished since the last
  sync, what still runs, and how much new work it wants; answered by a
  :class:`SyncResponse`: new attempts to run and attempts to stop.

Files move through ``GET /v1/data/<path>``; an attempt sends its outputs
with ``PUT /v1/attempts/<id>/outputs/<file>`` (kept aside until the attempt's
report wins its task) and its log with ``PUT /v1/attempts/<id>/log``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union, get_type_hints

# Where logs, outputs and bundles live in the datastore is shoal.datastore.layout;
# named here too for the code that reads them beside the wire messages.
from shoal.datastore.layout import STAGING as STAGING
from shoal.datastore.layout import bundle_path as bundle_path
from shoal.datastore.layout import log_path as log_path
from shoal.datastore.layout import output_prefix as output_prefix
from shoal.datastore.layout import staging_prefix as staging_prefix
from shoal.exceptions import BadInput

PROTOCOL_VERSION = 1
API_PREFIX = "/v1"

# Logs up to this size travel inside the sync request; larger ones are
# uploaded to the datastore first, so a sync stays small.
INLINE_LOG_LIMIT = 64 * 1024

# How an agent ends. A launcher reads these to tell a worker that stopped on
# purpose (starting it again as it was will not help) from one that was lost.
EXIT_OK = 0
# Refused: bad options, or the boss said no (its token, say).
EXIT_REFUSED = 2
# Its host could not set up a bundle: it takes no more tasks.
EXIT_SETUP_FAILED = 3
ON_PURPOSE = frozenset({EXIT_REFUSED, EXIT_SETUP_FAILED})
# How the last line of an agent that takes no more tasks ends.
TAKES_NO_MORE = "; this host takes no more tasks"
# How the cause of an attempt (and the goodbye of its worker) whose bundle setup failed begins.
SETUP_FAILED = "bundle setup failed"

# Attempt outcomes a worker may report.
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"

# The states of a task, in the order of its life (``shoal tasks --only``,
# ``GET /v1/runs/<run>/tasks?state=``).
TASK_STATES = ("waiting", "ready", "running", "succeeded", "failed", "cancelled", "upstream_failed")


class BadMessage(BadInput):
    """A message whose fields are missing or of the wrong type (the boss answers 400)."""


# Whole numbers travel as signed 64-bit integers (what both databases hold).
_INT_RANGE = 2**63


def _checker(tp: Any, where: str) -> Callable[[Any], Any]:
    """A function that returns a field's value if it has type ``tp``, else raises BadMessage."""
    origin = getattr(tp, "__origin__", None)
    args: Any = getattr(tp, "__args__", ())
    if tp is Any:
        return lambda v: v
    if origin is Union:  # Optional[X]
        inner = _checker(next(a for a in args if a is not type(None)), where)
        return lambda v: None if v is None else inner(v)
    if origin in (list, List):
        item = _checker(args[0], where + "[]")

        def check_list(v: Any) -> Any:
            if not isinstance(v, list):
                raise BadMessage(f"'{where}' must be a list")
            return [item(x) for x in v]

        return check_list
    if origin in (dict, Dict):
        value = _checker(args[1], where + "{}")

        def check_dict(v: Any) -> Any:
            if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
                raise BadMessage(f"'{where}' must be an object")
            return {k: value(x) for k, x in v.items()}

        return check_dict
    if tp is bool:

        def check_bool(v: Any) -> Any:
            if not isinstance(v, bool):
                raise BadMessage(f"'{where}' must be true or false")
            return v

        return check_bool
    if tp is int:

        def check_int(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int) or not -_INT_RANGE < v < _INT_RANGE:
                raise BadMessage(f"'{where}' must be a whole number below 2^63")
            return v

        return check_int
    if tp is float:

        def check_float(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise BadMessage(f"'{where}' must be a finite number")
            return float(v)

        return check_float
    if tp is str:

        def check_str(v: Any) -> Any:
            if not isinstance(v, str):
                raise BadMessage(f"'{where}' must be a string")
            return v

        return check_str
    if dataclasses.is_dataclass(tp):
        return lambda v: _build(tp, v, where + ".")
    raise TypeError(f"no check for {tp!r}")  # pragma: no cover - a field of a new type


_checks: Dict[Any, List[Any]] = {}


def _build(cls: Any, data: Any, where: str = "") -> Any:
    """A message of class ``cls`` from its dict, every field's type checked."""
    checks = _checks.get(cls)
    if checks is None:
        hints = get_type_hints(cls)
        checks = _checks[cls] = [
            (
                f.name,
                _checker(hints[f.name], where + f.name),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        ]
    if not isinstance(data, dict):
        raise BadMessage(f"'{where.rstrip('.') or cls.__name__}' must be an object")
    values = {}
    for name, check, required in checks:
        if name in data:
            values[name] = check(data[name])
        elif required:
            raise BadMessage(f"'{where}{name}' is missing")
    return cls(**values)


@dataclass
class Registration:
    """A worker introducing itself to the boss."""

    name: str
    host: str
    slots: int
    labels: Dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    python: str = ""
    version: str = ""
    protocol: int = PROTOCOL_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Registration:
        return _build(cls, data)  # type: ignore[no-any-return]


@dataclass
class Registered:
    """The boss's answer to a registration."""

    worker_id: int
    lease_seconds: float
    heartbeat_seconds: float
    # The token this worker uses from now on, bound to it. None from an older
    # boss: the worker goes on with the credential it registered with.
    token: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Registered:
        return _build(cls, data)  # type: ignore[no-any-return]


@dataclass
class Fetch:
    """One datastore file to place in the workspace before the task runs."""

    path: str
    dest: str


@dataclass
class Assignment:
    """One attempt of one task, handed to a worker."""

    attempt_id: int
    run_id: int
    run: str
    task: str
    number: int
    slots: int = 1
    run_cmds: List[str] = field(default_factory=list)
    download: List[str] = field(default_factory=list)
    upload: List[str] = field(default_factory=list)
    cleanup: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    timeout: Optional[float] = None
    outputs: List[str] = field(default_factory=list)
    fetch: List[Fetch] = field(default_factory=list)
    bundle: Optional[str] = None
    setup: Optional[str] = None
    stdin: Optional[str] = None  # text for the run commands' standard input

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self.__dict__)
        data["fetch"] = [dict(f.__dict__) for f in self.fetch]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Assignment:
        return _build(cls, data)  # type: ignore[no-any-return]


@dataclass
class Report:
    """How an attempt ended, as its worker saw it."""

    attempt_id: int
    outcome: str
    run_id: int = 0
    task: str = ""
    exit_code: Optional[int] = None
    cause: Optional[str] = None
    result: Any = None
    started: float = 0.0
    ended: float = 0.0
    outputs: List[str] = field(default_factory=list)
    log: Optional[str] = None
    log_uploaded: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Report:
        return _build(cls, data)  # type: ignore[no-any-return]


@dataclass
class SyncRequest:
    """A worker's one round trip: finished attempts, running ones, free room."""

    worker_id: int
    finished: List[Report] = field(default_factory=list)
    running: List[int] = field(default_factory=list)
    # Slots the worker can take on now, counting the few it keeps queued
    # ahead when tasks are short (so a no-op task never waits a round trip).
    free_slots: int = 0
    # Seconds the boss may hold the request open when it has nothing to give.
    wait: float = 0.0
    # The longest a new task may take: a worker whose time runs out (a Slurm
    # job's walltime) takes no task whose timeout would outlast it. None: any.
    max_seconds: Optional[float] = None
    # How busy the worker's machine is, sent every few seconds (the dashboard
    # shows it): "cpu" (percent busy over all cores), "load" (1-minute load
    # average), "cores", "memory_used" and "memory_total" (bytes). Any may be
    # missing; an older agent sends none.
    usage: Optional[Dict[str, float]] = None

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self.__dict__)
        data["finished"] = [r.to_dict() for r in self.finished]
        if self.usage is None:
            del data["usage"]  # what an older boss expects
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SyncRequest:
        return _build(cls, data)  # type: ignore[no-any-return]


@dataclass
class SyncResponse:
    """The boss's answer: attempts to start and attempts to stop."""

    assignments: List[Assignment] = field(default_factory=list)
    cancel: List[int] = field(default_factory=list)
    stop: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {
            "assignments": [a.to_dict() for a in self.assignments],
            "cancel": list(self.cancel),
            "stop": self.stop,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SyncResponse:
        return _build(cls, data)  # type: ignore[no-any-return]
