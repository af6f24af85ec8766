"""PostgreSQL: row locks for claims, NOTIFY for wake-ups, an advisory lock for housekeeping.

Several bosses may serve one PostgreSQL database. What keeps them apart:

- A claim selects ready tasks ``FOR UPDATE SKIP LOCKED``: two bosses
  claiming at once get different tasks, and neither waits for the other.
- A finished report locks its attempt and task rows before reading their
  state, so a report and a lease sweep (or two attempts of one task) are
  recorded one after the other, never both.
- When a transaction makes tasks ready it sends ``NOTIFY shoal_work`` (on
  commit); every boss listens and wakes its long-polling workers.
- One boss at a time holds a session advisory lock and does the
  housekeeping. The lock goes with its connection, so when that boss dies
  another takes it at its next try.

Each method here answers exactly like the one it overrides in
:class:`~shoal.store.tx.Tx`; the store contract tests run both.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DisconnectionError

from shoal.store.rows import (
    ActiveWorker,
    DepOutputs,
    NewAttempt,
    NewTask,
    ReadyTask,
    SyncCall,
    SyncDone,
    encode,
)
from shoal.store.schema import RUN_SHARDS, postgres_indexes
from shoal.store.sql import POSTGRES, POSTGRES_ARRAYS
from shoal.store.sql.routines import DEFER_SQLSTATE, SYNC_CALL
from shoal.store.sql.spelling import for_psycopg
from shoal.store.tx import Tx

__all__ = ["AdvisoryLock", "PostgresTx", "listen_for_work", "lock_schema", "make_engine"]

log = logging.getLogger("shoal.store")

IDLE = 0  # libpq's PQTRANS_IDLE: the connection is in no transaction

CHANNEL = "shoal_work"
# Advisory lock keys: any two numbers no other program on the database uses.
SCHEMA_LOCK = 0x5E0A1_0001
HOUSEKEEPING_LOCK = 0x5E0A1_0002


def driver_url(url: str | URL) -> URL:
    """The SQLAlchemy URL with psycopg 3 as the driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: str | URL) -> str:
    """The URL as psycopg itself takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    postgres_indexes()
    # Enough connections for a boss's sync threads (16), its housekeeping and reads.
    engine = create_engine(
        driver_url(url),
        pool_size=4,
        max_overflow=20,
        isolation_level="READ COMMITTED",
    )
    event.listen(engine, "checkout", _still_connected)
    return engine


def _still_connected(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed; the pool then opens another.

    Instead of a round trip to ask (SQLAlchemy's pre-ping, a fifth of a
    sync's cost): an idle connection has nothing to read unless the server
    hung up (a restart, an idle timeout, a terminated backend) or spoke
    unasked, and either way a new connection is the safe choice.
    """
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError("the connection to PostgreSQL broke")
    readable, _, _ = select.select([dbapi_conn.fileno()], [], [], 0)
    if readable:
        raise DisconnectionError("PostgreSQL closed the connection")


