"""The pools a command line gives: ``-j N`` local workers, a ``--hosts`` inventory.

This is where command-line options become pools; nothing past it knows
which provider a pool names.
"""

from __future__ import annotations

from shoal.launch.contract import Pool
from shoal.launch.local import DEFAULT_POOL
from shoal.spec.inventory import Inventory

__all__ = ["hosts_pool", "run_pools"]


def hosts_pool(inventory: Inventory) -> Pool:
    """An inventory's hosts as a pool: a hosts inventory is an ``ssh`` pool."""
    from shoal.launch.ssh.provider import pool_of

    return pool_of(inventory)


def run_pools(jobs: int, slots: int, hosts: Inventory | None) -> list[Pool]:
    """The pools of ``shoal run``: the inventory's hosts, then ``jobs`` local workers."""
    pools = [hosts_pool(hosts)] if hosts is not None else []
    if jobs > 0:
        pools.append(Pool(name=DEFAULT_POOL, provider="local", count=jobs, slots=slots))
    return pools
