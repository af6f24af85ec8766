"""A shoal database: open it, create or upgrade its schema, run transactions.

:class:`Store` owns the engine and opens transactions; each is a
:class:`~shoal.store.tx.Tx` of its database (:mod:`~shoal.store.sqlite`,
:mod:`~shoal.store.postgres`), which offers the queries by name. The SQL is
in :mod:`shoal.store.sql`; nothing above the store builds a query.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from shoal.exceptions import BadInput, StoreConflict, StoreError
from shoal.store import postgres
from shoal.store import schema as s
from shoal.store.sqlite import SqliteTx
from shoal.store.tx import Tx

__all__ = ["HousekeepingLock", "Store", "database_url"]


# PostgreSQL's deadlock_detected and serialization_failure: the transaction
# was rolled back whole and may simply run again.
_CONFLICTS = ("40P01", "40001")


def database_url(value: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a plain file path."""
    text = str(value)
    if "://" in text or text == "sqlite://":
        return text
    return f"sqlite:///{Path(text).expanduser()}"


class Store:
    """A shoal database: opens it, creates or upgrades its schema, runs transactions."""

    def __init__(self, url: str | Path) -> None:
        self.url = database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.is_postgres = self.url.startswith("postgres")
        self._tx: type[Tx]
        # PostgreSQL's syncs as one statement each; SHOAL_PG_SYNC=statements
        # sends them statement by statement, as before (a benchmark's baseline).
        self.syncs_in_one = self.is_postgres and os.environ.get("SHOAL_PG_SYNC") != "statements"
        if self.is_sqlite:
            self._tx = SqliteTx
        elif self.is_postgres:
            self._tx = postgres.PostgresTx
        else:
            raise BadInput(
                f"the database {self.url} is neither SQLite nor PostgreSQL: give a file path, "
                "sqlite:///PATH or postgresql://USER@HOST/NAME"
            )
        try:
            self.engine = self._make_engine()
        except (SQLAlchemyError, ImportError, OSError) as e:
            raise StoreError(f"cannot use the database {self.url}: {e}") from e
        try:
            self._prepare()
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise StoreError(
                f"cannot open the database {self.url}: {e.__class__.__name__}: {e.args[0] if e.args else e}"
            ) from e
        except BaseException:
            self.engine.dispose()
            raise

    def _make_engine(self) -> Engine:
        if self.is_postgres:
            return postgres.make_engine(self.url)
        memory = self.url in ("sqlite://", "sqlite:///:memory:")
        if not memory:
            path = Path(self.url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            # Made here, 0600, before SQLite opens it: its -wal and -shm files
            # take the database's mode, and the database holds every log's cause.
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); pysqlite's own is too late.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: every commit is durable against a crash of shoal,
            # and survives power loss up to the last checkpoint.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front so two writers never deadlock on
            # an upgrade from a read lock.
            if conn.get_execution_options().get("shoal_read"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _prepare(self) -> None:
        with self.engine.begin() as conn:
            if self.is_postgres:
                # Bosses starting together: one creates or upgrades, the others wait.
                postgres.lock_schema(conn)
            s.metadata.create_all(conn, tables=[s.meta])
            row = conn.execute(
                select(s.meta.c.value).where(s.meta.c.key == "schema_version")
            ).first()
            if row is None:
                s.metadata.create_all(conn)
                s.install_routines(conn)
                conn.execute(
                    insert(s.meta).values(key="schema_version", value=str(s.SCHEMA_VERSION))
                )
                return
            version = int(row[0])
            if version > s.SCHEMA_VERSION:
                raise StoreError(
                    f"the database {self.url} has schema version {version}, newer than this "
                    f"shoal ({s.SCHEMA_VERSION}): upgrade shoal"
                )
            for step in s.MIGRATIONS[version - 1 :]:
                step(conn)
            conn.execute(
                update(s.meta)
                .where(s.meta.c.key == "schema_version")
                .values(value=str(s.SCHEMA_VERSION))
            )

    def schema_version(self) -> int:
        with self.read() as tx:
            return tx.schema_version()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction: committed at the end, rolled back on error."""
        try:
            with self.engine.begin() as conn:
                yield self._tx(conn)
        except OperationalError as e:
            raise self._error(e) from e
        except IntegrityError as e:
            # Two transactions made the same unique row at once (two sends of
            # one submission): the one rolled back finds the other's when run again.
            raise StoreConflict(f"transaction conflict on {self.url}: {e.orig}") from e
        except Exception as e:
            # A deadlock, raised by the driver itself: statements run straight on it.
            if getattr(e, "sqlstate", None) in _CONFLICTS:
                raise StoreConflict(f"transaction conflict on {self.url}: {e}") from e
            raise

    @contextmanager
    def batch(self) -> Iterator[Tx]:
        """A write transaction whose statements travel together (PostgreSQL's pipeline mode)."""
        with self.transaction() as tx, tx.batched():
            yield tx

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction, which never blocks writers on SQLite."""
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(shoal_read=True)
                with conn.begin():
                    yield self._tx(conn)
        except OperationalError as e:
            raise self._error(e) from e

    def _error(self, e: OperationalError) -> StoreError:
        if getattr(e.orig, "sqlstate", None) in _CONFLICTS:
            return StoreConflict(f"transaction conflict on {self.url}: {e.orig}")
        return StoreError(f"database error on {self.url}: {e.orig}")

    def refresh_statistics(self) -> None:
        """Let the query planner know the tables' new sizes (after a large run arrived).

        Without it PostgreSQL plans the claim for the empty table it last
        looked at: a sort of every ready task on each claim, not an index scan.
        """
        if self.is_postgres:
            with self.transaction() as tx:
                assert isinstance(tx, postgres.PostgresTx)
                tx.analyze_tasks()

    def housekeeping_lock(self) -> HousekeepingLock | postgres.AdvisoryLock:
        """The lock that makes one boss of several the housekeeper."""
        if self.is_postgres:
            return postgres.AdvisoryLock(self.engine.url)
        return HousekeepingLock()

    def listen(self, origin: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` when another boss made tasks ready; returns a stopper.

        ``origin`` tells this boss's own notices from the others'. SQLite has
        one boss, so nothing comes.
        """
        if self.is_postgres:
            return postgres.listen_for_work(self.engine.url, origin, wake)
        return lambda: None

    def close(self) -> None:
        self.engine.dispose()


class HousekeepingLock:
    """Held for good: a database only one boss serves (SQLite) needs no election."""

    def hold(self) -> bool:
        """Whether this boss holds the lock now (taking it when free)."""
        return True

    def release(self) -> None:
        """Let another boss take over."""
