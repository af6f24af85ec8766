"""Where a launcher records its machines: the boss's database, near or far.

:class:`StoreBook` writes through :class:`shoal.machines.Machines` in this
process (``shoal run``, whose boss is its own); :class:`BossBook` through the
boss's HTTP API (the keeper of ``shoal up``, for a boss that runs on its
own). Both give back :class:`~shoal.launch.contract.Machine` data with the
agent each machine runs, as the boss knows it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shoal.launch.contract import Machine

if TYPE_CHECKING:
    from shoal.client import BossClient
    from shoal.machines import Machines

__all__ = ["BossBook", "MachineBook", "StoreBook", "owner_name"]


def owner_name(kind: str, state_root: Path) -> str:
    """Who a launcher is: its kind (``up``, ``run``), this host, and its state folder."""
    return f"{kind}:{socket.gethostname()}:{state_root.resolve()}"


class MachineBook(Protocol):
    """The record of the machines launchers start."""

    def record(self, owner: str, machines: Sequence[Machine]) -> None:
        """Insert or update these machines of ``owner``, by name."""
        ...

    def machines(self, owner: str | None = None) -> list[Machine]:
        """The machines recorded (``owner``'s only), each with its agent."""
        ...


def _wire(m: Machine) -> dict[str, Any]:
    """What is recorded of a machine (the book stamps the times)."""
    data = m.to_dict()
    for key in ("since", "requested", "owner", "exit_code"):
        data.pop(key)
    return data


class StoreBook:
    """The book of a boss in this process: its database, directly."""

    def __init__(self, machines: Machines) -> None:
        self.service = machines

    def record(self, owner: str, machines: Sequence[Machine]) -> None:
        if machines:
            self.service.record(owner, [_wire(m) for m in machines])

    def machines(self, owner: str | None = None) -> list[Machine]:
        return [Machine.from_dict(d) for d in self.service.view(owner)]


class BossBook:
    """The book of a boss over its HTTP API."""

    def __init__(self, client: BossClient) -> None:
        self.client = client

    def record(self, owner: str, machines: Sequence[Machine]) -> None:
        if machines:
            self.client.put("/machines", {"owner": owner, "machines": [_wire(m) for m in machines]})

    def machines(self, owner: str | None = None) -> list[Machine]:
        return [Machine.from_dict(d) for d in self.client.get("/machines", owner=owner)]
