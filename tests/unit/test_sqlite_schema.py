"""SQLite's database is made from text kept beside the schema: the two must agree."""

from __future__ import annotations

import subprocess
import sys

from shoal.store import schema
from shoal.store.sql.sqlite_schema import CREATE


def test_the_kept_sqlite_statements_are_what_the_schema_renders() -> None:
    assert CREATE.lstrip("\n") == schema.sqlite_ddl(), (
        "the schema changed: write the new statements into src/shoal/store/sql/sqlite_schema.py "
        "(its docstring says how)"
    )


def test_a_boss_on_sqlite_loads_no_sqlalchemy() -> None:
    # SQLAlchemy takes a tenth of a second to load, on the way of every `shoal run`.
    code = (
        "import sys, tempfile, pathlib\n"
        "from shoal.store import Store\n"
        "import shoal.boss.server\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    store = Store(pathlib.Path(d) / 'shoal.db')\n"
        "    with store.transaction() as tx:\n"
        "        tx.insert_run(name='r', env={}, setup=None, bundle=None, source=None,"
        " total=0, now=1.0)\n"
        "    store.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
