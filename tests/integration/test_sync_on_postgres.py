"""A worker's sync on PostgreSQL: few round trips, and no queue on the run's row.

Each statement sent alone is a network round trip to the database, and a
row every sync writes is a queue: these tests count the round trips of a
sync through a loopback proxy, and hold one sync's transaction open while
another sync of the same run goes through.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from shoal import protocol as p
from shoal.scheduler import Scheduler, runs
from shoal.store import Store
from tests.scheduling import Clock, MidRng, run_of, take, worker


class RoundTrips:
    """A loopback proxy to PostgreSQL that counts round trips.

    The client waits for the server after each message that asks for the
    answers so far: a Sync (the end of each statement, or of a batch), a
    Flush, or a simple Query. Those are counted.
    """

    WAITS = (b"S", b"H", b"Q")

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.count = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for src, dst, count in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, count), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        pending = b""
        started = False  # the client's first messages (SSL request, startup) have no type byte
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if count:
                    pending += data
                    while True:
                        head = 4 if not started else 5
                        if len(pending) < head:
                            break
                        size = int.from_bytes(pending[head - 4 : head], "big") + head - 4
                        if len(pending) < size:
                            break
                        if not started:
                            # The startup message carries protocol 3.0; an SSL request does not.
                            started = pending[4:8] == (196608).to_bytes(4, "big")
                        elif pending[:1] in self.WAITS:
                            with self._lock:
                                self.count += 1
                        pending = pending[size:]
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, RoundTrips]]:
    """A PostgreSQL database, and its URL through a proxy that counts round trips."""
    parts = urlsplit(pg_url)
    proxy = RoundTrips((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        proxy.close()


def succeeded(held: list[p.Assignment]) -> list[p.Report]:
    return [
        p.Report(
            attempt_id=a.attempt_id, outcome=p.SUCCEEDED, exit_code=0, run_id=a.run_id, task=a.task
        )
        for a in held
    ]


def test_a_sync_that_reports_and_takes_four_tasks_is_a_few_round_trips(
    proxied: tuple[str, RoundTrips],
) -> None:
    url, trips = proxied
    store = Store(url)
    boss = Scheduler(store)
    boss.submit(
        run_of(f"tasks:\n- {{name: 't-{{i}}', run: x, matrix: {{i: {list(range(200))}}}}}\n")
    )
    w = worker(boss, "w1", slots=4)
    held = take(boss, w, free=4)
    assert len(held) == 4
    before = trips.count
    answer = boss.sync(p.SyncRequest(worker_id=w, finished=succeeded(held), free_slots=4))
    # Each statement sent alone was a round trip: some twenty for this sync.
    # Sent together, it waits only for the answers it needs (its reports'
    # attempts, the worker, the claim, the new attempts, the run's count)
    # and the commit, and the pool's check of its connection.
    assert trips.count - before <= 8
    assert len(answer.response.assignments) == 4
    assert boss.run_view(held[0].run_id)["unfinished"] == 196
    store.close()


def test_syncs_finishing_tasks_of_one_run_through_two_bosses_do_not_queue(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one sync's transaction is still open, another sync of the run commits.

    Statement by statement (a sync's reports that are not all plain
    successes go so); for one statement, see the test after this one.
    """
    monkeypatch.setenv("SHOAL_PG_SYNC", "statements")
    stores = [Store(pg_url), Store(pg_url)]
    first, second = (Scheduler(st) for st in stores)
    rid = first.submit(
        run_of(f"tasks:\n- {{name: 't-{{i}}', run: x, matrix: {{i: {list(range(640))}}}}}\n")
    )
    w1, w2 = worker(first, "w1", slots=2), worker(second, "w2", slots=2)
    held1, held2 = take(first, w1, free=2), take(second, w2, free=2)

    counted, release = threading.Event(), threading.Event()
    count_done = runs.count_done

    def hold_open(*args: Any, **kwargs: Any) -> None:
        count_done(*args, **kwargs)
        if threading.current_thread().name == "first":
            counted.set()  # the first sync has counted its tasks done, and waits
            release.wait(120)

    monkeypatch.setattr(runs, "count_done", hold_open)
    results: dict[str, Any] = {}

    def sync(name: str, boss: Scheduler, w: int, held: list[p.Assignment]) -> None:
        try:
            request = p.SyncRequest(worker_id=w, finished=succeeded(held), free_slots=0)
            results[name] = boss.sync(request)
        except BaseException as e:
            results[name] = e

    one = threading.Thread(target=sync, args=("first", first, w1, held1), name="first")
    one.start()
    try:
        assert counted.wait(60)
        two = threading.Thread(target=sync, args=("second", second, w2, held2), name="second")
        two.start()
        two.join(60)
        # With the count in one row of the run, the second waited for the first's commit.
        assert not two.is_alive(), "the second sync waited for the first one's transaction"
    finally:
        release.set()
        one.join(60)
    assert not isinstance(results.get("first"), BaseException), results
    assert not isinstance(results.get("second"), BaseException), results
    assert first.run_view(rid)["unfinished"] == 636
    for st in stores:
        st.close()