def lock_schema(conn: Connection) -> None:
    """Hold the schema lock until this transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})


_SPELLED: dict[str, str] = {}  # statements in SQLite's spelling, as psycopg takes them


class PostgresTx(Tx):
    """A transaction on PostgreSQL: claims skip rows other bosses hold."""

    SQL = POSTGRES

    def spell(self, sql: str) -> str:
        spelled = _SPELLED.get(sql)
        if spelled is None:
            spelled = _SPELLED.setdefault(sql, for_psycopg(sql))
        return spelled

    SHARDS = RUN_SHARDS
    _pipeline: Any = None

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """psycopg's pipeline mode, and the commit sent with the last statements.

        Each statement is queued; the queue goes to the server when an answer
        is read, so a sync costs a round trip per answer it needs, and the
        row locks it takes are held for no round trip more than needed.
        """
        raw = self.raw
        # The transaction is begun and committed here, as statements of the
        # batch: psycopg's own BEGIN and commit would each wait for the server.
        raw.autocommit = True
        try:
            with raw.pipeline() as pipeline:
                self._pipeline = pipeline
                raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                yield
                raw.execute("COMMIT")
        finally:
            self._pipeline = None
            # A connection that broke meanwhile is dropped by the pool, whatever this says.
            with contextlib.suppress(Exception):
                if raw.info.transaction_status != IDLE:
                    raw.rollback()
                raw.autocommit = False

    def sync_in_one(self, call: SyncCall) -> SyncDone | None:
        """The server-side ``shoal_sync`` (:mod:`shoal.store.sql.routines`): one round trip.

        Sent alone, outside a transaction, the call is one: it commits, or
        rolls back whole, with no wait on the network while it holds locks.
        """
        raw = self.raw
        if raw.info.transaction_status != IDLE:
            return None  # something was sent in this transaction already
        params = {
            "worker": call.worker_id,
            "boss": call.boss,
            "now": call.now,
            "lease_until": call.lease_expires,
            "ids": [r.attempt_id for r in call.successes],
            "exit_codes": [r.exit_code for r in call.successes],
            "started": [_float(r.started) for r in call.successes],
            "ended": [_float(r.ended) for r in call.successes],
            "logged": [r.logged for r in call.successes],
            "results": [None if r.result is None else encode(r.result) for r in call.successes],
            "outputs": encode([]),
            "logs": call.logs,
            "running": list(call.running),
            "free": call.free_slots,
            "max_seconds": call.max_seconds,
            "channel": CHANNEL,
            "origin": call.origin,
        }
        raw.autocommit = True
        try:
            row = raw.execute(SYNC_CALL, params).fetchone()
        except Exception as e:
            if getattr(e, "sqlstate", None) == DEFER_SQLSTATE:
                return None  # rolled back: the boss does it statement by statement
            raise
        finally:
            # A connection that broke meanwhile is dropped by the pool, whatever this says.
            with contextlib.suppress(Exception):
                raw.autocommit = False
        done: dict[str, Any] = row[0]
        if done.get("defer"):
            return None
        if done.get("missing"):
            return SyncDone(None, [], [], [], False, False, [])
        started = [
            (
                int(a[0]),
                ReadyTask(
                    a[1], a[2], a[3], a[4], a[5], a[9], a[6] - 1, a[7], a[8], a[10], a[11], None
                ),
            )
            for a in done["assign"]
        ]
        return SyncDone(
            worker=ActiveWorker(*done["worker"]),
            cancel=[int(i) for i in done["cancel"]],
            started=started,
            dep_outputs=[DepOutputs(*d) for d in done["fetch"]],
            idle=bool(done["idle"]),
            made_ready=bool(done["made_ready"]),
            ended_runs=[int(i) for i in done["ended"]],
        )

    def _many(self, name: str, rows: list[Any]) -> None:
        # One statement over arrays, not one per row: a sync's Python and the
        # server's work per row are a fraction of a statement's.
        if not rows:
            return
        columns = [_uniform(list(c)) for c in zip(*rows, strict=True)]
        self.raw.execute(POSTGRES_ARRAYS[name], columns)

    def _affected(self, name: str, params: Any = ()) -> int:
        cur = self._run(name, params)
        if self._pipeline is not None:
            self._pipeline.sync()  # the count comes with the answers
        return int(cur.rowcount)

    def array(self, values: Sequence[Any]) -> Any:
        return list(values)  # psycopg sends a list as an array

    def _insert_attempts(
        self, attempts: list[NewAttempt], worker_id: int, now: float, lease_expires: float
    ) -> list[int]:
        # One statement for the lot; each attempt found again by its task.
        if not attempts:
            return []
        params = {
            "task_id": [a.task_id for a in attempts],
            "run_id": [a.run_id for a in attempts],
            "number": [a.number for a in attempts],
            "worker_id": worker_id,
            "now": now,
            "lease_expires": lease_expires,
        }
        by_task = {int(t): int(i) for i, t in self._run("insert_attempts", params)}
        return [by_task[a.task_id] for a in attempts]

    def insert_tasks(self, run_id: int, tasks: list[NewTask]) -> None:
        # COPY: a 100,000-task run goes over in one stream.
        if tasks:
            with self.raw.cursor().copy(self.SQL["insert_tasks"]) as copy:
                for t in tasks:
                    copy.write_row(self.task_values(run_id, t))

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            with self.raw.cursor().copy(self.SQL["insert_deps"]) as copy:
                for pair in pairs:
                    copy.write_row(pair)

    def notify_work(self, origin: str) -> None:
        self._run("notify_work", {"channel": CHANNEL, "origin": origin})

    def analyze_tasks(self) -> None:
        """Let the planner know the tasks table's new size."""
        self._run("analyze_tasks")


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _uniform(column: list[Any]) -> list[Any]:
    """A column as one array: numbers all floats where any is (psycopg will not mix them)."""
    if any(isinstance(v, float) for v in column):
        return [None if v is None else float(v) for v in column]
    return column


def _connect(url: URL, **kwargs: Any) -> Any:
    import psycopg

    return psycopg.connect(libpq_url(url), connect_timeout=5, **kwargs)


class AdvisoryLock:
    """PostgreSQL's session advisory lock, on a connection of its own."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._conn: Any = None
        self._held = False

    def hold(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = _connect(self.url, autocommit=True)
            if self._held:
                self._conn.execute("SELECT 1")  # still connected, so still held
            else:
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (HOUSEKEEPING_LOCK,)
                ).fetchone()
                self._held = bool(row and row[0])
        except Exception as e:  # the database is away: we hold nothing
            log.warning(f"housekeeping lock: {e}", extra={"event": "lock_lost"})
            self._drop()
        return self._held

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def release(self) -> None:
        self._drop()  # closing the session releases its advisory locks


def listen_for_work(url: URL, origin: str, wake: Callable[[], None]) -> Callable[[], None]:
    """A thread that calls ``wake`` on every other boss's NOTIFY; returns a stopper."""
    stopping = threading.Event()
    holder: dict[str, Any] = {}

    def loop() -> None:
        while not stopping.is_set():
            try:
                conn = holder["conn"] = _connect(url, autocommit=True)
                with conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Wake once on (re)connecting: a notice may have been missed.
                    wake()
                    while not stopping.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            if notice.payload != origin:
                                wake()
            except Exception as e:
                if stopping.is_set():
                    return
                log.warning(f"listening for work: {e}", extra={"event": "listen_failed"})
                stopping.wait(1.0)

    thread = threading.Thread(target=loop, name="shoal-listen", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(3)

    return stop
