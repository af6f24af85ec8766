"""The SQL store makes its rows by position: a statement that names other columns is refused."""

from __future__ import annotations

import pytest

from shoal.store import Store
from shoal.store.sql import SQLITE
from shoal.store.sqlite import SqliteTx


class Misspelled(SqliteTx):
    SQL = {**SQLITE, "run": "SELECT id, state, name FROM runs WHERE id = :id"}


def test_a_statement_whose_columns_are_not_its_rows_fields_is_refused() -> None:
    store = Store("sqlite://")
    try:
        with store.transaction() as tx:
            run_id = tx.insert_run(
                name="r", env={}, setup=None, bundle=None, source=None, total=0, now=1.0
            )
            assert tx.run(run_id) is not None
            wrong = Misspelled(tx.raw)
            with pytest.raises(
                AssertionError, match="statement run gives \\('id', 'state', 'name'\\)"
            ):
                wrong.run(run_id)
    finally:
        store.close()
