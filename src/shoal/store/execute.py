"""How a transaction runs the named statements of :mod:`shoal.store.sql`.

Straight on the database driver (inside SQLAlchemy's transaction on
PostgreSQL), answering in the rows of :mod:`shoal.store.rows`, made by
position, or (:meth:`Statements._records`) in rows named by the statement.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any, TypeVar, cast

__all__ = ["Statements"]

_R = TypeVar("_R")
_checked: set[tuple[str, type[Any]]] = set()  # (statement, row type) whose columns were checked
_shapes: dict[tuple[str, ...], Any] = {}  # a row type for each list of column names


class Statements:
    """One transaction's connection, and how it runs a statement by name.

    A database's subclass gives the statements' spelling (``SQL``) and how
    a list travels as one parameter (:meth:`array`).
    """

    SQL: dict[str, str]

    def __init__(self, raw: Any, conn: Any = None) -> None:
        # The driver's connection, and SQLAlchemy's around it where there is one
        # (PostgreSQL, and SQLite only while its schema is brought forward).
        self.raw: Any = raw
        self.conn: Any = conn

    def array(self, values: Sequence[Any]) -> Any:
        """A list as one statement parameter."""
        raise NotImplementedError

    def _run(self, name: str, params: Any = ()) -> Any:
        return self.raw.execute(self.SQL[name], params)

    def _many(self, name: str, rows: list[Any]) -> None:
        self.raw.cursor().executemany(self.SQL[name], rows)

    def spell(self, sql: str) -> str:
        """A statement written in SQLite's spelling, as this database takes it."""
        return sql

    def execute(self, sql: str, params: Any = ()) -> Any:
        """Run a statement written in SQLite's spelling; the driver's cursor.

        For the store's modules whose statements are put together from the
        columns given (machines, tokens); the rest run by name.
        """
        return self.raw.execute(self.spell(sql), params)

    def records(self, sql: str, params: Any = ()) -> list[Any]:
        """The rows of a statement in SQLite's spelling, their fields named by its columns."""
        cur = self.execute(sql, params)
        rows = cur.fetchall()
        names = tuple(d[0] for d in cur.description)
        shape = _shapes.get(names)
        if shape is None:
            shape = _shapes.setdefault(names, collections.namedtuple("Record", names))
        return [shape._make(r) for r in rows]

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
