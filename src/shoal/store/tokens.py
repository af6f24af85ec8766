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

from sqlalchemy import and_, delete, insert, or_, select, update

from shoal.datastore.layout import bundle_path, output_prefix
from shoal.store import schema as s
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


def insert_token(tx: Tx, values: dict[str, Any]) -> int:
    """Record a token (its hash, name, kind, …), replacing a revoked one of that name."""
    t = s.tokens.c
    tx.conn.execute(delete(s.tokens).where(t.name == values["name"], t.revoked.is_not(None)))
    return int(tx.conn.execute(insert(s.tokens).values(**values).returning(t.id)).scalar_one())


def token_by_hash(tx: Tx, digest: str) -> Any:
    """A token's row by its hash, with its worker's state and whether its parent was revoked."""
    t = s.tokens.alias("t")
    parent = s.tokens.alias("parent")
    w = s.workers
    q = (
        select(
            t.c.id,
            t.c.name,
            t.c.kind,
            t.c.worker_id,
            t.c.parent,
            t.c.expires,
            t.c.revoked,
            t.c.last_used,
            w.c.state.label("worker_state"),
            parent.c.revoked.label("parent_revoked"),
        )
        .select_from(
            t.outerjoin(w, w.c.id == t.c.worker_id).outerjoin(parent, parent.c.id == t.c.parent)
        )
        .where(t.c.hash == digest)
    )
    return tx.conn.execute(q).first()


def live_token_named(tx: Tx, name: str) -> bool:
    """Whether a token of this name is there and not revoked."""
    t = s.tokens.c
    row = tx.conn.execute(select(t.id).where(t.name == name, t.revoked.is_(None))).first()
    return row is not None


def touch_token(tx: Tx, token_id: int, now: float) -> None:
    tx.conn.execute(update(s.tokens).where(s.tokens.c.id == token_id).values(last_used=now))


def tokens(tx: Tx, *, per_worker: bool = False) -> Sequence[Any]:
    """The tokens, oldest first; those of registered workers only when asked."""
    t = s.tokens.c
    q = select(
        t.id, t.name, t.kind, t.worker_id, t.created, t.expires, t.last_used, t.revoked
    ).order_by(t.id)
    if not per_worker:
        q = q.where(t.kind != PER_WORKER)
    return tx.conn.execute(q).all()


def revoke_token(tx: Tx, name: str, now: float) -> Any:
    """Revoke the token so named (and the per-worker tokens it registered); its row, or None."""
    t = s.tokens.c
    row = tx.conn.execute(select(t.id, t.kind, t.revoked).where(t.name == name)).first()
    if row is None:
        return None
    tx.conn.execute(
        update(s.tokens)
        .where(or_(t.id == row.id, t.parent == row.id), t.revoked.is_(None))
        .values(revoked=now)
    )
    return row


def end_sessions(tx: Tx, kind: str) -> None:
    """End the dashboard sessions a token logged in (a revoked read token's)."""
    tx.conn.execute(delete(s.sessions).where(s.sessions.c.kind == kind))


def revoke_worker_tokens(tx: Tx, worker_id: int, now: float) -> None:
    """Revoke the tokens of a worker that stopped or is gone."""
    t = s.tokens.c
    tx.conn.execute(
        update(s.tokens).where(t.worker_id == worker_id, t.revoked.is_(None)).values(revoked=now)
    )


def purge_tokens(tx: Tx, before: float) -> None:
    """Forget per-worker tokens revoked or expired before ``before``: nobody lists them."""
    t = s.tokens.c
    tx.conn.execute(
        delete(s.tokens).where(
            t.kind == PER_WORKER,
            or_(t.revoked < before, and_(t.expires.is_not(None), t.expires < before)),
        )
    )


def held_reads(tx: Tx, worker_id: int) -> set[str]:
    """The datastore paths the attempts a worker runs need: their inputs and their bundles.

    The same paths its sync handed it (:func:`shoal.scheduler.sync`): each
    task's ``inputs``, its dependencies' outputs, its run's bundle.
    """
    a, t, r = s.attempts.c, s.tasks.c, s.runs.c
    rows = tx.conn.execute(
        select(t.id, t.spec, t.n_deps, r.bundle)
        .select_from(s.attempts.join(s.tasks, t.id == a.task_id).join(s.runs, r.id == a.run_id))
        .where(a.worker_id == worker_id, a.state == "running")
    ).all()
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
