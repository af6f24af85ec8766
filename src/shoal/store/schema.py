"""The database schema: one definition for SQLite and PostgreSQL.

``SCHEMA_VERSION`` counts migrations. A fresh database is created from the
tables below and stamped with the current version; an older one is brought
forward by the functions in ``MIGRATIONS`` (index ``i`` upgrades version
``i + 1`` to ``i + 2``).

Every table, column and index that came after version 1 says so in its
``info={"since": N}``, and a column that is gone is in ``_REMOVED`` with the
version that dropped it; :func:`metadata_at` gives the schema as it was at any
version, which is how the tests prove that migrating the oldest database
gives the same schema as creating a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.sql.visitors import replacement_traverse

from shoal.store.sizes import RUN_SHARDS as RUN_SHARDS
from shoal.store.sizes import SCHEMA_VERSION as SCHEMA_VERSION
from shoal.store.sizes import TASKS_PER_SHARD as TASKS_PER_SHARD

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("created", Float, nullable=False),
    Column("finished", Float),
    Column("env", Text, nullable=False),  # JSON object
    Column("setup", Text),
    Column("bundle", String(80)),  # content hash of the bundle archive
    Column("source", Text),  # the task file it came from
    Column("final", String(200)),  # the task whose result is the run's result
    Column("total", Integer, nullable=False),
    # The client's idempotency key: a submission sent again returns this run.
    Column("submit_key", String(64), info={"since": 3}),
)
Index("ix_runs_submit_key", runs.c.submit_key, unique=True, info={"since": 3})

# Each run's count of unfinished tasks, in shards (see :mod:`shoal.store.sizes`).
run_counts = Table(
    "run_counts",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("shard", Integer, nullable=False),
    Column("unfinished", Integer, nullable=False),
    PrimaryKeyConstraint("run_id", "shard"),
    info={"since": 7},
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("spec", Text, nullable=False),  # JSON: commands, env, inputs, outputs, timeout
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("slots", Integer, nullable=False, server_default=text("1")),
    Column("host", String(200)),
    Column("requires", Text),  # JSON object of labels, or NULL
    Column("retries", Integer, nullable=False, server_default=text("0")),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("pending", Integer, nullable=False, server_default=text("0")),  # unfinished deps
    Column("n_deps", Integer, nullable=False, server_default=text("0")),
    Column("n_dependents", Integer, nullable=False, server_default=text("0")),
    Column("grp", String(200)),  # the task's entry in the file: its matrix group
    Column("losses", Integer, nullable=False, server_default=text("0")),  # attempts lost
    Column("ready_at", Float),  # a retried task waits for its back-off until then
    Column("retry_delay", Float, nullable=False, server_default=text("2")),
    Column("speculative", Boolean, nullable=False, server_default=text("true")),
    Column("key", String(64)),  # hash of the definition, for resuming a run
    Column("cached", Boolean, nullable=False, server_default=text("false")),
    Column("source_run", Integer),  # the run whose datastore folder holds the outputs
    Column("kind", String(20), nullable=False, server_default=text("'command'")),  # or 'reduce'
    Column("operands", Text),  # JSON list of the task names a reduction combines
    Column("n_reducers", Integer, nullable=False, server_default=text("0")),
    Column("partial", Text),  # JSON: a reduction's value so far
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("has_result", Boolean, nullable=False, server_default=text("false")),
    Column("result", Text),  # JSON value
    Column("outputs", Text),  # JSON list of uploaded output files
    Column("exit_code", Integer),
    Column("cause", Text),
    Column("worker_id", Integer),
    Column("started", Float),
    Column("ended", Float),
    # The spec's timeout, for the claim: a worker whose time runs out (a
    # Slurm job's walltime) takes only tasks that end before it does.
    Column("timeout", Float, info={"since": 5}),
    UniqueConstraint("run_id", "name", name="uq_tasks_run_name"),
)
Index("ix_tasks_run_state", tasks.c.run_id, tasks.c.state)
Index("ix_tasks_key", tasks.c.key)
Index(
    "ix_tasks_running",
    tasks.c.run_id,
    sqlite_where=tasks.c.state == "running",
)
Index(
    "ix_tasks_ready",
    tasks.c.priority.desc(),
    tasks.c.id,
    sqlite_where=tasks.c.state == "ready",
)

deps = Table(
    "deps",
    metadata,
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("dep_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("task_id", "dep_id"),
)
Index("ix_deps_dep", deps.c.dep_id)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("slots", Integer, nullable=False),
    Column("labels", Text, nullable=False),  # JSON object
    Column("state", String(20), nullable=False),
    Column("registered", Float, nullable=False),
    Column("last_sync", Float, nullable=False),
    Column("pid", Integer),
    Column("python", String(40)),
    Column("version", String(40)),
    Column("done", Integer, nullable=False, server_default=text("0")),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    Column("boss", Integer, info={"since": 2}),  # the boss it last synced through
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("number", Integer, nullable=False),
    Column("worker_id", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("exit_code", Integer),
    Column("cause", Text),
    Column("assigned", Float, nullable=False),
    Column("started", Float),
    Column("ended", Float),
    Column("lease_expires", Float),
    Column("log", Text),  # datastore path of the log, when there is one
)
Index("ix_attempts_task", attempts.c.task_id)
Index("ix_attempts_worker_state", attempts.c.worker_id, attempts.c.state)
Index(
    "ix_attempts_lease",
    attempts.c.lease_expires,
    sqlite_where=attempts.c.state == "running",
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("run_id", Integer),
    Column("task_id", Integer),
    Column("attempt_id", Integer),
    Column("worker_id", Integer),
    Column("detail", Text),
)
Index("ix_events_run", events.c.run_id, events.c.id)

bosses = Table(
    "bosses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(20), nullable=False),  # serving, stopped
    Column("started", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("housekeeper", Boolean, nullable=False, server_default=text("false")),
    info={"since": 2},
)


sessions = Table(
    "sessions",
    metadata,
    # sha256 of the session id the dashboard's cookie holds: the database
    # never holds what would let its reader act as the user.
    Column("id", String(64), primary_key=True),
    Column("csrf", String(64), nullable=False),  # sent back in X-Shoal-CSRF
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    # What the login's token may do: NULL for the boss's own, 'read' for a read-only one.
    Column("kind", String(20), info={"since": 6}),
    info={"since": 3},
)

machines = Table(
    "machines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Who started it (a `shoal up` keeper or a `shoal run`, by host and state
    # folder): `shoal down` stops its own machines and no one else's.
    Column("owner", String(300), nullable=False),
    Column("name", String(200), nullable=False),
    Column("pool", String(200), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("provider_id", String(200)),  # the provider's handle: a PID, an instance id
    Column("address", String(300)),
    Column("slots", Integer, nullable=False),
    Column("labels", Text, nullable=False),  # JSON object
    Column("state", String(20), nullable=False),  # requested, starting, running, stopped, failed
    Column("requested", Float, nullable=False),  # when the provider was last asked for it
    Column("since", Float, nullable=False),  # when it entered its state
    Column("price", Float),  # per hour, where the provider knows it
    Column("detail", Text),  # why it failed or stopped
    Column("worker_id", Integer),  # the worker its agent registered as, last
    UniqueConstraint("owner", "name", name="uq_machines_owner_name"),
    info={"since": 4},
)


tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # sha256 of the token: the database never holds a credential itself.
    Column("hash", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),  # read, worker, per-worker
    # A per-worker token: the worker it acts as, and the token that registered it.
    Column("worker_id", Integer),
    Column("parent", Integer),
    Column("created", Float, nullable=False),
    Column("expires", Float),
    Column("last_used", Float),
    Column("revoked", Float),
    info={"since": 6},
)
Index("ix_tokens_hash", tokens.c.hash, unique=True, info={"since": 6})
Index("ix_tokens_name", tokens.c.name, unique=True, info={"since": 6})
Index("ix_tokens_worker", tokens.c.worker_id, info={"since": 6})

# Columns dropped since version 1: (table, the column as it was, the version that dropped it).
_REMOVED: list[tuple[str, Column[Any], int]] = [
    ("runs", Column("unfinished", Integer, nullable=False), 7),
]


def _since(item: Table | Column[Any] | Index) -> int:
    return int(item.info.get("since", 1))


def _onto(expr: Any, table: Table, copy: Table) -> Any:
    """``expr`` with ``table``'s columns swapped for those of its copy."""

    def swap(node: Any) -> Any:
        return copy.c[node.name] if isinstance(node, Column) and node.table is table else None

    return replacement_traverse(expr, {}, swap)  # type: ignore[call-overload]


