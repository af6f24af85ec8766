"""What goes into the store and what comes out of it, as plain values.

Rows that come out hold each column as stored. A column that holds JSON
(``spec``, ``labels``, ``requires``, ``operands``, ``result``, ``outputs``,
``env``, ``partial``) comes as its text, ``<column>_json``, and a property of
the same name without the suffix gives its value. So a value is decoded
only when it is read: a claim reads a dozen candidate tasks and decodes the
commands of the few it hands out.

What goes in (:class:`NewTask`, :class:`NewAttempt`, :class:`AttemptEnd`,
:class:`TaskWin`, :class:`Event`) holds plain values; the store encodes them.
Every store (SQLite, PostgreSQL, the tests' in-memory one) makes and takes
these same types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "ACTIVE_STATES",
    "ActiveWorker",
    "AttemptEnd",
    "AttemptRef",
    "AttemptRow",
    "BossRow",
    "CachedTask",
    "DepOutputs",
    "Event",
    "EventRow",
    "ExpiredAttempt",
    "GroupCount",
    "GroupEdge",
    "LinkedTask",
    "NamedState",
    "NamedTask",
    "NewAttempt",
    "NewTask",
    "ReadyShape",
    "ReadyTask",
    "Reducer",
    "ReportedAttempt",
    "RunRow",
    "SessionRow",
    "Success",
    "SyncCall",
    "SyncDone",
    "TaskRow",
    "TaskWin",
    "WorkerRow",
    "decode",
    "encode",
]

# A task in one of these states still counts as unfinished in its run.
ACTIVE_STATES = ("waiting", "ready", "running")


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(value: Any) -> str:
    """A value as a JSON column holds it."""
    return _ENCODER.encode(value)


def decode(text: str | None, default: Any = None) -> Any:
    """A JSON column's value (``default`` for NULL or empty)."""
    return json.loads(text) if text else default


# -- what goes in ---------------------------------------------------------------


class NewTask(NamedTuple):
    """A task of a run being submitted.

    ``reuse``: an earlier success of the same definition whose result and
    outputs this task takes as its own (the store copies them as stored).
    The fields up to ``n_reducers`` are stored as they are, in this order.
    """

    name: str
    state: str
    priority: int
    slots: int
    host: str | None
    retries: int
    retry_delay: float
    speculative: bool
    grp: str
    key: str
    pending: int
    n_deps: int
    n_dependents: int
    kind: str
    n_reducers: int
    spec: Mapping[str, Any]  # commands, env, inputs, outputs, timeout
    requires: Mapping[str, Any] | None
    operands: list[str] | None
    source_run: int | None = None
    exit_code: int | None = None
    ended: float | None = None
    reuse: CachedTask | None = None


class NewAttempt(NamedTuple):
    """An attempt about to start: its task, run and number among the task's attempts."""

    task_id: int
    run_id: int
    number: int


class AttemptEnd(NamedTuple):
    """How a reported attempt ended."""

    attempt_id: int
    state: str
    cause: str | None
    exit_code: int | None
    started: float | None
    ended: float | None
    log: str | None


class TaskWin(NamedTuple):
    """A task that succeeded with the attempt that reported it first."""

    task_id: int
    ended: float
    exit_code: int | None
    has_result: bool
    result: Any
    outputs: list[str]
    worker_id: int


class Event(NamedTuple):
    """A fact for the user to read (``shoal status``, the dashboard, ``/v1/events``)."""

    time: float
    kind: str
    run_id: int | None = None
    task_id: int | None = None
    attempt_id: int | None = None
    worker_id: int | None = None
    detail: str | None = None


# -- what comes out -----------------------------------------------------------


class RunRow(NamedTuple):
    id: int
    name: str
    state: str
    created: float
    finished: float | None
    env_json: str
    setup: str | None
    bundle: str | None
    source: str | None
    final: str | None
    total: int
    unfinished: int
    submit_key: str | None

    @property
    def env(self) -> dict[str, str]:
        value: dict[str, str] = decode(self.env_json, {})
        return value


class TaskRow(NamedTuple):
    id: int
    run_id: int
    name: str
    state: str
    spec_json: str
    priority: int
    slots: int
    host: str | None
    requires_json: str | None
    retries: int
    failures: int
    pending: int
    n_deps: int
    n_dependents: int
    grp: str | None
    losses: int
    ready_at: float | None
    retry_delay: float
    speculative: bool
    key: str | None
    cached: bool
    source_run: int | None
    kind: str
    operands_json: str | None
    n_reducers: int
    partial_json: str | None
    attempts: int
    has_result: bool
    result_json: str | None
    outputs_json: str | None
    exit_code: int | None
    cause: str | None
    worker_id: int | None
    started: float | None
    ended: float | None

    @property
    def spec(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.spec_json)
        return value

    @property
    def operands(self) -> list[str]:
        value: list[str] = decode(self.operands_json, [])
        return value

    @property
    def result(self) -> Any:
        return decode(self.result_json) if self.has_result else None

    @property
    def outputs(self) -> list[str]:
        value: list[str] = decode(self.outputs_json, [])
        return value


class ReadyTask(NamedTuple):
    """A task a worker may be given: a ready one, or a straggler worth a backup."""

    id: int
    run_id: int
    name: str
    spec_json: str
    slots: int
    requires_json: str | None
    attempts: int
    n_deps: int
    operands_json: str | None
    host: str | None
    grp: str | None
    assigned: float | None  # a straggler's running attempt: when it was assigned

    @property
    def spec(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.spec_json)
        return value

    @property
    def requires(self) -> dict[str, Any]:
        value: dict[str, Any] = decode(self.requires_json, {})
        return value

    @property
    def operands(self) -> list[str]:
        value: list[str] = decode(self.operands_json, [])
        return value


