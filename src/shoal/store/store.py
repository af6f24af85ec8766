"""A shoal database: open it, create or upgrade its schema, run transactions.

:class:`Store` opens the database and runs transactions; each is a
:class:`~shoal.store.tx.Tx` of its database (:mod:`~shoal.store.sqlite`,
:mod:`~shoal.store.postgres`), which offers the queries by name. The SQL is
in :mod:`shoal.store.sql`; nothing above the store builds a query.

SQLite runs on the standard library's driver alone
(:class:`~shoal.store.sqlite.SqliteDatabase`): SQLAlchemy, a tenth of a
second to load, is loaded for PostgreSQL's connection pool and for bringing
an older database's schema forward, not on every start.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.exceptions import BadInput, StoreConflict, StoreError
from shoal.store.sizes import SCHEMA_VERSION
from shoal.store.sql.sqlite_schema import CREATE
from shoal.store.sqlite import SqliteDatabase, SqliteTx
from shoal.store.tx import Tx

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from shoal.store import postgres

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
        # PostgreSQL's syncs as one statement each; SHOAL_PG_SYNC=statements
        # sends them statement by statement, as before (a benchmark's baseline).
        self.syncs_in_one = self.is_postgres and os.environ.get("SHOAL_PG_SYNC") != "statements"
        self.engine: Engine | None = None  # PostgreSQL's (SQLAlchemy's pool)
        self._sqlite: SqliteDatabase | None = None
        if self.is_sqlite:
            self._open_sqlite()
        elif self.is_postgres:
            self._open_postgres()
        else:
            raise BadInput(
                f"the database {self.url} is neither SQLite nor PostgreSQL: give a file path, "
                "sqlite:///PATH or postgresql://USER@HOST/NAME"
            )

    # -- SQLite --------------------------------------------------------------

    def _sqlite_path(self) -> Path | None:
        """The database file (None: a database in memory)."""
        if self.url in ("sqlite://", "sqlite:///:memory:"):
            return None
        return Path(self.url.removeprefix("sqlite:///"))

    def _open_sqlite(self) -> None:
        try:
            self._sqlite = SqliteDatabase(self._sqlite_path())
        except OSError as e:
            raise StoreError(f"cannot use the database {self.url}: {e}") from e
        try:
            version = self._create_sqlite()
            if version != SCHEMA_VERSION:
                self._upgrade_sqlite(version)
        except sqlite3.Error as e:
            self._sqlite.close()
            raise StoreError(
                f"cannot open the database {self.url}: {e.__class__.__name__}: {e}"
            ) from e
        except BaseException:
            self._sqlite.close()
            raise

    def _create_sqlite(self) -> int | None:
        """Create a fresh database's schema; the version an existing one has (None: unknown)."""
        assert self._sqlite is not None
        # Read first: opening a made database waits for no writer (a boss in
        # the middle of a large run's submission, say).
        with self._sqlite.begin(read=True) as raw:
            made, version = _sqlite_version(raw)
        if made:
            return version
        with self._sqlite.begin() as raw:
            made, version = _sqlite_version(raw)  # another process may have made it meanwhile
            if made:
                return version
            for statement in CREATE.split(";\n"):
                if statement.strip():
                    raw.execute(statement)
            raw.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        return SCHEMA_VERSION

    def _upgrade_sqlite(self, version: int | None) -> None:
        """An older database (or one whose making stopped halfway): SQLAlchemy brings it forward."""
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.url} has schema version {version}, newer than this "
                f"shoal ({SCHEMA_VERSION}): upgrade shoal"
            )
        from sqlalchemy.exc import SQLAlchemyError

        engine = self._make_engine()
        try:
            self._prepare(engine)
        except SQLAlchemyError as e:
            raise StoreError(
                f"cannot open the database {self.url}: {e.__class__.__name__}: "
                f"{e.args[0] if e.args else e}"
            ) from e
        finally:
            engine.dispose()

    # -- PostgreSQL (and SQLite's upgrades): SQLAlchemy ------------------------

    def _open_postgres(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.engine = self._make_engine()
        except (SQLAlchemyError, ImportError, OSError) as e:
            raise StoreError(f"cannot use the database {self.url}: {e}") from e
        try:
            self._prepare(self.engine)
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise StoreError(
                f"cannot open the database {self.url}: {e.__class__.__name__}: {e.args[0] if e.args else e}"
            ) from e
        except BaseException:
            self.engine.dispose()
            raise

    def _make_engine(self) -> Engine:
        """A SQLAlchemy engine for the database (PostgreSQL's pool; SQLite's upgrades)."""
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import StaticPool

        if self.is_postgres:
            from shoal.store import postgres

            return postgres.make_engine(self.url)
        path = self._sqlite_path()
        if path is not None:
            SqliteDatabase(path).close()  # the file, made 0600
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if path is None else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); pysqlite's own is too late.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if path is not None:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front, as SqliteDatabase's do.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _prepare(self, engine: Engine) -> None:
        from sqlalchemy import insert, select, update

        from shoal.store import schema as s

        with engine.begin() as conn:
            if self.is_postgres:
                from shoal.store import postgres

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

    # -- transactions ----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction: committed at the end, rolled back on error."""
        if self._sqlite is not None:
            with self._sqlite_errors(), self._sqlite.begin() as raw:
                yield SqliteTx(raw)
            return
        from sqlalchemy.exc import IntegrityError, OperationalError

        assert self.engine is not None
        try:
            with self.engine.begin() as conn:
                yield self._postgres_tx(conn)
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
        if self._sqlite is not None:
            with self._sqlite_errors(), self._sqlite.begin(read=True) as raw:
                yield SqliteTx(raw)
            return
        from sqlalchemy.exc import OperationalError

        assert self.engine is not None
        try:
            with self.engine.connect() as conn, conn.begin():
                yield self._postgres_tx(conn)
        except OperationalError as e:
            raise self._error(e) from e

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """SQLite's errors as the store's: a broken constraint may be a collision, so runs again.

        A database that cannot be used (locked, full, corrupt, not a database)
        is a StoreError; a statement shoal got wrong stays the driver's error.
        """
        try:
            yield
        except sqlite3.IntegrityError as e:
            raise StoreConflict(f"transaction conflict on {self.url}: {e}") from e
        except sqlite3.ProgrammingError as e:
            if self._sqlite is not None and self._sqlite.closed:
                raise StoreError(f"the database {self.url} was closed: open a Store again") from e
            raise
        except sqlite3.DatabaseError as e:
            raise StoreError(f"database error on {self.url}: {e}") from e

    def _postgres_tx(self, conn: Connection) -> Tx:
        from shoal.store import postgres

        return postgres.PostgresTx(conn.connection.driver_connection, conn)

    def _error(self, e: Any) -> StoreError:
        if getattr(e.orig, "sqlstate", None) in _CONFLICTS:
            return StoreConflict(f"transaction conflict on {self.url}: {e.orig}")
        return StoreError(f"database error on {self.url}: {e.orig}")

    def refresh_statistics(self) -> None:
        """Let the query planner know the tables' new sizes (after a large run arrived).

        Without it PostgreSQL plans the claim for the empty table it last
        looked at: a sort of every ready task on each claim, not an index scan.
        """
        if self.is_postgres:
            from shoal.store import postgres

            with self.transaction() as tx:
                assert isinstance(tx, postgres.PostgresTx)
                tx.analyze_tasks()

    def housekeeping_lock(self) -> HousekeepingLock | postgres.AdvisoryLock:
        """The lock that makes one boss of several the housekeeper."""
        if self.is_postgres:
            from shoal.store import postgres

            assert self.engine is not None
            return postgres.AdvisoryLock(self.engine.url)
        return HousekeepingLock()

    def listen(self, origin: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` when another boss made tasks ready; returns a stopper.

        ``origin`` tells this boss's own notices from the others'. SQLite has
        one boss, so nothing comes.
        """
        if self.is_postgres:
            from shoal.store import postgres

            assert self.engine is not None
            return postgres.listen_for_work(self.engine.url, origin, wake)
        return lambda: None

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self.engine is not None:
            self.engine.dispose()


def _sqlite_version(raw: sqlite3.Connection) -> tuple[bool, int | None]:
    """Whether the schema is made, and the version it has (None: unknown)."""
    made = raw.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if made is None:
        return False, None
    row = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return True, int(row[0]) if row is not None else None


class HousekeepingLock:
    """Held for good: a database only one boss serves (SQLite) needs no election."""

    def hold(self) -> bool:
        """Whether this boss holds the lock now (taking it when free)."""
        return True

    def release(self) -> None:
        """Let another boss take over."""