def metadata_at(version: int) -> MetaData:
    """The schema as version ``version`` of shoal created it."""
    old = MetaData()
    for table in metadata.sorted_tables:
        if _since(table) > version:
            continue
        columns = [c._copy() for c in table.columns if _since(c) <= version]
        columns += [
            c._copy() for name, c, gone in _REMOVED if name == table.name and version < gone
        ]
        copy = Table(table.name, old, *columns)
        for c in list(table.constraints):
            if not isinstance(c, ForeignKeyConstraint | UniqueConstraint | PrimaryKeyConstraint):
                continue
            names = [col.name for col in c.columns]
            name = c.name if isinstance(c.name, str) else None
            if isinstance(c, ForeignKeyConstraint):
                copy.append_constraint(
                    ForeignKeyConstraint(
                        names, [fk.target_fullname for fk in c.elements], ondelete=c.ondelete
                    )
                )
            elif isinstance(c, UniqueConstraint):
                copy.append_constraint(UniqueConstraint(*names, name=name))
            elif not all(col.primary_key for col in c.columns):
                copy.append_constraint(PrimaryKeyConstraint(*names, name=name))
        for index in list(table.indexes):
            if _since(index) <= version:
                Index(
                    index.name,
                    *[_onto(expr, table, copy) for expr in index.expressions],
                    unique=index.unique,
                    **{k: _onto(v, table, copy) for k, v in index.dialect_kwargs.items()},
                )
    return old


