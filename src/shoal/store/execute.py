"""How a transaction runs the named statements of :mod:`shoal.store.sql`.

Straight on the database driver, inside SQLAlchemy's transaction, answering
in the rows of :mod:`shoal.store.rows`, made by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Connection

__all__ = ["Statements"]

_R = TypeVar("_R")
_checked: set[tuple[str, type[Any]]] = set()  # (statement, row type) whose columns were checked


class Statements:
    """One transaction's connection, and how it runs a statement by name.

    A database's subclass gives the statements' spelling (``SQL``) and how
    a list travels as one parameter (:meth:`array`).
    """

    SQL: dict[str, str]

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw: Any = conn.connection.driver_connection

    def array(self, values: Sequence[Any]) -> Any:
        """A list as one statement parameter."""
        raise NotImplementedError

    def _run(self, name: str, params: Any = ()) -> Any:
        return self.raw.execute(self.SQL[name], params)

    def _many(self, name: str, rows: list[Any]) -> None:
        self.raw.cursor().executemany(self.SQL[name], rows)

    def _rows(self, name: str, shape: type[_R], params: Any = ()) -> list[_R]:
        sql = self.SQL[name]
        cur = self.raw.execute(sql, params)
        rows = cur.fetchall()  # first: in a batch, the columns are known once the rows came
        if (sql, shape) not in _checked:
            # Rows are made by position: the statement must name its columns as the type does.
            names = tuple(d[0] for d in cur.description)
            fields = cast(Any, shape)._fields
            if names != fields:
                raise AssertionError(f"statement {name} gives {names}, {shape.__name__} {fields}")
            _checked.add((sql, shape))
        make = cast(Any, shape)._make
        return [make(r) for r in rows]

    def _affected(self, name: str, params: Any = ()) -> int:
        """Run a statement; how many rows it changed."""
        return int(self._run(name, params).rowcount)

    def _row(self, name: str, shape: type[_R], params: Any = ()) -> _R | None:
        rows = self._rows(name, shape, params)
        return rows[0] if rows else None

    def _value(self, name: str, params: Any = ()) -> Any:
        row = self._run(name, params).fetchone()
        return row[0] if row is not None else None

    def _column(self, name: str, params: Any = ()) -> list[Any]:
        return [r[0] for r in self._run(name, params).fetchall()]
