"""The only place in shoal that holds SQL.

:class:`Store` owns the engine and opens transactions; :class:`Tx` is one
transaction and offers the queries the scheduler needs, by name. Nothing above
this module builds a query.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from shoal.exceptions import BadInput, StoreConflict, StoreError
from shoal.store import schema as s
from shoal.store.statements import EVENT_KEYS, named_rows

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "HousekeepingLock",
    "Store",
    "Tx",
    "database_url",
]

ACTIVE_STATES = ("waiting", "ready", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled", "upstream_failed")


def database_url(value: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a plain file path."""
    text = str(value)
    if "://" in text or text == "sqlite://":
        return text
    return f"sqlite:///{Path(text).expanduser()}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# What an assignment is made from: ready tasks and stragglers alike.
_CANDIDATE_COLUMNS = (
    s.tasks.c.id,
    s.tasks.c.run_id,
    s.tasks.c.name,
    s.tasks.c.spec,
    s.tasks.c.slots,
    s.tasks.c.requires,
    s.tasks.c.attempts,
    s.tasks.c.n_deps,
    s.tasks.c.operands,
)


def expired_attempts_query(now: float) -> Select[Any]:
    return (
        select(
            s.attempts.c.id,
            s.attempts.c.task_id,
            s.attempts.c.run_id,
            s.attempts.c.worker_id,
            s.tasks.c.state.label("task_state"),
            s.tasks.c.name.label("task_name"),
            s.workers.c.name.label("worker_name"),
            s.workers.c.last_sync,
        )
        .join(s.tasks, s.tasks.c.id == s.attempts.c.task_id)
        .join(s.workers, s.workers.c.id == s.attempts.c.worker_id, isouter=True)
        .where(s.attempts.c.state == "running", s.attempts.c.lease_expires < now)
        .order_by(s.attempts.c.task_id)
        .limit(10000)
    )