class ActiveWorker(NamedTuple):
    """A connected worker, as a claim and placement judge it."""

    id: int
    name: str
    slots: int
    labels_json: str

    @property
    def labels(self) -> dict[str, Any]:
        value: dict[str, Any] = decode(self.labels_json, {})
        return value


class ReportedAttempt(NamedTuple):
    """An attempt named in a sync's reports, with what its task needs to record it."""

    id: int
    worker_id: int
    state: str
    task_id: int
    run_id: int
    task_name: str
    task_state: str
    retries: int
    failures: int
    n_dependents: int
    task_attempts: int
    retry_delay: float
    n_reducers: int


class DepOutputs(NamedTuple):
    """The outputs of one dependency of a task being handed out."""

    task_id: int  # the task being handed out
    name: str  # its dependency's name
    run_id: int  # the run whose datastore folder holds them
    outputs_json: str | None

    @property
    def outputs(self) -> list[str]:
        value: list[str] = decode(self.outputs_json, [])
        return value


class CachedTask(NamedTuple):
    """The latest success of a task definition (by its key), for resuming."""

    key: str
    run_id: int
    source_run: int | None
    has_result: bool
    result_json: str | None
    outputs_json: str | None
    exit_code: int | None


class Reducer(NamedTuple):
    id: int
    run_id: int
    operands_json: str | None

    @property
    def operands(self) -> list[str]:
        value: list[str] = decode(self.operands_json, [])
        return value


class ExpiredAttempt(NamedTuple):
    """A running attempt whose lease ran out, with its task and worker."""

    id: int
    task_id: int
    run_id: int
    worker_id: int
    task_state: str
    task_name: str
    worker_name: str | None
    last_sync: float | None


class ReadyShape(NamedTuple):
    """Ready tasks of one run with the same needs, and how many."""

    slots: int
    host: str | None
    requires_json: str | None
    n: int

    @property
    def requires(self) -> dict[str, Any]:
        value: dict[str, Any] = decode(self.requires_json, {})
        return value


class NamedTask(NamedTuple):
    id: int
    name: str


class AttemptRow(NamedTuple):
    id: int
    task_id: int
    run_id: int
    number: int
    worker_id: int
    state: str
    exit_code: int | None
    cause: str | None
    assigned: float
    started: float | None
    ended: float | None
    lease_expires: float | None
    log: str | None
    worker_name: str | None


class AttemptRef(NamedTuple):
    """An attempt's run, task name, and its own and its task's states."""

    id: int
    run_id: int
    state: str
    task_name: str
    task_state: str
    worker_id: int = 0  # the worker it was handed to


class WorkerRow(NamedTuple):
    id: int
    name: str
    host: str
    slots: int
    labels_json: str
    state: str
    registered: float
    last_sync: float
    pid: int | None
    python: str | None
    version: str | None
    done: int
    failed: int
    boss: int | None
    running: int  # its attempts running now
    last_ended: float | None = None  # when its last attempt ended (None: none has)

    @property
    def labels(self) -> dict[str, Any]:
        value: dict[str, Any] = decode(self.labels_json, {})
        return value


class BossRow(NamedTuple):
    id: int
    url: str
    host: str
    pid: int
    state: str
    started: float
    last_seen: float
    housekeeper: bool


class EventRow(NamedTuple):
    """An event as read back, with the names of what it is about (None where it is about none)."""

    id: int
    time: float
    kind: str
    run_id: int | None
    task_id: int | None
    attempt_id: int | None
    worker_id: int | None
    detail: str | None
    task_name: str | None = None
    attempt_number: int | None = None
    worker_name: str | None = None


class SessionRow(NamedTuple):
    id: str
    csrf: str
    created: float
    expires: float
    kind: str | None  # None: logged in with the boss's token; 'read:ID': a read token's


class GroupCount(NamedTuple):
    """How many tasks of a run's matrix group are in one state."""

    grp: str
    state: str
    n: int
    first: int  # the group's first task id: groups show in file order


class LinkedTask(NamedTuple):
    """A task's dependency: its name, state, and where its outputs are."""

    name: str
    state: str
    run_id: int  # the run whose datastore folder holds its outputs
    outputs_json: str | None

    @property
    def outputs(self) -> list[str]:
        value: list[str] = decode(self.outputs_json, [])
        return value


class NamedState(NamedTuple):
    name: str
    state: str


class GroupEdge(NamedTuple):
    source: str
    target: str


class Success(NamedTuple):
    """A report of success with no outputs to promote, as a sync in one statement takes it."""

    attempt_id: int
    exit_code: int | None
    started: float | None
    ended: float | None
    logged: bool  # its log is in the datastore
    result: Any  # None: it gave none


class SyncCall(NamedTuple):
    """A worker's sync whose reports are all :class:`Success` (or none), for one statement."""

    worker_id: int
    boss: int | None
    now: float
    lease_expires: float
    successes: list[Success]
    running: list[int]
    free_slots: int
    max_seconds: float | None
    origin: str  # this boss's wake-up notices
    logs: str  # the datastore folder of logs (``log_path``'s)


class SyncDone(NamedTuple):
    """What a sync in one statement did (it is committed)."""

    worker: ActiveWorker | None  # None: no such active worker, and nothing was written
    cancel: list[int]
    started: list[tuple[int, ReadyTask]]  # each new attempt's id, and its task
    dep_outputs: list[DepOutputs]  # of the started tasks' dependencies
    idle: bool  # no ready task for the worker: a straggler's backup may be
    made_ready: bool
    ended_runs: list[int]