def _v1_to_v2(conn: Connection) -> None:
    """Version 2: bosses record themselves; workers name the boss they sync through."""
    bosses.create(conn)
    conn.execute(text("ALTER TABLE workers ADD COLUMN boss INTEGER"))


def _v2_to_v3(conn: Connection) -> None:
    """Version 3: submissions carry an idempotency key; dashboard sessions."""
    conn.execute(text("ALTER TABLE runs ADD COLUMN submit_key VARCHAR(64)"))
    conn.execute(text("CREATE UNIQUE INDEX ix_runs_submit_key ON runs (submit_key)"))
    # As version 3 made it: its later columns come with their own migrations.
    metadata_at(3).tables["sessions"].create(conn)


def _v3_to_v4(conn: Connection) -> None:
    """Version 4: the machines shoal starts, recorded before they are asked for."""
    machines.create(conn)


def _v4_to_v5(conn: Connection) -> None:
    """Version 5: a task's timeout as a column, which the claim filters on.

    Filled in for the tasks still to run, from their spec (those that ended
    are never claimed again).
    """
    conn.execute(text("ALTER TABLE tasks ADD COLUMN timeout FLOAT"))
    if conn.dialect.name == "postgresql":
        from_spec = "CAST(CAST(spec AS jsonb) ->> 'timeout' AS FLOAT)"
    else:
        from_spec = "CAST(json_extract(spec, '$.timeout') AS REAL)"
    conn.execute(
        text(
            f"UPDATE tasks SET timeout = {from_spec} WHERE state IN ('waiting', 'ready', 'running')"
        )
    )


def _v5_to_v6(conn: Connection) -> None:
    """Version 6: scoped credentials (read, worker, per-worker tokens) and read-only logins."""
    tokens.create(conn)
    conn.execute(text("ALTER TABLE sessions ADD COLUMN kind VARCHAR(20)"))


def _v6_to_v7(conn: Connection) -> None:
    """Version 7: a run's count of unfinished tasks in shards (``run_counts``), not one column.

    Each run's count is spread over its shards as a new run's is (SQLite's: one shard).
    """
    run_counts.create(conn)
    most = RUN_SHARDS if conn.dialect.name == "postgresql" else 1
    conn.execute(
        text(
            f"""
WITH RECURSIVE part(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM part WHERE n < {RUN_SHARDS - 1})
INSERT INTO run_counts (run_id, shard, unfinished)
SELECT runs.id, part.n, runs.unfinished / c.parts
       + CASE WHEN part.n < runs.unfinished % c.parts THEN 1 ELSE 0 END
FROM runs
JOIN (SELECT id, CASE WHEN unfinished / {TASKS_PER_SHARD} > {most} THEN {most}
                      WHEN unfinished / {TASKS_PER_SHARD} < 1 THEN 1
                      ELSE unfinished / {TASKS_PER_SHARD} END AS parts
      FROM runs) AS c ON c.id = runs.id
JOIN part ON part.n < c.parts"""
        )
    )
    conn.execute(text("ALTER TABLE runs DROP COLUMN unfinished"))


def install_routines(conn: Connection) -> None:
    """PostgreSQL's server-side functions (:mod:`shoal.store.sql.routines`); SQLite has none."""
    if conn.dialect.name == "postgresql":
        from shoal.store.sql.routines import SYNC_FUNCTION

        conn.exec_driver_sql(SYNC_FUNCTION)


def _v7_to_v8(conn: Connection) -> None:
    """Version 8: a worker's sync as one server-side function on PostgreSQL (``shoal_sync``)."""
    install_routines(conn)


# Upgrades from each older version.
MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1_to_v2,
    _v2_to_v3,
    _v3_to_v4,
    _v4_to_v5,
    _v5_to_v6,
    _v6_to_v7,
    _v7_to_v8,
]


# The partial indexes' condition on PostgreSQL, given when a PostgreSQL engine
# is made (see :func:`postgres_indexes`): naming it in the Index would load
# SQLAlchemy's PostgreSQL dialect on every SQLite start.
_PARTIAL = {
    "ix_tasks_running": tasks.c.state == "running",
    "ix_tasks_ready": tasks.c.state == "ready",
    "ix_attempts_lease": attempts.c.state == "running",
}


def postgres_indexes() -> None:
    """Give the partial indexes their condition on PostgreSQL too (idempotent)."""
    for table in (tasks, attempts):
        for index in table.indexes:
            where = _PARTIAL.get(str(index.name))
            # (Once the dialect is loaded every index has a postgresql_where, None.)
            if where is not None and index.dialect_kwargs.get("postgresql_where") is None:
                index.dialect_kwargs["postgresql_where"] = where


def sqlite_ddl() -> str:
    """The statements that create a fresh database on SQLite, as SQLAlchemy renders them.

    A boss on SQLite creates its database from these, kept as text in
    :data:`shoal.store.sql.sqlite_schema.CREATE` (a test checks they agree),
    without loading SQLAlchemy.
    """
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite.dialect()
    out = []
    for table in metadata.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    text = ";\n".join(out) + ";\n"
    return "\n".join(line.rstrip().replace("\t", "    ") for line in text.splitlines()) + "\n"
