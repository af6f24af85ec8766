"""The store's layout: statements in one place, no import cycle, and a scheduler with no SQL."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from shoal.store.contract import StoreTx
from shoal.store.sql import POSTGRES, SQLITE
from shoal.store.sql.spelling import for_psycopg, in_list, not_in_list
from shoal.store.tx import Tx
from tests.memstore import MemoryTx

SRC = Path(__file__).resolve().parents[2] / "src" / "shoal"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: str) -> dict[str, Path]:
    root = SRC.parent / package.replace(".", "/")
    return {module_name(p): p for p in root.rglob("*.py")}


def test_the_store_modules_import_one_another_without_a_cycle() -> None:
    modules = package_modules("shoal.store")
    graph = {
        name: {m for m in imports_of(path) if m in modules and m != name and m != "shoal.store"}
        for name, path in modules.items()
        if name != "shoal.store"
    }
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            raise AssertionError(f"import cycle: {' -> '.join([*trail, name])}")
        state[name] = "open"
        for child in sorted(graph.get(name, ())):
            visit(child, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])
    assert graph["shoal.store.store"] >= {"shoal.store.sqlite", "shoal.store.postgres"}


@pytest.mark.parametrize("layer", ["shoal.store", "shoal.scheduler"])
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    above = {
        "shoal.store": (
            "shoal.scheduler",
            "shoal.boss",
            "shoal.cli",
            "shoal.client",
            "shoal.agent",
        ),
        "shoal.scheduler": ("shoal.boss", "shoal.cli", "shoal.client", "shoal.agent"),
    }[layer]
    for name, path in package_modules(layer).items():
        wrong = sorted(m for m in imports_of(path) if m.startswith(above))
        assert not wrong, f"{name} imports {wrong}"


def test_the_scheduler_holds_no_sql_and_knows_the_store_only_by_its_contract() -> None:
    allowed = {"shoal.store.contract", "shoal.store.rows"}
    talking = 0
    for name, path in package_modules("shoal.scheduler").items():
        used = imports_of(path)
        assert not [m for m in used if m.startswith("sqlalchemy")], name
        store = {m for m in used if m.startswith("shoal.store")}
        assert all(m in allowed or m.rsplit(".", 1)[0] in allowed for m in store), (name, store)
        if not store:
            continue
        # What talks to the store leaves its JSON columns to it, both ways (a
        # reducer command's stdin is JSON, but no column).
        talking += 1
        lines = path.read_text().splitlines()
        assert not [x for x in lines if "json.loads(" in x], name
        assert not [x for x in lines if "json.dumps(" in x and "stdin" not in x], name
    assert talking >= 6


def test_every_statement_is_named_once_and_spelled_for_postgresql() -> None:
    assert set(SQLITE) <= set(POSTGRES)
    for name, sql in POSTGRES.items():
        assert "json_each" not in sql, name  # lists travel as arrays
        assert not re.search(r"(?<![:\w]):[A-Za-z_]", sql), name  # every :param converted
        assert "?" not in sql, name


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        (f"SELECT id FROM t WHERE id {in_list('ids')}", "SELECT id FROM t WHERE id = ANY(%(ids)s)"),
        (
            f"UPDATE t SET x = 0 WHERE id {not_in_list('ids')}",
            "UPDATE t SET x = 0 WHERE id <> ALL(%(ids)s)",
        ),
        ("SELECT :a, :b::jsonb FROM t", "SELECT %(a)s, %(b)s::jsonb FROM t"),
        ("INSERT INTO t VALUES (?, ?)", "INSERT INTO t VALUES (%s, %s)"),
        ("SELECT 100 % 7", "SELECT 100 %% 7"),
    ],
)
def test_postgresqls_spelling(sqlite: str, postgres: str) -> None:
    assert for_psycopg(sqlite) == postgres


def _parameters(method: object) -> list[tuple[str, object, object]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(method).parameters.values()  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("implementation", [Tx, MemoryTx])
def test_each_store_answers_every_query_of_the_contract_alike(implementation: type) -> None:
    queries = [
        n for n, _ in inspect.getmembers(StoreTx, inspect.isfunction) if not n.startswith("_")
    ]
    assert len(queries) > 60
    for name in queries:
        method = getattr(implementation, name, None)
        assert method is not None, f"{implementation.__name__} has no {name}"
        assert _parameters(method) == _parameters(getattr(StoreTx, name)), name
