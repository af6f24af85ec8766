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
:class:`~shoal.store.store.Tx`; the store contract tests run both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, make_url, text

from shoal.store import schema as s
from shoal.store import store as base
from shoal.store.statements import SQLITE, for_psycopg
from shoal.store.store import HousekeepingLock, Tx

__all__ = ["AdvisoryLock", "PostgresTx", "listen_for_work", "lock_schema", "make_engine"]

log = logging.getLogger("shoal.store")

CHANNEL = "shoal_work"
# Advisory lock keys: any two numbers no other program on the database uses.
SCHEMA_LOCK = 0x5E0A1_0001
HOUSEKEEPING_LOCK = 0x5E0A1_0002

# The fast path's statements, spelled for psycopg; a claim skips the tasks
# other bosses are claiming, and a report locks what it reads.
SQL = {name: for_psycopg(sql) for name, sql in SQLITE.items()}
SQL["ready_candidates"] += " FOR UPDATE OF tasks SKIP LOCKED"
SQL["attempts_with_tasks"] += " ORDER BY t.id FOR UPDATE OF a, t"
SQL["insert_attempts"] = """
INSERT INTO attempts (task_id, run_id, number, worker_id, state, assigned, started, lease_expires)
SELECT * FROM unnest(%(task_id)s::int[], %(run_id)s::int[], %(number)s::int[],
    %(worker_id)s::int[], %(state)s::text[], %(assigned)s::float8[], %(started)s::float8[],
    %(lease_expires)s::float8[])
RETURNING id, task_id
"""


def driver_url(url: str | URL) -> URL:
    """The SQLAlchemy URL with psycopg 3 as the driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: str | URL) -> str:
    """The URL as psycopg itself takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    return create_engine(
        driver_url(url),
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=8,
        isolation_level="READ COMMITTED",
    )


def lock_schema(conn: Connection) -> None:
    """Hold the schema lock until this transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})


class PostgresTx(Tx):
    """A transaction on PostgreSQL: claims skip rows other bosses hold."""

    SQL = SQL

    def ids(self, ids: list[int]) -> Any:
        return ids  # psycopg sends a list as an array

    def insert_attempts(self, rows: list[dict[str, Any]]) -> list[int]:
        # One statement for the lot; each attempt found again by its task.
        if not rows:
            return []
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        by_task = {int(t): int(i) for i, t in self._run("insert_attempts", columns)}
        return [by_task[int(r["task_id"])] for r in rows]

    def expired_attempts(self, now: float) -> Sequence[Any]:
        # Locked, skipping what a report is recording right now: that
        # attempt is no longer lost, and the next sweep will know.
        return self.conn.execute(
            base.expired_attempts_query(now).with_for_update(
                skip_locked=True, of=[s.attempts, s.tasks]
            )
        ).all()

    def insert_tasks(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        # COPY: a 100,000-task run goes over in one stream.
        if rows:
            columns = [*rows[0], "run_id"]
            names = ", ".join(f'"{c}"' for c in columns)
            cursor = self.raw.cursor()
            with cursor.copy(f"COPY tasks ({names}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row((*r.values(), run_id))

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            cursor = self.raw.cursor()
            with cursor.copy("COPY deps (task_id, dep_id) FROM STDIN") as copy:
                for pair in pairs:
                    copy.write_row(pair)

    def notify_work(self, origin: str) -> None:
        self.conn.execute(text("SELECT pg_notify(:c, :o)"), {"c": CHANNEL, "o": origin})


def _connect(url: URL, **kwargs: Any) -> Any:
    import psycopg

    return psycopg.connect(libpq_url(url), connect_timeout=5, **kwargs)


class AdvisoryLock(HousekeepingLock):
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
