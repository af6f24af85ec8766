"""The machines shoal starts, as the database records them.

A launcher (``shoal run``, or the keeper of ``shoal up``) records each
machine before it asks a provider for it (state ``requested``), then as it
goes (``starting``, ``running``, ``stopped``, ``failed``), so that ``shoal
machines`` lists them and ``shoal down`` finds them again after a crash.
Each launcher records under its own *owner* name and stops only its own.

The boss's clock stamps every change: ``requested`` when the provider is
asked, ``since`` when the state changes. A machine's *agent* is the worker
that registered under the machine's name since it was requested; its
goodbye's reason says why it stopped. Nothing here asks a provider anything.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shoal.exceptions import BadInput
from shoal.launch.contract import MACHINE_STATES
from shoal.store import Store
from shoal.store import machines as q

__all__ = ["MAX_MACHINES", "Machines"]

# The most machines one request may record.
MAX_MACHINES = 10_000
_TEXT = {"name": 200, "pool": 200, "provider": 40, "provider_id": 200, "address": 300}
MAX_DETAIL = 2000
MAX_LABELS = 64 * 1024
_INT_LIMIT = 2**63


class Machines:
    """Record machines and read them back, with the agent each one runs."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def record(self, owner: str, machines: Sequence[Mapping[str, Any]]) -> int:
        """Insert or update these machines of ``owner`` (by name); how many."""
        owner = _text(owner, "owner", 300, required=True)
        if len(machines) > MAX_MACHINES:
            raise BadInput(f"at most {MAX_MACHINES} machines at once, not {len(machines)}")
        rows = [_checked(m, i) for i, m in enumerate(machines)]
        now = self.clock()
        with self.store.transaction() as tx:
            for name, values in rows:
                before = q.machine(tx, owner, name)
                if before is None or before.state != values["state"]:
                    values["since"] = now
                if values["state"] == "requested" or before is None:
                    values["requested"] = now
                if before is None:
                    values.setdefault("labels", "{}")
                    values.setdefault("slots", 1)
                    q.insert_machine(tx, owner, name, values)
                else:
                    q.update_machine(tx, before.id, values)
        return len(rows)

    def view(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every recorded machine (or ``owner``'s), each with its agent if one registered."""
        with self.store.read() as tx:
            rows = q.machines(tx, owner)
            agents = q.agents_named(tx, [r.name for r in rows])
            reasons = q.goodbyes(tx, [a.id for a in agents])
        out = []
        for r in rows:
            # The latest worker under its name since it was last requested.
            mine = [a for a in agents if a.name == r.name and a.registered >= r.requested]
            agent = None
            if mine:
                a = mine[-1]
                agent = {
                    "worker_id": a.id,
                    "state": a.state,
                    "registered": a.registered,
                    "reason": reasons.get(a.id, ""),
                }
            out.append(
                {
                    "name": r.name,
                    "owner": r.owner,
                    "pool": r.pool,
                    "provider": r.provider,
                    "provider_id": r.provider_id or "",
                    "address": r.address or "",
                    "slots": r.slots,
                    "labels": json.loads(r.labels or "{}"),
                    "state": r.state,
                    "since": r.since,
                    "requested": r.requested,
                    "price": r.price,
                    "detail": r.detail or "",
                    "agent": agent,
                }
            )
        return out

    def name_workers(self, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The workers view with the machine each worker runs on (None: not one shoal started)."""
        with self.store.read() as tx:
            by_id = q.machine_of_workers(tx, [int(w["id"]) for w in workers])
        return [{**w, "machine": by_id.get(int(w["id"]))} for w in workers]


def _text(value: Any, key: str, limit: int, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if (
        not isinstance(value, str)
        or (required and not value.strip())
        or len(value) > limit
        or "\x00" in value  # PostgreSQL's text holds no NUL
    ):
        raise BadInput(
            f"a machine's '{key}' must be a {'non-empty ' if required else ''}"
            f"string of at most {limit} characters"
        )
    return value


def _whole(value: Any, key: str, low: int = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < _INT_LIMIT:
        raise BadInput(f"a machine's '{key}' must be a whole number from {low} below 2^63")
    return value


def _checked(data: Any, i: int) -> tuple[str, dict[str, Any]]:
    """A machine's name and the columns to store, from what a launcher sent."""
    if not isinstance(data, Mapping):
        raise BadInput(f"machine #{i + 1} must be an object")
    values: dict[str, Any] = {}
    for key, limit in _TEXT.items():
        required = key in ("name", "pool", "provider")
        if key in data or required:
            values[key] = _text(data.get(key), key, limit, required=required)
    name = values.pop("name")
    state = data.get("state")
    if state not in MACHINE_STATES:
        raise BadInput(f"machine '{name}': 'state' must be one of {', '.join(MACHINE_STATES)}")
    values["state"] = state
    if "slots" in data:
        values["slots"] = _whole(data["slots"], "slots") or 0
    if "labels" in data:
        labels = data["labels"]
        encoded = json.dumps(labels) if isinstance(labels, dict) else ""
        if not isinstance(labels, dict) or len(encoded) > MAX_LABELS:
            raise BadInput(f"machine '{name}': 'labels' must be an object under 64 KiB")
        values["labels"] = encoded
    if "price" in data:
        price = data["price"]
        if price is not None and (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or price < 0
        ):
            raise BadInput(f"machine '{name}': 'price' must be a number of at least 0, or null")
        values["price"] = price
    if "detail" in data:
        detail = data["detail"]
        if detail is not None and not isinstance(detail, str):
            raise BadInput(f"machine '{name}': 'detail' must be a string")
        values["detail"] = (detail or "")[:MAX_DETAIL].replace("\x00", "")
    agent = data.get("agent")
    if isinstance(agent, Mapping) and "worker_id" in agent:
        values["worker_id"] = _whole(agent["worker_id"], "agent.worker_id")
    return name, values
