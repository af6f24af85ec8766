"""How a statement is spelled: lists as one parameter, and PostgreSQL's spelling.

Statements are written once, in SQLite's spelling, with ``:name``
parameters (or ``?``, where each row of a batch is a tuple). A list (of ids, names, states) travels as one parameter, so no
statement is rendered anew for a list of another length: a JSON array that
``json_each`` reads on SQLite, an array for ``= ANY`` on PostgreSQL.
:func:`for_psycopg` turns a statement into PostgreSQL's spelling.
"""

from __future__ import annotations

import re

__all__ = ["for_psycopg", "in_list", "not_in_list"]


def in_list(param: str) -> str:
    """``IN`` the list given as parameter ``param``."""
    return f"IN (SELECT value FROM json_each(:{param}))"


def not_in_list(param: str) -> str:
    """``NOT IN`` the list given as parameter ``param``."""
    return f"NOT {in_list(param)}"


_NOT_IN = re.compile(r"NOT IN \(SELECT value FROM json_each\(:(\w+)\)\)")
_IN = re.compile(r"IN \(SELECT value FROM json_each\(:(\w+)\)\)")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def for_psycopg(sql: str, replacements: dict[str, str] | None = None) -> str:
    """A statement in SQLite's spelling as psycopg takes it on PostgreSQL.

    ``replacements``: pieces spelled differently on PostgreSQL, replaced first.
    """
    for old, new in (replacements or {}).items():
        sql = sql.replace(old, new)
    sql = _NOT_IN.sub(r"<> ALL(:\1)", sql)
    sql = _IN.sub(r"= ANY(:\1)", sql)
    sql = sql.replace("%", "%%")  # a literal % for psycopg
    return _PARAM.sub(r"%(\1)s", sql).replace("?", "%s")
