"""The database: schema, migrations and every query shoal makes."""

from shoal.store.store import ACTIVE_STATES, TERMINAL_STATES, Store, Tx, database_url

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "Store", "Tx", "database_url"]
