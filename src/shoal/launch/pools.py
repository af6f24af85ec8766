"""Pools: those command-line options give, and those remembered in the state folder.

``-j N`` local workers and a ``--hosts`` inventory become pools here; nothing
past it knows which provider a pool names. A pool brought up is remembered
in ``STATE/pools.json`` (by name, mode 0600; no credential is ever in a
pool), so that ``--pool NAME`` finds it again: :func:`pool_hosts` turns its
live machines into ssh hosts for ``hosts check``, :func:`pool_shells` into
what ``shoal inject``, ``ssh`` and ``pull`` reach them by (ssh, or the
provider's own way: ``docker exec``).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shoal.exceptions import BadInput
from shoal.launch import providers
from shoal.launch.contract import Machine, Pool, Shell, Site
from shoal.launch.local import DEFAULT_POOL
from shoal.spec.inventory import Host, Inventory
from shoal.statedir import write_private

__all__ = [
    "find_pool",
    "hosts_pool",
    "pool_hosts",
    "pool_shells",
    "pools_file",
    "remember",
    "remembered",
    "run_pools",
]


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


def pools_file(site: Site) -> Path:
    """Where the pools brought up for this state folder are remembered."""
    return site.root / "pools.json"


@contextmanager
def _locked(site: Site) -> Iterator[None]:
    """One writer at a time: a keeper and a command may remember pools at once."""
    site.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(site.root / "pools.json.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: Path) -> dict[str, Pool]:
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    pools = data.get("pools") if isinstance(data, dict) else None
    out: dict[str, Pool] = {}
    for entry in pools if isinstance(pools, list) else []:
        try:
            pool = Pool.from_dict(entry)
        except (TypeError, AttributeError):
            continue  # written by another version of shoal: not ours to read
        out[pool.name] = pool
    return out


def remember(site: Site, pools: Sequence[Pool]) -> None:
    """Remember these pools (by name: a pool of the same name is replaced)."""
    if not pools:
        return
    with _locked(site):
        known = _read(pools_file(site))
        for pool in pools:
            known[pool.name] = pool
        text = json.dumps({"pools": [p.to_dict() for p in known.values()]}, indent=1)
        write_private(pools_file(site), text + "\n")


def remembered(site: Site) -> dict[str, Pool]:
    """The pools remembered for this state folder, by name."""
    return _read(pools_file(site))


def find_pool(site: Site, name: str) -> Pool:
    """The pool ``name`` remembered here; one line naming those there are if it is not."""
    known = remembered(site)
    pool = known.get(name)
    if pool is not None:
        return pool
    if not known:
        raise BadInput(
            f"no pool called {name!r}: none was brought up for {site.root} "
            "('shoal up --pool FILE' brings pools up)"
        )
    raise BadInput(f"no pool called {name!r} (pools brought up here: {', '.join(known)})")


def _live(pool: Pool, machines: Sequence[Machine]) -> list[Machine]:
    """The pool's live machines among ``machines``, in their order; one line if there are none."""
    live = [m for m in machines if m.pool == pool.name and m.provider == pool.provider and m.live]
    if not live:
        raise BadInput(
            f"pool {pool.name} has no live machines ('shoal machines' lists what was started, "
            "'shoal up --pool FILE' starts them)"
        )
    return live


def pool_hosts(site: Site, pool: Pool, machines: Sequence[Machine]) -> list[Host]:
    """The pool's live machines among ``machines`` as ssh hosts, in the order given.

    The order is ``shoal machines``' when ``machines`` is what it lists, so
    that ``shoal ssh 3 --pool NAME`` is the fourth machine it shows of the
    pool. One line (BadInput) if the pool's provider does not reach its
    machines over ssh, or if none is live.
    """
    provider = providers.get(pool.provider, site)
    # Optional in the contract: a provider whose machines answer on ssh has it.
    ssh_hosts = getattr(provider, "ssh_hosts", None)
    if ssh_hosts is None:
        raise BadInput(f"pool {pool.name}'s machines are not reached over ssh")
    hosts: list[Host] = ssh_hosts(pool, _live(pool, machines))
    return hosts


def pool_shells(site: Site, pool: Pool, machines: Sequence[Machine]) -> list[Shell]:
    """The pool's live machines among ``machines`` as shells, in the order given.

    Through the provider's ``shells`` where it has one (``docker exec``),
    else over ssh (:func:`pool_hosts`, whose one line says if the provider
    reaches its machines neither way). One line too if none is live.
    """
    provider = providers.get(pool.provider, site)
    shells = getattr(provider, "shells", None)
    if shells is None:
        from shoal.launch.ssh.client import SshHost

        return [SshHost(h) for h in pool_hosts(site, pool, machines)]
    found: list[Shell] = shells(pool, _live(pool, machines))
    return found
