"""The queries about the machines shoal starts (the ``machines`` table, schema 4).

Functions over one transaction (:class:`~shoal.store.store.Tx`), named for
what they do; :class:`shoal.machines.Machines` is the only caller. A machine
is one row per owner and name: starting it again updates its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update

from shoal.store import schema as s
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


def machines(tx: Tx, owner: str | None = None) -> Sequence[Any]:
    """Every recorded machine (or those of one owner), oldest first."""
    q = select(s.machines).order_by(s.machines.c.id)
    if owner is not None:
        q = q.where(s.machines.c.owner == owner)
    return tx.conn.execute(q).all()


def machine(tx: Tx, owner: str, name: str) -> Row[Any] | None:
    """The machine ``name`` of ``owner``, if recorded."""
    m = s.machines.c
    return tx.conn.execute(select(s.machines).where(m.owner == owner, m.name == name)).first()


def insert_machine(tx: Tx, owner: str, name: str, values: dict[str, Any]) -> None:
    tx.conn.execute(
        insert(s.machines).values(
            owner=owner, name=name, **{k: v for k, v in values.items() if k in FIELDS}
        )
    )


def update_machine(tx: Tx, machine_id: int, values: dict[str, Any]) -> None:
    tx.conn.execute(
        update(s.machines)
        .where(s.machines.c.id == machine_id)
        .values(**{k: v for k, v in values.items() if k in FIELDS})
    )


def agents_named(tx: Tx, names: Sequence[str]) -> Sequence[Any]:
    """The workers registered under these names, oldest first."""
    if not names:
        return []
    w = s.workers.c
    return tx.conn.execute(
        select(w.id, w.name, w.state, w.registered)
        .where(w.name.in_(sorted(set(names))))
        .order_by(w.id)
    ).all()


def goodbyes(tx: Tx, worker_ids: Sequence[int]) -> dict[int, str]:
    """Why these workers said they stopped (their goodbye's reason), where they said."""
    if not worker_ids:
        return {}
    e = s.events.c
    rows = tx.conn.execute(
        select(e.worker_id, e.detail)
        .where(e.kind == "worker_stopped", e.worker_id.in_(sorted(set(worker_ids))))
        .order_by(e.id)
    ).all()
    return {int(r.worker_id): str(r.detail) for r in rows if r.detail}


def machine_of_workers(tx: Tx, worker_ids: Sequence[int]) -> dict[int, str]:
    """The machine each of these workers runs on, for those that run on one shoal started."""
    if not worker_ids:
        return {}
    m = s.machines.c
    rows = tx.conn.execute(
        select(m.worker_id, m.name).where(m.worker_id.in_(sorted(set(worker_ids)))).order_by(m.id)
    ).all()
    return {int(r.worker_id): str(r.name) for r in rows}