def test_a_running_run_keeps_its_count_of_unfinished_tasks_across_the_upgrade(db_url: str) -> None:
    """A database from before the count was in parts: its runs end when their tasks do."""
    from sqlalchemy import insert

    from shoal.store import schema

    old = Store.__new__(Store)
    old.url, old.is_sqlite, old.is_postgres = (
        db_url,
        db_url.startswith("sqlite"),
        "postgres" in db_url,
    )
    engine = Store._make_engine(old)
    before = schema.metadata_at(6)
    with engine.begin() as conn:
        before.create_all(conn)
        conn.execute(insert(before.tables["meta"]).values(key="schema_version", value="6"))
        for total, unfinished in ((1000, 70), (5, 2)):
            conn.execute(
                insert(before.tables["runs"]).values(
                    name="r",
                    state="running",
                    created=1,
                    env="{}",
                    total=total,
                    unfinished=unfinished,
                )
            )
    engine.dispose()

    store = Store(db_url)
    boss = Scheduler(store)
    assert [boss.run_view(r)["unfinished"] for r in (1, 2)] == [70, 2]
    with store.transaction() as tx:
        assert tx.count_unfinished(1, -69) > 0
        assert tx.count_unfinished(2, -1) > 0
    with store.transaction() as tx:
        assert (tx.count_unfinished(1, -1), tx.count_unfinished(2, -1)) == (0, 0)
    store.close()


# -- a sync in one statement (the server-side function shoal_sync) ------------


