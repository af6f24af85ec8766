"""The queries about credentials (the ``tokens`` table, schema 6).

Functions over one transaction (:class:`~shoal.store.tx.Tx`), named for
what they do; :class:`shoal.boss.tokens.Tokens` is the only caller. A row
holds a token's sha256, never the token. Names are unique: a revoked
token's row gives its name up to the next token added under it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shoal.datastore.layout import bundle_path, output_prefix
from shoal.store.tx import Tx

__all__ = [
    "end_sessions",
    "held_reads",
    "insert_token",
    "live_token_named",
    "purge_tokens",
    "revoke_token",
    "revoke_worker_tokens",
    "token_by_hash",
    "tokens",
    "touch_token",
]

# Per-worker tokens, which every registration makes.
PER_WORKER = "per-worker"


# What a caller may set on a token's row (the rest is the store's).
FIELDS = (
    "hash",
    "name",
    "kind",
    "worker_id",
    "parent",
    "created",
    "expires",
    "last_used",
    "revoked",
)


def insert_token(tx: Tx, values: dict[str, Any]) -> int:
    """Record a token (its hash, name, kind, …), replacing a revoked one of that name."""
    given = {k: v for k, v in values.items() if k in FIELDS}
    tx.execute(
        "DELETE FROM tokens WHERE name = :name AND revoked IS NOT NULL", {"name": values["name"]}
    )
    [row] = tx.records(
        f"INSERT INTO tokens ({', '.join(given)}) VALUES ({', '.join(':' + c for c in given)}) "
        "RETURNING id",
        given,
    )
    return int(row.id)


def token_by_hash(tx: Tx, digest: str) -> Any:
    """A token's row by its hash, with its worker's state and whether its parent was revoked."""
    rows = tx.records(
        """
SELECT t.id, t.name, t.kind, t.worker_id, t.parent, t.expires, t.revoked, t.last_used,
       w.state AS worker_state, parent.revoked AS parent_revoked
FROM tokens t
LEFT OUTER JOIN workers w ON w.id = t.worker_id
LEFT OUTER JOIN tokens parent ON parent.id = t.parent
WHERE t.hash = :hash""",
        {"hash": digest},
    )
    return rows[0] if rows else None


def live_token_named(tx: Tx, name: str) -> bool:
    """Whether a token of this name is there and not revoked."""
    found = tx.records(
        "SELECT id FROM tokens WHERE name = :name AND revoked IS NULL", {"name": name}
    )
    return bool(found)


def touch_token(tx: Tx, token_id: int, now: float) -> None:
    tx.execute("UPDATE tokens SET last_used = :now WHERE id = :id", {"now": now, "id": token_id})


def tokens(tx: Tx, *, per_worker: bool = False) -> Sequence[Any]:
    """The tokens, oldest first; those of registered workers only when asked."""
    columns = "id, name, kind, worker_id, created, expires, last_used, revoked"
    if per_worker:
        return tx.records(f"SELECT {columns} FROM tokens ORDER BY id")
    return tx.records(
        f"SELECT {columns} FROM tokens WHERE kind != :kind ORDER BY id", {"kind": PER_WORKER}
    )


def revoke_token(tx: Tx, name: str, now: float) -> Any:
    """Revoke the token so named (and the per-worker tokens it registered); its row, or None."""
    rows = tx.records("SELECT id, kind, revoked FROM tokens WHERE name = :name", {"name": name})
    if not rows:
        return None
    row = rows[0]
    tx.execute(
        "UPDATE tokens SET revoked = :now WHERE (id = :id OR parent = :id) AND revoked IS NULL",
        {"now": now, "id": row.id},
    )
    return row


def end_sessions(tx: Tx, kind: str) -> None:
    """End the dashboard sessions a token logged in (a revoked read token's)."""
    tx.execute("DELETE FROM sessions WHERE kind = :kind", {"kind": kind})


def revoke_worker_tokens(tx: Tx, worker_id: int, now: float) -> None:
    """Revoke the tokens of a worker that stopped or is gone."""
    tx.execute(
        "UPDATE tokens SET revoked = :now WHERE worker_id = :worker_id AND revoked IS NULL",
        {"now": now, "worker_id": worker_id},
    )


def purge_tokens(tx: Tx, before: float) -> None:
    """Forget per-worker tokens revoked or expired before ``before``: nobody lists them."""
    tx.execute(
        "DELETE FROM tokens WHERE kind = :kind "
        "AND (revoked < :before OR (expires IS NOT NULL AND expires < :before))",
        {"kind": PER_WORKER, "before": before},
    )


def held_reads(tx: Tx, worker_id: int) -> set[str]:
    """The datastore paths the attempts a worker runs need: their inputs and their bundles.

    The same paths its sync handed it (:func:`shoal.scheduler.sync`): each
    task's ``inputs``, its dependencies' outputs, its run's bundle.
    """
    rows = tx.records(
        """
SELECT t.id, t.spec, t.n_deps, r.bundle
FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN runs r ON r.id = a.run_id
WHERE a.worker_id = :worker_id AND a.state = 'running'""",
        {"worker_id": worker_id},
    )
    paths: set[str] = set()
    with_deps = []
    for row in rows:
        spec = json.loads(row.spec)
        paths.update(str(i) for i in spec.get("inputs") or [])
        if row.bundle:
            paths.add(bundle_path(row.bundle))
        if row.n_deps:
            with_deps.append(int(row.id))
    if with_deps:
        for d in tx.dep_outputs(with_deps):
            prefix = output_prefix(d.run_id, d.name)
            paths.update(prefix + name for name in d.outputs)
    return paths
