"""Wire messages shared by the boss and the worker agent.

Standard library only, and Python >= 3.8: the agent imports this module on
hosts where nothing but ``python3`` is installed.

A worker talks to the boss in two kinds of request:

* ``POST /v1/workers`` with a :class:`Registration`, answered by a
  :class:`Registered`;
* ``POST /v1/sync`` with a :class:`SyncRequest`: what finished since the last
  sync, what still runs, and how much new work it wants; answered by a
  :class:`SyncResponse`: new attempts to run and attempts to stop.

Files move through ``GET``/``PUT /v1/data/<path>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

PROTOCOL_VERSION = 1
API_PREFIX = "/v1"

# Logs up to this size travel inside the sync request; larger ones are
# uploaded to the datastore first, so a sync stays small.
INLINE_LOG_LIMIT = 64 * 1024

# Attempt outcomes a worker may report.
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"


def log_path(run_id: int, task: str, attempt_id: int) -> str:
    """Where an attempt's log lives in the datastore."""
    return f"logs/{run_id}/{task}/{attempt_id}.log"


def output_prefix(run_id: int, task: str) -> str:
    """The datastore folder that holds a task's uploaded outputs."""
    return f"runs/{run_id}/{task}/"


def bundle_path(digest: str) -> str:
    """Where a bundle archive lives in the datastore."""
    return f"bundles/{digest}.tar.gz"


def _build(cls: Any, data: Dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


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
        made: Assignment = _build(cls, data)
        made.fetch = [Fetch(**f) if isinstance(f, dict) else f for f in made.fetch]
        return made


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

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self.__dict__)
        data["finished"] = [r.to_dict() for r in self.finished]
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SyncRequest:
        made: SyncRequest = _build(cls, data)
        made.finished = [Report.from_dict(r) for r in made.finished]  # type: ignore[arg-type]
        return made


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
        made: SyncResponse = _build(cls, data)
        made.assignments = [Assignment.from_dict(a) for a in made.assignments]  # type: ignore[arg-type]
        return made
