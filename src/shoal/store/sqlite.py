"""SQLite: its connections and transactions, its statements' spelling, lists as JSON arrays.

A boss on SQLite runs without SQLAlchemy: :class:`SqliteDatabase` keeps a
few connections of the standard library's ``sqlite3`` and runs transactions
on them, and a fresh database is made from :mod:`shoal.store.sql.sqlite_schema`.
SQLAlchemy is loaded only to bring an older database's schema forward.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shoal.store.rows import NewTask
from shoal.store.sql import SQLITE
from shoal.store.tx import Tx

__all__ = ["SqliteDatabase", "SqliteTx"]

IDLE_KEPT = 16  # connections kept open between transactions (a boss has 16 sync threads)
WAIT = 30.0  # seconds a transaction waits for the write lock before "database is locked"


class SqliteDatabase:
    """A SQLite database file (or an in-memory one): its connections and transactions.

    Each transaction takes a connection of its own (one kept from before,
    or a new one) and gives it back. Writers take the lock up front
    (``BEGIN IMMEDIATE``), so two writers never deadlock on an upgrade from
    a read lock, and this process's writers take it in turn (:class:`_Writers`);
    readers never block writers (WAL). An in-memory database is one
    connection, one transaction at a time.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._memory: sqlite3.Connection | None = None
        self._memory_lock = threading.RLock()
        self._writers = _Writers()
        if path is None:
            self._memory = self._connect()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Made here, 0600, before SQLite opens it: its -wal and -shm files
            # take the database's mode, and the database holds every log's cause.
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def _connect(self) -> sqlite3.Connection:
        where = ":memory:" if self.path is None else str(self.path)
        # Autocommit at the driver: shoal says BEGIN and COMMIT itself.
        conn = sqlite3.connect(where, timeout=WAIT, check_same_thread=False, isolation_level=None)
        try:
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: every commit is durable against a crash of shoal,
            # and survives power loss up to the last checkpoint.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(WAIT * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._memory is not None:
            with self._memory_lock:
                yield self._memory
            return
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._lock:
                if not _busy(conn) and not self._closed and len(self._idle) < IDLE_KEPT:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @contextlib.contextmanager
    def begin(self, *, read: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction: committed at the end, rolled back on error."""
        # A reader needs no turn; the one connection in memory is a turn of its own.
        queued = self._memory is None and not read
        with (
            self._writers.turn() if queued else contextlib.nullcontext(),
            self._connection() as conn,
        ):
            conn.execute("BEGIN" if read else "BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _roll_back(conn)
                raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._memory is not None:
            with self._memory_lock:
                self._memory.close()


class _Writers:
    """This process's writers, first come first served.

    SQLite's own wait for its write lock is a poll (sleeps of up to 100 ms):
    a thread writing back to back takes the lock again before a sleeping
    one wakes, for thousands of transactions, until the sleeper gives up
    with "database is locked". Queued here, each waits for those ahead only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[threading.Lock] = collections.deque()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for this writer's turn (at most :data:`WAIT`), hold it, pass it on."""
        mine = threading.Lock()
        mine.acquire()
        with self._lock:
            self._queue.append(mine)
            waiting = len(self._queue) > 1
        try:
            # Released by the writer ahead when it passes the turn on.
            if waiting and not mine.acquire(timeout=WAIT):
                raise sqlite3.OperationalError("database is locked")
            yield
        finally:
            # Also when the wait was cut short (an interrupt): never a turn lost.
            with self._lock:
                first = self._queue[0] is mine
                self._queue.remove(mine)
                if first and self._queue:
                    self._queue[0].release()


def _busy(conn: sqlite3.Connection) -> bool:
    """Whether a connection is unfit to keep: still in a transaction, or closed."""
    try:
        return conn.in_transaction
    except sqlite3.ProgrammingError:
        return True


def _roll_back(conn: sqlite3.Connection) -> None:
    """Undo what the failed transaction did (a connection that cannot is not kept)."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


class SqliteTx(Tx):
    """A transaction on SQLite."""

    SQL = SQLITE

    def array(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))  # read by json_each

    def insert_tasks(self, run_id: int, tasks: list[NewTask]) -> None:
        # A 100,000-task run: one executemany of plain tuples.
        if tasks:
            self.raw.executemany(
                self.SQL["insert_tasks"], [self.task_values(run_id, t) for t in tasks]
            )

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            self.raw.executemany(self.SQL["insert_deps"], pairs)
