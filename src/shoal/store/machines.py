"""The queries about the machines shoal starts (the ``machines`` table, schema 4).

Functions over one transaction (:class:`~shoal.store.store.Tx`), named for
what they do; :class:`shoal.machines.Machines` is the only caller. A machine
is one row per owner and name: starting it again updates its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoal.store.sql.spelling import in_list
from shoal.store.tx import Tx

__all__ = [
    "agents_named",
    "goodbyes",
    "insert_machine",
    "machine",
    "machine_of_workers",
    "machines",
    "update_machine",
]

# What a caller may set on a machine's row (the rest is the store's).
FIELDS = (
    "pool",
    "provider",
    "provider_id",
    "address",
    "slots",
    "labels",
    "state",
    "requested",
    "since",
    "price",
    "detail",
    "worker_id",
)


_COLUMNS = (
    "id, owner, name, pool, provider, provider_id, address, slots, labels, state, requested, "
    "since, price, detail, worker_id"
)


def machines(tx: Tx, owner: str | None = None) -> Sequence[Any]:
    """Every recorded machine (or those of one owner), oldest first."""
    if owner is None:
        return tx.records(f"SELECT {_COLUMNS} FROM machines ORDER BY id")
    return tx.records(
        f"SELECT {_COLUMNS} FROM machines WHERE owner = :owner ORDER BY id", {"owner": owner}
    )


def machine(tx: Tx, owner: str, name: str) -> Any | None:
    """The machine ``name`` of ``owner``, if recorded."""
    rows = tx.records(
        f"SELECT {_COLUMNS} FROM machines WHERE owner = :owner AND name = :name",
        {"owner": owner, "name": name},
    )
    return rows[0] if rows else None


def insert_machine(tx: Tx, owner: str, name: str, values: dict[str, Any]) -> None:
    given = {k: v for k, v in values.items() if k in FIELDS}
    columns = ["owner", "name", *given]
    tx.execute(
        f"INSERT INTO machines ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)})",
        {"owner": owner, "name": name, **given},
    )


def update_machine(tx: Tx, machine_id: int, values: dict[str, Any]) -> None:
    given = {k: v for k, v in values.items() if k in FIELDS}
    if not given:
        return
    tx.execute(
        f"UPDATE machines SET {', '.join(f'{c} = :{c}' for c in given)} WHERE id = :machine_id",
        {**given, "machine_id": machine_id},
    )


def agents_named(tx: Tx, names: Sequence[str]) -> Sequence[Any]:
    """The workers registered under these names, oldest first."""
    if not names:
        return []
    return tx.records(
        f"SELECT id, name, state, registered FROM workers WHERE name {in_list('names')} "
        "ORDER BY id",
        {"names": tx.array(sorted(set(names)))},
    )


def goodbyes(tx: Tx, worker_ids: Sequence[int]) -> dict[int, str]:
    """Why these workers said they stopped (their goodbye's reason), where they said."""
    if not worker_ids:
        return {}
    rows = tx.records(
        "SELECT worker_id, detail FROM events WHERE kind = 'worker_stopped' "
        f"AND worker_id {in_list('ids')} ORDER BY id",
        {"ids": tx.array(sorted(set(worker_ids)))},
    )
    return {int(r.worker_id): str(r.detail) for r in rows if r.detail}


def machine_of_workers(tx: Tx, worker_ids: Sequence[int]) -> dict[int, str]:
    """The machine each of these workers runs on, for those that run on one shoal started."""
    if not worker_ids:
        return {}
    rows = tx.records(
        f"SELECT worker_id, name FROM machines WHERE worker_id {in_list('ids')} ORDER BY id",
        {"ids": tx.array(sorted(set(worker_ids)))},
    )
    return {int(r.worker_id): str(r.name) for r in rows}
