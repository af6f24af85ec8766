"""gc's questions to the database, and what it records there, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.datastore.gc import RunFacts
from shoal.scheduler import Scheduler
from shoal.store import Store
from shoal.store.gc import gc_facts
from tests.scheduling import report, run_of, take, worker

PIPE = "tasks:\n- {name: a, run: x, outputs: [o]}\n- {name: b, run: y, after: [a], outputs: [p]}\n"


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    store = Store(db_url)
    yield Scheduler(store)
    store.close()


def test_facts_name_live_runs_reused_outputs_and_what_waiting_tasks_read(
    sched: Scheduler,
) -> None:
    assert isinstance(sched.store, Store)
    first = sched.submit(run_of(PIPE))
    w = worker(sched, slots=2)
    (a,) = take(sched, w)
    report(sched, w, a, outputs=["o"])
    (b,) = take(sched, w)
    report(sched, w, b, outputs=["p"])
    # Again with a new task in b's way: a is reused from the first run, b waits for c.
    again = PIPE.replace("after: [a]", "after: [a, c]") + "- {name: c, run: z}\n"
    second = sched.submit(run_of(again), reuse=True)
    (c,) = take(sched, w)

    facts = gc_facts(sched.store)
    assert facts.runs[first] == RunFacts(first, "succeeded", facts.runs[first].finished, None)
    assert facts.runs[first].finished is not None
    assert facts.runs[second].state == "running" and facts.runs[second].finished is None
    assert facts.needed == {(first, "a"), (second, "c")}  # b waits: it reads a's (in run 1) and c's
    assert facts.borrowed == {(first, "a", second)}
    assert facts.running_attempts == {c.attempt_id}


def test_tasks_whose_outputs_gc_removed_are_not_reused(sched: Scheduler) -> None:
    first = sched.submit(run_of(PIPE))
    w = worker(sched, slots=2)
    (a,) = take(sched, w)
    report(sched, w, a, outputs=["o"])
    (b,) = take(sched, w)
    report(sched, w, b, outputs=["p"])

    sched.outputs_removed([(first, "b")])
    partly = sched.submit(run_of(PIPE), reuse=True)
    view = {t["name"]: t["cached"] for t in sched.tasks_view(partly)}
    assert view == {"a": True, "b": False}

    sched.outputs_removed([(first, None)])
    whole = sched.submit(run_of(PIPE), reuse=True)
    assert not any(t["cached"] for t in sched.tasks_view(whole))
    kinds = [e["kind"] for e in sched.events_view(first)]
    assert kinds.count("outputs_removed") == 2