class Store:
    """A shoal database: opens it, creates or upgrades its schema, runs transactions."""

    def __init__(self, url: str | Path) -> None:
        self.url = database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.is_postgres = self.url.startswith("postgres")
        self._tx: type[Tx]
        if self.is_sqlite:
            from shoal.store.sqlite import SqliteTx

            self._tx = SqliteTx
        elif self.is_postgres:
            from shoal.store.postgres import PostgresTx

            self._tx = PostgresTx
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
            from shoal.store.postgres import make_engine

            return make_engine(self.url)
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
                from shoal.store.postgres import lock_schema

                lock_schema(conn)
            s.metadata.create_all(conn, tables=[s.meta])
            row = conn.execute(
                select(s.meta.c.value).where(s.meta.c.key == "schema_version")
            ).first()
            if row is None:
                s.metadata.create_all(conn)
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
        # PostgreSQL's deadlock_detected and serialization_failure: the
        # transaction was rolled back whole and may simply run again.
        if getattr(e.orig, "sqlstate", None) in ("40P01", "40001"):
            return StoreConflict(f"transaction conflict on {self.url}: {e.orig}")
        return StoreError(f"database error on {self.url}: {e.orig}")

    def refresh_statistics(self) -> None:
        """Let the query planner know the tables' new sizes (after a large run arrived).

        Without it PostgreSQL plans the claim for the empty table it last
        looked at: a sort of every ready task on each claim, not an index scan.
        """
        if self.is_postgres:
            with self.transaction() as tx:
                tx.conn.exec_driver_sql("ANALYZE tasks")

    def housekeeping_lock(self) -> HousekeepingLock:
        """The lock that makes one boss of several the housekeeper."""
        if self.is_postgres:
            from shoal.store.postgres import AdvisoryLock

            return AdvisoryLock(self.engine.url)
        return HousekeepingLock()

    def listen(self, origin: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` when another boss made tasks ready; returns a stopper.

        ``origin`` tells this boss's own notices from the others'. SQLite has
        one boss, so nothing comes.
        """
        if self.is_postgres:
            from shoal.store.postgres import listen_for_work

            return listen_for_work(self.engine.url, origin, wake)
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


class Tx:
    """One transaction, with every query shoal needs.

    The statements of a worker's sync go straight to the driver
    (:mod:`shoal.store.statements`); the others are SQLAlchemy Core. A
    database's subclass gives the sync statements' spelling (``SQL``), how a
    list of ids travels (:meth:`ids`) and how a run's tasks are stored in bulk.
    """

    SQL: dict[str, str]

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw: Any = conn.connection.driver_connection

    def ids(self, ids: list[int]) -> Any:
        """A list of ids as one statement parameter."""
        raise NotImplementedError

    def insert_tasks(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        """Insert a run's tasks (rows with the same keys, in the same order)."""
        raise NotImplementedError

    def insert_deps(self, pairs: list[tuple[int, int]]) -> None:
        """Insert (task_id, dep_id) pairs."""
        raise NotImplementedError

    # -- a worker's sync -------------------------------------------------

    def _run(self, name: str, params: Any = ()) -> Any:
        return self.raw.execute(self.SQL[name], params)

    def _many(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.raw.cursor().executemany(self.SQL[name], rows)

    def touch_worker(
        self, worker_id: int, now: float, done: int, failed: int, boss: int | None = None
    ) -> Any:
        cur = self._run(
            "touch_worker",
            {"id": worker_id, "now": now, "done": done, "failed": failed, "boss": boss},
        )
        rows = named_rows(cur)
        return rows[0] if rows else None

    def attempts_with_tasks(self, attempt_ids: list[int]) -> dict[int, Any]:
        cur = self._run("attempts_with_tasks", {"ids": self.ids(attempt_ids)})
        return {int(r.id): r for r in named_rows(cur)}

    def finish_attempts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._many("finish_attempt", rows)

    def succeed_tasks(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._many("succeed_task", rows)

    def ready_dependents(self, task_ids: list[int]) -> list[tuple[int, str]]:
        if not task_ids:
            return []
        ids = self.ids(task_ids)
        self._run("decrement_pending", {"ids": ids})
        return [(int(r[0]), str(r[1])) for r in self._run("ready_dependents", {"ids": ids})]

    def count_unfinished(self, run_id: int, delta: int) -> int:
        return int(self._run("count_unfinished", {"id": run_id, "delta": delta}).fetchone()[0])

    def renew_leases(self, worker_id: int, attempt_ids: list[int], until: float) -> None:
        if attempt_ids:
            self._run("renew", {"worker": worker_id, "ids": self.ids(attempt_ids), "until": until})

    def reclaim_orphans(self, worker_id: int, known: list[int], now: float) -> int:
        cur = self._run("reclaim", {"worker": worker_id, "ids": self.ids(known), "now": now})
        return int(cur.rowcount)

    def not_running(self, attempt_ids: list[int]) -> list[int]:
        if not attempt_ids:
            return []
        return [int(r[0]) for r in self._run("not_running", {"ids": self.ids(attempt_ids)})]

    def ready_candidates(
        self, worker_name: str, labels: str, max_slots: int, limit: int, now: float
    ) -> Sequence[Any]:
        """Ready tasks this worker can take: its name, labels (a JSON object) and slots."""
        params = {
            "slots": max_slots,
            "name": worker_name,
            "labels": labels or "{}",
            "limit": limit,
            "now": now,
        }
        return named_rows(self._run("ready_candidates", params))

    def start_tasks(self, task_ids: list[int], worker_id: int, now: float) -> None:
        self._many(
            "start_task", [{"b_id": t, "b_worker": worker_id, "b_now": now} for t in task_ids]
        )

    def insert_attempts(self, rows: list[dict[str, Any]]) -> list[int]:
        return [int(self._run("insert_attempt", r).fetchone()[0]) for r in rows]

    def dep_outputs(self, task_ids: list[int]) -> Sequence[Any]:
        return named_rows(self._run("dep_outputs", {"ids": self.ids(task_ids)}))

    def any_ready(self) -> bool:
        return self._run("any_ready").fetchone() is not None

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._many("insert_event", [{k: r.get(k) for k in EVENT_KEYS} for r in rows])

    def schema_version(self) -> int:
        row = self.conn.execute(
            select(s.meta.c.value).where(s.meta.c.key == "schema_version")
        ).scalar_one()
        return int(row)

    # -- runs ------------------------------------------------------------

    def insert_run(
        self,
        *,
        name: str,
        env: dict[str, str],
        setup: str | None,
        bundle: str | None,
        source: str | None,
        total: int,
        now: float,
        final: str | None = None,
        submit_key: str | None = None,
    ) -> int:
        result = self.conn.execute(
            insert(s.runs)
            .values(
                name=name,
                submit_key=submit_key,
                state="running",
                created=now,
                env=_dumps(env),
                setup=setup,
                bundle=bundle,
                source=source,
                final=final,
                total=total,
                unfinished=total,
            )
            .returning(s.runs.c.id)
        )
        return int(result.scalar_one())

    def run(self, run_id: int) -> Row[Any] | None:
        return self.conn.execute(select(s.runs).where(s.runs.c.id == run_id)).first()

    def run_by_submit_key(self, key: str) -> int | None:
        """The run a submission with this idempotency key made, if one did."""
        found = self.conn.execute(select(s.runs.c.id).where(s.runs.c.submit_key == key)).first()
        return int(found.id) if found is not None else None

    def runs_by_id(self, run_ids: Iterable[int]) -> dict[int, Any]:
        rows = self.conn.execute(select(s.runs).where(s.runs.c.id.in_(list(run_ids))))
        return {r.id: r for r in rows}

    def latest_run(self, name: str | None = None) -> Row[Any] | None:
        q = select(s.runs).order_by(s.runs.c.id.desc()).limit(1)
        if name is not None:
            q = q.where(s.runs.c.name == name)
        return self.conn.execute(q).first()

    def list_runs(self, limit: int = 100) -> Sequence[Any]:
        return self.conn.execute(select(s.runs).order_by(s.runs.c.id.desc()).limit(limit)).all()

    def set_run_state(self, run_id: int, state: str, now: float | None) -> None:
        self.conn.execute(
            update(s.runs).where(s.runs.c.id == run_id).values(state=state, finished=now)
        )

    def reset_unfinished(self, run_id: int) -> int:
        """Recount the run's unfinished tasks from the tasks themselves."""
        n = self.conn.execute(
            select(func.count())
            .select_from(s.tasks)
            .where(s.tasks.c.run_id == run_id, s.tasks.c.state.in_(ACTIVE_STATES))
        ).scalar_one()
        self.conn.execute(update(s.runs).where(s.runs.c.id == run_id).values(unfinished=n))
        return int(n)

    def cached_count(self, run_id: int) -> int:
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(s.tasks)
                .where(s.tasks.c.run_id == run_id, s.tasks.c.cached.is_(True))
            ).scalar_one()
        )

    def state_counts(self, run_id: int) -> dict[str, int]:
        rows = self.conn.execute(
            select(s.tasks.c.state, func.count())
            .where(s.tasks.c.run_id == run_id)
            .group_by(s.tasks.c.state)
        )
        return {state: int(n) for state, n in rows}

    # -- tasks -----------------------------------------------------------

    def task_ids(self, run_id: int) -> dict[str, int]:
        ids = self.conn.execute(
            select(s.tasks.c.name, s.tasks.c.id).where(s.tasks.c.run_id == run_id)
        )
        return {name: int(i) for name, i in ids}

    def ready_roots(self, run_id: int) -> int:
        result = self.conn.execute(
            update(s.tasks)
            .where(s.tasks.c.run_id == run_id, s.tasks.c.state == "waiting", s.tasks.c.pending == 0)
            .values(state="ready")
        )
        return int(result.rowcount)

    def task(self, task_id: int) -> Row[Any] | None:
        return self.conn.execute(select(s.tasks).where(s.tasks.c.id == task_id)).first()

    def task_by_name(self, run_id: int, name: str) -> Row[Any] | None:
        return self.conn.execute(
            select(s.tasks).where(s.tasks.c.run_id == run_id, s.tasks.c.name == name)
        ).first()

    def list_tasks(self, run_id: int, states: Sequence[str] | None = None) -> Sequence[Any]:
        q = select(s.tasks).where(s.tasks.c.run_id == run_id).order_by(s.tasks.c.id)
        if states:
            q = q.where(s.tasks.c.state.in_(list(states)))
        return self.conn.execute(q).all()

    def ready_shapes(self, run_id: int, plain_slots: int) -> Sequence[Any]:
        """The run's ready tasks that some worker may not fit, by (slots, host, requires).

        Those pinned to a host, needing labels or more than ``plain_slots``:
        one row per distinct need, with how many tasks have it.
        """
        t = s.tasks.c
        return self.conn.execute(
            select(t.slots, t.host, t.requires, func.count().label("n"))
            .where(
                t.run_id == run_id,
                t.state == "ready",
                t.kind == "command",
                or_(t.host.is_not(None), t.requires.is_not(None), t.slots > plain_slots),
            )
            .group_by(t.slots, t.host, t.requires)
            .order_by(func.min(t.id))
        ).all()

    def ready_of_shape(
        self, run_id: int, slots: int, host: str | None, requires: str | None, limit: int | None
    ) -> Sequence[Any]:
        """The run's ready tasks with exactly these needs (ids and names, in order)."""
        t = s.tasks.c
        q = (
            select(t.id, t.name)
            .where(
                t.run_id == run_id,
                t.state == "ready",
                t.kind == "command",
                t.slots == slots,
                t.host.is_not_distinct_from(host),
                t.requires.is_not_distinct_from(requires),
            )
            .order_by(t.id)
        )
        return self.conn.execute(q.limit(limit) if limit is not None else q).all()

    def finish_task(
        self,
        task_id: int,
        *,
        state: str,
        now: float,
        exit_code: int | None = None,
        cause: str | None = None,
        result: Any = None,
        has_result: bool = False,
        outputs: list[str] | None = None,
        worker_id: int | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "ended": now,
            "exit_code": exit_code,
            "cause": cause,
            "has_result": has_result,
            "result": _dumps(result) if has_result else None,
            "outputs": _dumps(outputs or []),
        }
        if worker_id is not None:
            values["worker_id"] = worker_id
        self.conn.execute(update(s.tasks).where(s.tasks.c.id == task_id).values(**values))

    def retry_task(
        self, task_id: int, failures: int, exit_code: int | None, cause: str | None, ready_at: float
    ) -> None:
        self.conn.execute(
            update(s.tasks)
            .where(s.tasks.c.id == task_id)
            .values(
                state="ready",
                failures=failures,
                exit_code=exit_code,
                cause=cause,
                ready_at=ready_at,
            )
        )

    def set_task_ready(self, task_id: int) -> None:
        self.conn.execute(
            update(s.tasks).where(s.tasks.c.id == task_id).values(state="ready", ready_at=None)
        )

    def results_by_name(self, run_id: int, names: list[str]) -> dict[str, Any]:
        """The results of these tasks of the run that succeeded (None where they gave none)."""
        rows = self.conn.execute(
            select(s.tasks.c.name, s.tasks.c.has_result, s.tasks.c.result).where(
                s.tasks.c.run_id == run_id,
                s.tasks.c.name.in_(names),
                s.tasks.c.state == "succeeded",
            )
        )
        return {r.name: (json.loads(r.result) if r.has_result else None) for r in rows}

    def reducers_of(self, task_ids: list[int]) -> Sequence[Any]:
        """The waiting reductions that take any of these tasks as an operand."""
        return self.conn.execute(
            select(s.tasks.c.id, s.tasks.c.run_id, s.tasks.c.operands).where(
                s.tasks.c.id.in_(select(s.deps.c.task_id).where(s.deps.c.dep_id.in_(task_ids))),
                s.tasks.c.kind == "reduce",
                s.tasks.c.state == "waiting",
            )
        ).all()

    def ready_reductions(self, run_id: int) -> list[int]:
        rows = self.conn.execute(
            select(s.tasks.c.id).where(
                s.tasks.c.run_id == run_id, s.tasks.c.kind == "reduce", s.tasks.c.state == "ready"
            )
        )
        return [int(r[0]) for r in rows]

    def set_partial(self, task_id: int, partial: Any) -> None:
        self.conn.execute(
            update(s.tasks).where(s.tasks.c.id == task_id).values(partial=_dumps(partial))
        )

    def partials(self, run_id: int) -> dict[str, Any]:
        """Running reductions' values so far, by task name."""
        rows = self.conn.execute(
            select(s.tasks.c.name, s.tasks.c.partial).where(
                s.tasks.c.run_id == run_id,
                s.tasks.c.kind == "reduce",
                s.tasks.c.state.in_(ACTIVE_STATES),
                s.tasks.c.partial.is_not(None),
            )
        )
        return {r.name: json.loads(r.partial) for r in rows}

    def fail_downstream(self, task_id: int, cause: str, now: float) -> int:
        """Mark every task that depends on this one, directly or not, upstream_failed."""
        down = (
            select(s.deps.c.task_id).where(s.deps.c.dep_id == task_id).cte("down", recursive=True)
        )
        down = down.union(select(s.deps.c.task_id).join(down, s.deps.c.dep_id == down.c.task_id))
        result = self.conn.execute(
            update(s.tasks)
            .where(
                s.tasks.c.id.in_(select(down.c.task_id)), s.tasks.c.state.in_(("waiting", "ready"))
            )
            .values(state="upstream_failed", cause=cause, ended=now)
            .returning(s.tasks.c.id)
        )
        # rowcount is not reliable for an UPDATE with a CTE; count what came back.
        return len(result.all())

    def cancel_tasks(self, run_id: int, now: float, cause: str = "cancelled") -> int:
        result = self.conn.execute(
            update(s.tasks)
            .where(s.tasks.c.run_id == run_id, s.tasks.c.state.in_(ACTIVE_STATES))
            .values(state="cancelled", cause=cause, ended=now)
        )
        return int(result.rowcount)

    def reset_failed_tasks(self, run_id: int) -> list[int]:
        """Put the run's failed, upstream-failed and cancelled tasks back to waiting."""
        ids = [
            int(i)
            for i in self.conn.execute(
                select(s.tasks.c.id).where(
                    s.tasks.c.run_id == run_id,
                    s.tasks.c.state.in_(("failed", "upstream_failed", "cancelled")),
                )
            ).scalars()
        ]
        if not ids:
            return []
        self.conn.execute(
            update(s.tasks)
            .where(s.tasks.c.id.in_(ids))
            .values(state="waiting", failures=0, cause=None, exit_code=None, ended=None)
        )
        # Recount each reset task's unfinished dependencies.
        dep = s.tasks.alias("dep")
        undone = (
            select(func.count())
            .select_from(s.deps)
            .join(dep, s.deps.c.dep_id == dep.c.id)
            .where(s.deps.c.task_id == s.tasks.c.id, dep.c.state != "succeeded")
            .scalar_subquery()
        )
        self.conn.execute(update(s.tasks).where(s.tasks.c.id.in_(ids)).values(pending=undone))
        self.conn.execute(
            update(s.tasks)
            .where(s.tasks.c.id.in_(ids), s.tasks.c.pending == 0)
            .values(state="ready")
        )
        return ids

    def failed_count(self, run_id: int) -> int:
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(s.tasks)
                .where(s.tasks.c.run_id == run_id, s.tasks.c.state != "succeeded")
            ).scalar_one()
        )

    # -- attempts --------------------------------------------------------

    def cancel_attempts(self, run_id: int, now: float) -> int:
        result = self.conn.execute(
            update(s.attempts)
            .where(s.attempts.c.run_id == run_id, s.attempts.c.state == "running")
            .values(state="cancelled", cause="cancelled", ended=now)
        )
        return int(result.rowcount)

    def count_loss(self, task_id: int) -> int:
        """One more attempt of this task was lost; how many now."""
        return int(
            self.conn.execute(
                update(s.tasks)
                .where(s.tasks.c.id == task_id)
                .values(losses=s.tasks.c.losses + 1)
                .returning(s.tasks.c.losses)
            ).scalar_one()
        )

    def succeeded_by_key(self, keys: list[str]) -> dict[str, Any]:
        """The latest succeeded task for each definition key."""
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            rows = self.conn.execute(
                select(
                    s.tasks.c.key,
                    s.tasks.c.run_id,
                    s.tasks.c.source_run,
                    s.tasks.c.has_result,
                    s.tasks.c.result,
                    s.tasks.c.outputs,
                    s.tasks.c.exit_code,
                )
                .where(s.tasks.c.key.in_(keys[start : start + 500]), s.tasks.c.state == "succeeded")
                .order_by(s.tasks.c.id)
            )
            for r in rows:
                found[r.key] = r  # later rows win
        return found

    def running_runs(self) -> list[int]:
        rows = self.conn.execute(select(s.runs.c.id).where(s.runs.c.state == "running")).scalars()
        return [int(i) for i in rows]

    def lone_running_attempts(self, worker_id: int, assigned_before: float) -> Sequence[Any]:
        """Running tasks with exactly one attempt, on another worker, assigned before a time."""
        a2 = s.attempts.alias("a2")
        running_count = (
            select(func.count())
            .select_from(a2)
            .where(a2.c.task_id == s.tasks.c.id, a2.c.state == "running")
            .scalar_subquery()
        )
        return self.conn.execute(
            select(*_CANDIDATE_COLUMNS, s.tasks.c.host, s.tasks.c.grp, s.attempts.c.assigned)
            .join(s.attempts, s.attempts.c.task_id == s.tasks.c.id)
            .where(
                s.tasks.c.state == "running",
                s.tasks.c.speculative.is_(True),
                s.attempts.c.state == "running",
                s.attempts.c.worker_id != worker_id,
                s.attempts.c.assigned < assigned_before,
                running_count == 1,
            )
            .order_by(s.attempts.c.assigned)
            .limit(20)
        ).all()

    def group_durations(self, run_id: int, grp: str) -> list[float]:
        """How long the succeeded attempts of a run's matrix group took."""
        rows = self.conn.execute(
            select(s.attempts.c.ended - s.attempts.c.started)
            .join(s.tasks, s.tasks.c.id == s.attempts.c.task_id)
            .where(
                s.tasks.c.run_id == run_id, s.tasks.c.grp == grp, s.attempts.c.state == "succeeded"
            )
            .limit(1000)
        )
        return [float(r[0]) for r in rows if r[0] is not None]

    def interrupt_attempts(self, run_id: int, cause: str, now: float) -> None:
        self.conn.execute(
            update(s.attempts)
            .where(s.attempts.c.run_id == run_id, s.attempts.c.state == "running")
            .values(state="interrupted", cause=cause, ended=now)
        )

    def extend_leases(self, until: float) -> int:
        result = self.conn.execute(
            update(s.attempts).where(s.attempts.c.state == "running").values(lease_expires=until)
        )
        return int(result.rowcount)

    def expired_attempts(self, now: float) -> Sequence[Any]:
        """Running attempts whose lease ran out, with their task and worker."""
        return self.conn.execute(expired_attempts_query(now)).all()

    def end_attempt(self, attempt_id: int, state: str, cause: str, now: float) -> None:
        self.conn.execute(
            update(s.attempts)
            .where(s.attempts.c.id == attempt_id)
            .values(state=state, cause=cause, ended=func.coalesce(s.attempts.c.ended, now))
        )

    def others_running(self, task_id: int, attempt_id: int) -> bool:
        """Whether another attempt of this task still runs."""
        row = self.conn.execute(
            select(s.attempts.c.id)
            .where(
                s.attempts.c.task_id == task_id,
                s.attempts.c.state == "running",
                s.attempts.c.id != attempt_id,
            )
            .limit(1)
        ).first()
        return row is not None

    def supersede_others(self, task_id: int, attempt_id: int, now: float) -> None:
        """The task is done: its other running attempts lost the race."""
        self.conn.execute(
            update(s.attempts)
            .where(
                s.attempts.c.task_id == task_id,
                s.attempts.c.state == "running",
                s.attempts.c.id != attempt_id,
            )
            .values(state="superseded", cause="superseded", ended=now)
        )

    def mark_workers_lost(self, last_sync_before: float) -> None:
        self.conn.execute(
            update(s.workers)
            .where(s.workers.c.state == "active", s.workers.c.last_sync < last_sync_before)
            .values(state="lost")
        )

    def page_tasks(
        self,
        run_id: int,
        *,
        states: Sequence[str] | None,
        search: str | None,
        sort: str,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Any], int]:
        """A page of the run's tasks, filtered, searched and sorted; and how many match."""
        q = select(s.tasks).where(s.tasks.c.run_id == run_id)
        if states:
            q = q.where(s.tasks.c.state.in_(list(states)))
        if search:
            q = q.where(s.tasks.c.name.contains(search, autoescape=True))
        total = self.conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        duration = s.tasks.c.ended - s.tasks.c.started
        orders: dict[str, list[Any]] = {
            "duration": [duration.desc().nulls_last(), s.tasks.c.id],
            "-duration": [duration.asc().nulls_last(), s.tasks.c.id],
            "name": [s.tasks.c.name],
        }
        order = orders.get(sort, [s.tasks.c.id])
        rows = self.conn.execute(q.order_by(*order).limit(limit).offset(offset)).all()
        return rows, int(total)

    def group_graph(self, run_id: int) -> tuple[Sequence[Any], Sequence[Any]]:
        """The run's matrix groups with counts by state, and the edges between groups."""
        d = s.tasks.alias("d")
        groups = self.conn.execute(
            select(s.tasks.c.grp, s.tasks.c.state, func.count(), func.min(s.tasks.c.id))
            .where(s.tasks.c.run_id == run_id)
            .group_by(s.tasks.c.grp, s.tasks.c.state)
        ).all()
        edges = self.conn.execute(
            select(d.c.grp.label("source"), s.tasks.c.grp.label("target"))
            .select_from(s.deps)
            .join(s.tasks, s.tasks.c.id == s.deps.c.task_id)
            .join(d, d.c.id == s.deps.c.dep_id)
            .where(s.tasks.c.run_id == run_id)
            .group_by(d.c.grp, s.tasks.c.grp)
        ).all()
        return groups, edges

    def end_times(self, run_id: int) -> list[float]:
        rows = self.conn.execute(
            select(s.tasks.c.ended).where(
                s.tasks.c.run_id == run_id,
                s.tasks.c.state.in_(("succeeded", "failed")),
                s.tasks.c.ended.is_not(None),
                s.tasks.c.cached.is_(False),
            )
        )
        return sorted(float(r[0]) for r in rows)

    def task_events(self, task_id: int) -> Sequence[Any]:
        return self.conn.execute(
            select(s.events).where(s.events.c.task_id == task_id).order_by(s.events.c.id)
        ).all()

    def metrics_counts(self) -> dict[str, Any]:
        """Counts for /metrics: tasks and workers by state, attempts by state and cause."""
        tasks = self.conn.execute(
            select(s.tasks.c.state, func.count()).group_by(s.tasks.c.state)
        ).all()
        workers = self.conn.execute(
            select(s.workers.c.state, func.count()).group_by(s.workers.c.state)
        ).all()
        attempts = self.conn.execute(
            select(s.attempts.c.state, s.attempts.c.cause, func.count()).group_by(
                s.attempts.c.state, s.attempts.c.cause
            )
        ).all()
        return {
            "tasks": {st: int(n) for st, n in tasks},
            "workers": {st: int(n) for st, n in workers},
            "attempts": [(st, cause, int(n)) for st, cause, n in attempts],
        }

    def list_attempts(self, task_id: int) -> Sequence[Any]:
        return self.conn.execute(
            select(s.attempts, s.workers.c.name.label("worker_name"))
            .join(s.workers, s.workers.c.id == s.attempts.c.worker_id, isouter=True)
            .where(s.attempts.c.task_id == task_id)
            .order_by(s.attempts.c.id)
        ).all()

    def attempt_ref(self, attempt_id: int) -> Any:
        """An attempt's run, task name, and its own and its task's states."""
        a, t = s.attempts, s.tasks
        return self.conn.execute(
            select(
                a.c.id,
                a.c.run_id,
                a.c.state,
                t.c.name.label("task_name"),
                t.c.state.label("task_state"),
            )
            .join(t, t.c.id == a.c.task_id)
            .where(a.c.id == attempt_id)
        ).first()

    def running_attempt_ids(self, attempt_ids: list[int]) -> set[int]:
        """Those of these attempts that still run."""
        rows = self.conn.execute(
            select(s.attempts.c.id).where(
                s.attempts.c.id.in_(attempt_ids), s.attempts.c.state == "running"
            )
        )
        return {int(r.id) for r in rows}

    def last_attempts(self, run_id: int) -> dict[int, Any]:
        """The newest attempt of each task of the run, with its worker's name."""
        newest = (
            select(func.max(s.attempts.c.id))
            .where(s.attempts.c.run_id == run_id)
            .group_by(s.attempts.c.task_id)
        )
        rows = self.conn.execute(
            select(s.attempts, s.workers.c.name.label("worker_name"))
            .join(s.workers, s.workers.c.id == s.attempts.c.worker_id, isouter=True)
            .where(s.attempts.c.id.in_(newest))
        )
        return {int(r.task_id): r for r in rows}

    # -- dashboard sessions ----------------------------------------------

    def insert_session(self, key: str, csrf: str, now: float, expires: float) -> None:
        self.conn.execute(
            delete(s.sessions).where(s.sessions.c.expires <= now)  # the ended ones go
        )
        self.conn.execute(
            insert(s.sessions).values(id=key, csrf=csrf, created=now, expires=expires)
        )

    def session(self, key: str, now: float) -> Row[Any] | None:
        return self.conn.execute(
            select(s.sessions).where(s.sessions.c.id == key, s.sessions.c.expires > now)
        ).first()

    def delete_session(self, key: str) -> None:
        self.conn.execute(delete(s.sessions).where(s.sessions.c.id == key))

    # -- workers ---------------------------------------------------------

    def insert_worker(self, **values: Any) -> int:
        values["labels"] = _dumps(values.get("labels") or {})
        result = self.conn.execute(insert(s.workers).values(**values).returning(s.workers.c.id))
        return int(result.scalar_one())

    def worker(self, worker_id: int) -> Row[Any] | None:
        return self.conn.execute(select(s.workers).where(s.workers.c.id == worker_id)).first()

    def set_worker_state(self, worker_id: int, state: str) -> None:
        self.conn.execute(update(s.workers).where(s.workers.c.id == worker_id).values(state=state))

    def list_workers(self, states: Sequence[str] | None = None) -> Sequence[Any]:
        running = (
            select(func.count())
            .select_from(s.attempts)
            .where(s.attempts.c.worker_id == s.workers.c.id, s.attempts.c.state == "running")
            .scalar_subquery()
        )
        q = select(s.workers, running.label("running")).order_by(s.workers.c.id)
        if states:
            q = q.where(s.workers.c.state.in_(list(states)))
        return self.conn.execute(q).all()

    def active_workers(self) -> Sequence[Any]:
        """Name, slots and labels (JSON) of the workers connected now."""
        w = s.workers.c
        return self.conn.execute(
            select(w.name, w.slots, w.labels).where(w.state == "active").order_by(w.id)
        ).all()

    # -- bosses ----------------------------------------------------------

    def insert_boss(self, url: str, host: str, pid: int, now: float) -> int:
        result = self.conn.execute(
            insert(s.bosses)
            .values(url=url, host=host, pid=pid, state="serving", started=now, last_seen=now)
            .returning(s.bosses.c.id)
        )
        return int(result.scalar_one())

    def touch_boss(self, boss_id: int, now: float, housekeeper: bool) -> None:
        self.conn.execute(
            update(s.bosses)
            .where(s.bosses.c.id == boss_id)
            .values(last_seen=now, housekeeper=housekeeper, state="serving")
        )

    def stop_boss(self, boss_id: int, now: float) -> None:
        self.conn.execute(
            update(s.bosses)
            .where(s.bosses.c.id == boss_id)
            .values(last_seen=now, housekeeper=False, state="stopped")
        )

    def others_serving(self, boss_id: int, seen_after: float) -> bool:
        """Whether another boss was serving lately (and so kept leases renewed)."""
        row = self.conn.execute(
            select(s.bosses.c.id)
            .where(
                s.bosses.c.id != boss_id,
                s.bosses.c.state == "serving",
                s.bosses.c.last_seen > seen_after,
            )
            .limit(1)
        ).first()
        return row is not None

    def list_bosses(self, seen_after: float) -> Sequence[Any]:
        return self.conn.execute(
            select(s.bosses)
            .where(or_(s.bosses.c.state == "serving", s.bosses.c.last_seen > seen_after))
            .order_by(s.bosses.c.id)
        ).all()

    def notify_work(self, origin: str) -> None:
        """Tell other bosses that tasks became ready (on commit). SQLite has one boss."""

    # -- events ----------------------------------------------------------

    def list_events(self, run_id: int | None, limit: int = 1000) -> Sequence[Any]:
        q = select(s.events).order_by(s.events.c.id.desc()).limit(limit)
        if run_id is not None:
            q = q.where(s.events.c.run_id == run_id)
        return list(reversed(self.conn.execute(q).all()))
