"""A worker whose time runs out (a Slurm job's walltime) takes only tasks that end before it does.

The agent says in its sync the most seconds a new task may take
(``max_seconds``); the claim leaves a task whose ``timeout`` is longer to
other workers. On SQLite and PostgreSQL alike, on the in-memory store of the
unit tests, and on a database made by the shoal before the column existed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shoal import protocol as p
from shoal.scheduler import Scheduler
from shoal.store import Store
from tests.scheduling import Clock, on_memory, run_of, states, worker

TASKS = """
tasks:
  - {name: long, run: x, timeout: 2h, priority: 9}
  - {name: short, run: x, timeout: 30s, priority: 5}
  - {name: exact, run: x, timeout: 60s, priority: 3}
  - {name: untimed, run: x}
"""


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    store = Store(db_url)
    yield Scheduler(store, clock=Clock())
    store.close()


def _take(s: Scheduler, w: int, free: int, max_seconds: float | None) -> list[str]:
    req = p.SyncRequest(worker_id=w, free_slots=free, max_seconds=max_seconds)
    return [a.task for a in s.sync(req).response.assignments]


def _claims_by_time(s: Scheduler) -> None:
    rid = s.submit(run_of(TASKS))
    ending = worker(s, "slurm-job", slots=4)
    # The long task comes first in claim order, and is passed over: others remain.
    assert _take(s, ending, 4, 60.0) == ["short", "exact", "untimed"]
    assert states(s, rid)["long"] == "ready"
    assert _take(s, ending, 1, 60.0) == []  # nothing it can finish in time
    plain = worker(s, "plain")
    assert _take(s, plain, 1, None) == ["long"]  # a worker with time takes it


def test_a_worker_with_little_time_left_takes_only_tasks_that_end_in_time(
    sched: Scheduler,
) -> None:
    _claims_by_time(sched)


def test_the_in_memory_store_claims_by_time_as_the_databases_do() -> None:
    _claims_by_time(on_memory())


def test_a_backup_is_not_given_to_a_worker_without_the_time_for_it(sched: Scheduler) -> None:
    sched.speculate_min = 10.0
    sched.speculate_factor = 1.5
    sched.submit(run_of("tasks:\n- {name: 'q{i}', matrix: {i: [1, 2, 3]}, run: x, timeout: 5m}\n"))
    first = worker(sched, "first", slots=3)
    got = sched.sync(p.SyncRequest(worker_id=first, free_slots=3)).response.assignments
    assert len(got) == 3
    clock = sched.clock
    assert isinstance(clock, Clock)
    done = [
        p.Report(
            attempt_id=a.attempt_id, outcome=p.SUCCEEDED, started=clock.now, ended=clock.now + 1
        )
        for a in got[:2]
    ]
    clock.now += 1
    sched.sync(p.SyncRequest(worker_id=first, finished=done, running=[got[2].attempt_id]))
    clock.now += 100  # the last one straggles: a backup is due
    ending = worker(sched, "ending")
    assert _take(sched, ending, 1, 60.0) == []  # 5 minutes do not fit in its minute
    spare = worker(sched, "spare")
    assert _take(sched, spare, 1, 600.0) == [got[2].task]


def test_a_database_made_before_the_timeout_column_claims_by_time_once_migrated(
    db_url: str,
) -> None:
    from sqlalchemy import insert

    from shoal.store import schema

    old = Store.__new__(Store)
    old.url, old.is_sqlite, old.is_postgres = (
        db_url,
        db_url.startswith("sqlite"),
        "postgres" in db_url,
    )
    engine = Store._make_engine(old)
    v4 = schema.metadata_at(4)
    assert "timeout" not in v4.tables["tasks"].c
    with engine.begin() as conn:
        v4.create_all(conn)
        conn.execute(insert(v4.tables["meta"]).values(key="schema_version", value="4"))
        conn.execute(
            insert(v4.tables["runs"]).values(
                id=1, name="old", state="running", created=1, env="{}", total=2, unfinished=2
            )
        )
        for i, (name, timeout) in enumerate((("long", 7200.0), ("short", 30.0))):
            spec = {
                "run": ["x"],
                "download": [],
                "upload": [],
                "cleanup": [],
                "env": {},
                "timeout": timeout,
                "inputs": [],
                "outputs": [],
            }
            conn.execute(
                insert(v4.tables["tasks"]).values(
                    id=i + 1,
                    run_id=1,
                    name=name,
                    state="ready",
                    spec=json.dumps(spec),
                    priority=9 - i,
                )
            )
    engine.dispose()

    store = Store(db_url)
    try:
        s = Scheduler(store, clock=Clock())
        w = worker(s, "slurm-job", slots=2)
        assert _take(s, w, 2, 60.0) == ["short"]
    finally:
        store.close()
