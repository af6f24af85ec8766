"""The database: schema, migrations and every query shoal makes.

:class:`Store` opens a database (SQLite or PostgreSQL) and runs
transactions; :class:`Tx` is one, with every query by name
(:mod:`shoal.store.sql` holds the statements). What a scheduler may ask of a
store is :class:`~shoal.store.contract.StoreLike`: the SQL store is one, the
tests' in-memory store another. What goes in and out is in
:mod:`shoal.store.rows`.
"""

from shoal.store.contract import StoreLike, StoreTx
from shoal.store.rows import ACTIVE_STATES
from shoal.store.store import Store, database_url
from shoal.store.tx import Tx

__all__ = ["ACTIVE_STATES", "Store", "StoreLike", "StoreTx", "Tx", "database_url"]