def test_a_sync_of_plain_successes_is_one_round_trip(
    proxied: tuple[str, RoundTrips], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports that all succeeded, and a claim: one call to the server, which commits it."""
    monkeypatch.delenv("SHOAL_PG_SYNC", raising=False)
    url, trips = proxied
    store = Store(url)
    boss = Scheduler(store)
    boss.submit(
        run_of(f"tasks:\n- {{name: 't-{{i}}', run: x, matrix: {{i: {list(range(200))}}}}}\n")
    )
    w = worker(boss, "w1", slots=4)
    held = take(boss, w, free=4)
    boss.sync(p.SyncRequest(worker_id=w, finished=succeeded(held), free_slots=0))
    held = take(boss, w, free=4)
    before = trips.count
    answer = boss.sync(p.SyncRequest(worker_id=w, finished=succeeded(held), free_slots=4))
    # The call alone: the pool checks its connection without asking the server.
    assert trips.count - before == 1
    assert len(answer.response.assignments) == 4
    assert boss.run_view(held[0].run_id)["unfinished"] == 192
    store.close()


def test_a_sync_in_one_statement_does_not_wait_for_another_holding_part_of_the_run_count(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that took finished tasks off the run's count is still open; a sync commits."""
    monkeypatch.delenv("SHOAL_PG_SYNC", raising=False)
    stores = [Store(pg_url), Store(pg_url)]
    first, second = (Scheduler(st) for st in stores)
    rid = first.submit(
        run_of(f"tasks:\n- {{name: 't-{{i}}', run: x, matrix: {{i: {list(range(640))}}}}}\n")
    )
    w2 = worker(second, "w2", slots=2)
    held2 = take(second, w2, free=2)
    counted, release = threading.Event(), threading.Event()

    def hold_open() -> None:
        with contextlib.suppress(RuntimeError), stores[0].transaction() as tx:
            assert tx.count_unfinished(rid, -1) > 0
            counted.set()
            release.wait(120)
            raise RuntimeError("rolled back")  # the count stays as the syncs leave it

    one = threading.Thread(target=hold_open)
    one.start()
    results: dict[str, Any] = {}
    try:
        assert counted.wait(60)

        def sync() -> None:
            request = p.SyncRequest(worker_id=w2, finished=succeeded(held2), free_slots=0)
            try:
                results["second"] = second.sync(request)
            except BaseException as e:
                results["second"] = e

        two = threading.Thread(target=sync)
        two.start()
        two.join(60)
        assert not two.is_alive(), "the sync waited for the other transaction"
    finally:
        release.set()
        one.join(60)
    assert not isinstance(results.get("second"), BaseException), results
    assert first.run_view(rid)["unfinished"] == 638
    for st in stores:
        st.close()


SCENARIO = """
tasks:
- {name: 't-{i}', run: x, matrix: {i: [1, 2, 3, 4, 5, 6]}}
- {name: big, run: x, slots: 2}
- {name: lab, run: x, requires: {gpu: true}}
- {name: pin, run: x, host: w2}
- {name: after, run: y, after: [t-1, big], outputs: [o.txt]}
- {name: last, run: z, after: [after, lab]}
- {name: sum, reduce: [t-2, t-3]}
- {name: m, reduce: [t-4, t-5], run: pick}
- {name: bad, run: x, retries: 1, retry_delay: 4}
- {name: worse, run: x}
- {name: below, run: x, after: [worse]}
"""


def _drive(boss: Scheduler, clock: Clock) -> list[Any]:
    """Two workers through the scenario: successes, results, logs, a failure, a retry,
    an output, reductions, a report the boss drops; every answer, in order."""
    answers: list[Any] = []
    w1 = worker(boss, "w1", slots=4, gpu=True)
    w2 = worker(boss, "w2", slots=2)
    boss.submit(run_of(SCENARIO))
    held: dict[int, list[p.Assignment]] = {w1: [], w2: []}
    dropped_once = False
    for step in range(40):
        for w, free in ((w1, 4), (w2, 2)):
            clock.now += 1.0
            finished = []
            for a in held[w]:
                failed = (a.task == "bad" and a.number == 1) or a.task == "worse"
                finished.append(
                    p.Report(
                        attempt_id=a.attempt_id,
                        outcome=p.FAILED if failed else p.SUCCEEDED,
                        exit_code=1 if failed else 0,
                        result={"n": step} if a.task.startswith("t-") else None,
                        outputs=["o.txt"] if a.task == "after" else [],
                        run_id=a.run_id,
                        task=a.task,
                        started=clock.now - 0.5,
                        ended=clock.now,
                        log_uploaded=a.task == "t-1",
                    )
                )
            if finished and not dropped_once:
                # A report the boss never handed out: dropped, with its event.
                finished.append(p.Report(attempt_id=9999, outcome=p.SUCCEEDED, exit_code=0))
                dropped_once = True
            running = [a.attempt_id for a in held[w]]
            out = boss.sync(
                p.SyncRequest(worker_id=w, finished=finished, free_slots=free, running=[])
            )
            answers.append((w, running, out.response, out.made_ready, out.finished_runs))
            held[w] = out.response.assignments
    return answers


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    import psycopg

    queries = {
        "tasks": "SELECT * FROM tasks ORDER BY id",
        "attempts": "SELECT * FROM attempts ORDER BY id",
        "events": "SELECT * FROM events ORDER BY id",
        "runs": "SELECT id, state, finished FROM runs ORDER BY id",
        "counts": "SELECT run_id, sum(unfinished) FROM run_counts GROUP BY run_id",
        "workers": "SELECT id, state, done, failed, last_sync FROM workers ORDER BY id",
    }
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


def test_syncs_in_one_statement_leave_the_database_as_statement_by_statement_ones(
    postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same workers' syncs, each way: the same answers, rows and events, in order."""
    from shoal.store.postgres import PostgresTx
    from tests.conftest import fresh_postgres

    done = []
    in_one = PostgresTx.sync_in_one

    def counted(self: PostgresTx, call: Any) -> Any:
        answer = in_one(self, call)
        done.append(answer is not None)
        return answer

    monkeypatch.setattr(PostgresTx, "sync_in_one", counted)
    seen = []
    for mode in ("statements", "one"):
        monkeypatch.setenv("SHOAL_PG_SYNC", mode)
        with fresh_postgres(postgres_server) as url:
            store = Store(url)
            clock = Clock()
            boss = Scheduler(store, clock=clock, rng=MidRng(), promote=lambda *a: [])
            answers = _drive(boss, clock)
            store.close()
            seen.append((answers, _tables(url)))
    (answers_before, before), (answers_after, after) = seen
    assert before["runs"][0][1] == "failed" and len(before["events"]) > 30
    for name in before:
        assert after[name] == before[name], name
    assert answers_after == answers_before
    # Most syncs went as one statement; those with failures or outputs did not.
    assert done.count(True) > 20 and done.count(False) > 0


def test_connections_the_server_closed_are_replaced_before_a_sync_uses_them(pg_url: str) -> None:
    """The server ended every connection of the boss's pool (a restart, an admin): syncs go on."""
    import psycopg

    store = Store(pg_url)
    boss = Scheduler(store)
    boss.submit(run_of("tasks:\n- {name: a, run: x}\n- {name: b, run: x}\n"))
    w = worker(boss, "w1", slots=1)
    held = take(boss, w)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        others = (
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in admin.execute(others).fetchall()]
        assert pids
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 60
        while admin.execute(others).fetchall():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    answer = boss.sync(p.SyncRequest(worker_id=w, finished=succeeded(held), free_slots=1))
    assert [a.task for a in answer.response.assignments] == ["b"]
    store.close()
