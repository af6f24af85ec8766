"""The statements that create a fresh shoal database on SQLite (schema version 8).

Rendered by SQLAlchemy from :mod:`shoal.store.schema` (``schema.sqlite_ddl()``)
and kept here as text, so that a boss on SQLite creates its database without
loading SQLAlchemy; ``tests/unit/test_sqlite_schema.py`` checks the two agree.
After a change to the schema, write the new text here:

    python -c "from shoal.store import schema; print(schema.sqlite_ddl(), end='')"
"""

from __future__ import annotations

__all__ = ["CREATE"]

CREATE = """
CREATE TABLE bosses (
    id INTEGER NOT NULL,
    url VARCHAR(200) NOT NULL,
    host VARCHAR(200) NOT NULL,
    pid INTEGER NOT NULL,
    state VARCHAR(20) NOT NULL,
    started FLOAT NOT NULL,
    last_seen FLOAT NOT NULL,
    housekeeper BOOLEAN DEFAULT false NOT NULL,
    PRIMARY KEY (id)
);
CREATE TABLE events (
    id INTEGER NOT NULL,
    time FLOAT NOT NULL,
    kind VARCHAR(40) NOT NULL,
    run_id INTEGER,
    task_id INTEGER,
    attempt_id INTEGER,
    worker_id INTEGER,
    detail TEXT,
    PRIMARY KEY (id)
);
CREATE INDEX ix_events_run ON events (run_id, id);
CREATE TABLE machines (
    id INTEGER NOT NULL,
    owner VARCHAR(300) NOT NULL,
    name VARCHAR(200) NOT NULL,
    pool VARCHAR(200) NOT NULL,
    provider VARCHAR(40) NOT NULL,
    provider_id VARCHAR(200),
    address VARCHAR(300),
    slots INTEGER NOT NULL,
    labels TEXT NOT NULL,
    state VARCHAR(20) NOT NULL,
    requested FLOAT NOT NULL,
    since FLOAT NOT NULL,
    price FLOAT,
    detail TEXT,
    worker_id INTEGER,
    PRIMARY KEY (id),
    CONSTRAINT uq_machines_owner_name UNIQUE (owner, name)
);
CREATE TABLE meta (
    "key" VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY ("key")
);
CREATE TABLE runs (
    id INTEGER NOT NULL,
    name VARCHAR(200) NOT NULL,
    state VARCHAR(20) NOT NULL,
    created FLOAT NOT NULL,
    finished FLOAT,
    env TEXT NOT NULL,
    setup TEXT,
    bundle VARCHAR(80),
    source TEXT,
    final VARCHAR(200),
    total INTEGER NOT NULL,
    submit_key VARCHAR(64),
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_runs_submit_key ON runs (submit_key);
CREATE TABLE sessions (
    id VARCHAR(64) NOT NULL,
    csrf VARCHAR(64) NOT NULL,
    created FLOAT NOT NULL,
    expires FLOAT NOT NULL,
    kind VARCHAR(20),
    PRIMARY KEY (id)
);
CREATE TABLE tokens (
    id INTEGER NOT NULL,
    hash VARCHAR(64) NOT NULL,
    name VARCHAR(200) NOT NULL,
    kind VARCHAR(20) NOT NULL,
    worker_id INTEGER,
    parent INTEGER,
    created FLOAT NOT NULL,
    expires FLOAT,
    last_used FLOAT,
    revoked FLOAT,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_tokens_hash ON tokens (hash);
CREATE UNIQUE INDEX ix_tokens_name ON tokens (name);
CREATE INDEX ix_tokens_worker ON tokens (worker_id);
CREATE TABLE workers (
    id INTEGER NOT NULL,
    name VARCHAR(200) NOT NULL,
    host VARCHAR(200) NOT NULL,
    slots INTEGER NOT NULL,
    labels TEXT NOT NULL,
    state VARCHAR(20) NOT NULL,
    registered FLOAT NOT NULL,
    last_sync FLOAT NOT NULL,
    pid INTEGER,
    python VARCHAR(40),
    version VARCHAR(40),
    done INTEGER DEFAULT 0 NOT NULL,
    failed INTEGER DEFAULT 0 NOT NULL,
    boss INTEGER,
    PRIMARY KEY (id)
);
CREATE TABLE run_counts (
    run_id INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    unfinished INTEGER NOT NULL,
    PRIMARY KEY (run_id, shard),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE TABLE tasks (
    id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    name VARCHAR(200) NOT NULL,
    state VARCHAR(20) NOT NULL,
    spec TEXT NOT NULL,
    priority INTEGER DEFAULT 0 NOT NULL,
    slots INTEGER DEFAULT 1 NOT NULL,
    host VARCHAR(200),
    requires TEXT,
    retries INTEGER DEFAULT 0 NOT NULL,
    failures INTEGER DEFAULT 0 NOT NULL,
    pending INTEGER DEFAULT 0 NOT NULL,
    n_deps INTEGER DEFAULT 0 NOT NULL,
    n_dependents INTEGER DEFAULT 0 NOT NULL,
    grp VARCHAR(200),
    losses INTEGER DEFAULT 0 NOT NULL,
    ready_at FLOAT,
    retry_delay FLOAT DEFAULT 2 NOT NULL,
    speculative BOOLEAN DEFAULT true NOT NULL,
    "key" VARCHAR(64),
    cached BOOLEAN DEFAULT false NOT NULL,
    source_run INTEGER,
    kind VARCHAR(20) DEFAULT 'command' NOT NULL,
    operands TEXT,
    n_reducers INTEGER DEFAULT 0 NOT NULL,
    partial TEXT,
    attempts INTEGER DEFAULT 0 NOT NULL,
    has_result BOOLEAN DEFAULT false NOT NULL,
    result TEXT,
    outputs TEXT,
    exit_code INTEGER,
    cause TEXT,
    worker_id INTEGER,
    started FLOAT,
    ended FLOAT,
    timeout FLOAT,
    PRIMARY KEY (id),
    CONSTRAINT uq_tasks_run_name UNIQUE (run_id, name),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_tasks_key ON tasks ("key");
CREATE INDEX ix_tasks_ready ON tasks (priority DESC, id) WHERE state = 'ready';
CREATE INDEX ix_tasks_run_state ON tasks (run_id, state);
CREATE INDEX ix_tasks_running ON tasks (run_id) WHERE state = 'running';
CREATE TABLE attempts (
    id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    state VARCHAR(20) NOT NULL,
    exit_code INTEGER,
    cause TEXT,
    assigned FLOAT NOT NULL,
    started FLOAT,
    ended FLOAT,
    lease_expires FLOAT,
    log TEXT,
    PRIMARY KEY (id),
    FOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE
);
CREATE INDEX ix_attempts_lease ON attempts (lease_expires) WHERE state = 'running';
CREATE INDEX ix_attempts_task ON attempts (task_id);
CREATE INDEX ix_attempts_worker_state ON attempts (worker_id, state);
CREATE TABLE deps (
    task_id INTEGER NOT NULL,
    dep_id INTEGER NOT NULL,
    PRIMARY KEY (task_id, dep_id),
    FOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE,
    FOREIGN KEY(dep_id) REFERENCES tasks (id) ON DELETE CASCADE
);
CREATE INDEX ix_deps_dep ON deps (dep_id);
"""
