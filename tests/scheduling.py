"""Helpers for tests that drive a scheduler as workers would: register, take, report.

Shared by the store contract suite (SQLite, PostgreSQL) and the unit tests
of the scheduler's decisions (the in-memory store).
"""

from __future__ import annotations

from typing import Any

from shoal import protocol as p
from shoal import spec
from shoal.scheduler import Scheduler, SyncOutcome
from tests.memstore import MemoryStore


class Clock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MidRng:
    """Jitter at its middle value, so back-off delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def on_memory(**settings: Any) -> Scheduler:
    """A scheduler over a new in-memory store, on a :class:`Clock` of its own."""
    settings.setdefault("clock", Clock())
    return Scheduler(MemoryStore(), **settings)


def clock(s: Scheduler) -> Clock:
    assert isinstance(s.clock, Clock)
    return s.clock


def memory(s: Scheduler) -> MemoryStore:
    assert isinstance(s.store, MemoryStore)
    return s.store


def run_of(text: str) -> spec.RunSpec:
    return spec.parse_text(text, path="t.yaml")


def worker(s: Scheduler, name: str = "w", slots: int = 1, **labels: Any) -> int:
    return s.register(p.Registration(name=name, host="h", slots=slots, labels=labels)).worker_id


def take(
    s: Scheduler, w: int, free: int = 1, running: list[int] | None = None
) -> list[p.Assignment]:
    return s.sync(
        p.SyncRequest(worker_id=w, free_slots=free, running=running or [])
    ).response.assignments


def report(
    s: Scheduler,
    w: int,
    a: p.Assignment,
    code: int = 0,
    result: Any = None,
    free: int = 0,
    **kw: Any,
) -> SyncOutcome:
    outcome = p.SUCCEEDED if code == 0 else p.FAILED
    r = p.Report(
        attempt_id=a.attempt_id,
        outcome=outcome,
        exit_code=code,
        result=result,
        run_id=a.run_id,
        task=a.task,
        **kw,
    )
    return s.sync(p.SyncRequest(worker_id=w, finished=[r], free_slots=free))


def states(s: Scheduler, run_id: int) -> dict[str, str]:
    return {t["name"]: t["state"] for t in s.tasks_view(run_id)}


def kinds(s: Scheduler, run_id: int | None = None) -> list[str]:
    """The kinds of the events recorded (of one run), in order."""
    return [e["kind"] for e in s.events_view(run_id)]


GROUP = "tasks:\n- name: t-{i}\n  matrix: {i: [1, 2, 3, 4]}\n  run: x\n"


def straggling(
    s: Scheduler, text: str = GROUP, **labels: object
) -> tuple[int, int, int, p.Assignment]:
    """A run whose first task runs on 'slow' while 'fast' did the others in 2 s each."""
    rid = s.submit(run_of(text))
    slow = worker(s, "slow", **labels)
    fast = worker(s, "fast", slots=3, **labels)
    (straggler,) = take(s, slow)
    for a in take(s, fast, free=3):
        report(s, fast, a, started=0.0, ended=2.0)
    return rid, slow, fast, straggler
