"""The schema's numbers, for the modules that must not load SQLAlchemy.

:mod:`shoal.store.schema` (SQLAlchemy's table definitions) re-exports them;
the statements and SQLite's transactions take them from here, so that a
boss on SQLite starts without SQLAlchemy (see :mod:`shoal.store.sqlite`).
"""

from __future__ import annotations

__all__ = ["RUN_SHARDS", "SCHEMA_VERSION", "TASKS_PER_SHARD"]

SCHEMA_VERSION = 8

# Each run's count of unfinished tasks, in shards. Every sync that finishes
# tasks takes them off one shard, so that syncs finishing tasks of one run at
# once (threads, bosses) lock different rows and commit together, instead of
# queueing on one. A run has ended when every shard is 0. A run has a shard
# for each ``TASKS_PER_SHARD`` tasks, at most ``RUN_SHARDS`` (PostgreSQL;
# SQLite, one writer at a time, has one shard a run): a sync takes its
# tasks off a shard that has as many, and a small run's few shards have
# enough almost to its end.
RUN_SHARDS = 32
TASKS_PER_SHARD = 64
