"""The SQLite store under the strain a boss puts on it: threads, other processes, broken files."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from shoal.exceptions import StoreError
from shoal.store import Store

DEADLINE = 60.0  # generous: the machine is shared


def _commits_while_waiting(store: Store, key: str) -> int:
    """How many transactions a thread writing back to back commits while one write waits."""
    holding, done = threading.Event(), threading.Event()
    commits = [0]

    def busy() -> None:
        # Bounded, so that a starved writer still gets in before long.
        while not done.is_set() and commits[0] < 300:
            with store.transaction() as tx:
                tx.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
                holding.set()
                done.wait(0.001)
            commits[0] += 1

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        assert holding.wait(DEADLINE)
        before = commits[0]
        with store.transaction() as tx:
            meanwhile = commits[0] - before
            tx.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))
    finally:
        done.set()
        thread.join(DEADLINE)
    return meanwhile


def test_a_writer_waits_for_the_writers_ahead_not_for_a_busy_thread(tmp_path: Path) -> None:
    # A thread writing back to back (a boss's syncs in a burst) must not keep
    # another writer (housekeeping) waiting until "database is locked".
    store = Store(tmp_path / "shoal.db")
    try:
        waits = [_commits_while_waiting(store, f"k{i}") for i in range(3)]
    finally:
        store.close()
    # The writer ahead finishes its transaction, and the next is ours.
    assert max(waits) <= 2, waits


def test_opening_a_database_waits_for_no_writer(tmp_path: Path) -> None:
    # `shoal gc` or `shoal status` opening the state folder's database while a
    # transaction writes (a large run arriving) opens it at once.
    path = tmp_path / "shoal.db"
    writer = Store(path)
    holding, opened = threading.Event(), threading.Event()
    still_holding: list[bool] = []

    def write() -> None:
        with writer.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES ('long', 'write')")
            holding.set()
            opened.wait(DEADLINE)
            still_holding.append(opened.is_set())

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert holding.wait(DEADLINE)
        reader = Store(path)
        # Opened, and read, while the writer still holds its lock: what it
        # writes is not there yet.
        with reader.read() as tx:
            assert tx.execute("SELECT count(*) FROM meta WHERE key = 'long'").fetchone() == (0,)
        opened.set()
        reader.close()
    finally:
        opened.set()
        thread.join(DEADLINE)
        writer.close()
    assert still_holding == [True]


def test_a_closed_in_memory_store_says_so(tmp_path: Path) -> None:
    store = Store("sqlite://")
    store.close()
    with pytest.raises(StoreError, match="was closed"), store.read() as tx:
        tx.schema_version()
    with pytest.raises(StoreError, match="was closed"), store.transaction() as tx:
        tx.execute("INSERT INTO meta (key, value) VALUES ('late', 'write')")


def test_a_database_file_overwritten_while_open_is_a_store_error(tmp_path: Path) -> None:
    # A restore gone wrong, a disk fault: one StoreError line (the boss marks its
    # database unhealthy, the CLI exits 2), not the driver's traceback.
    path = tmp_path / "shoal.db"
    store = Store(path)
    try:
        # Everything in the file itself, none in its write-ahead log.
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with path.open("r+b") as f:
            f.write(b"not a database! " * 16)
        # The first reader holds its connection: the second opens the file anew.
        with store.read(), pytest.raises(StoreError, match="not a database"), store.read() as tx:
            tx.schema_version()
    finally:
        store.close()
