"""``shoal up`` and ``shoal down``: machines for a boss that runs on its own.

``shoal up`` starts a keeper (:mod:`shoal.launch.keeper`) with the pools to
bring up, hands it the token on a pipe, and reports each machine as the
keeper tells of it. ``shoal down`` stops the keeper by its PID; whatever
machines it leaves behind (it was killed, say) are found again where they
were recorded, the boss's database (or, with the boss out of reach, the
keeper's ``STATE/up.json``), and stopped through their providers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.agent.client import CREDENTIAL_VARS
from shoal.exceptions import BadInput, BossError, ShoalError, StoreError
from shoal.launch import procs, providers
from shoal.launch.book import BossBook, MachineBook, StoreBook, owner_name
from shoal.launch.contract import Machine, Pool, Site
from shoal.launch.fleet import take_down
from shoal.launch.keeper import up_file
from shoal.statedir import StateDir, open_private

__all__ = ["Brought", "down", "read_up", "up"]


@dataclass
class Brought:
    """How ``shoal up`` went on one machine."""

    host: str
    error: str | None = None
    note: str | None = None  # "agent copied"
    # Not running yet, but kept and started later, and why (a job in Slurm's queue).
    waiting: str | None = None


def read_up(state: StateDir) -> dict[str, Any] | None:
    """What ``STATE/up.json`` says: the keeper and its machines (maybe gone since)."""
    try:
        info = json.loads(up_file(state).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    return info


def _keeper_alive(info: dict[str, Any]) -> bool:
    return procs.alive(int(info["pid"]), info.get("ticks"))


def up(
    state: StateDir,
    pools: list[Pool],
    *,
    boss_url: str,
    token: str,
    direct_url: str | None = None,
    on_host: Callable[[Brought], None] | None = None,
) -> list[Brought]:
    """Start the keeper and wait until every machine's agent started or failed."""
    info = read_up(state)
    if info is not None and _keeper_alive(info):
        raise BadInput(
            f"workers are already up for {state.root} on {', '.join(info['hosts'])} "
            f"(keeper pid {info['pid']}): run 'shoal down' first"
        )
    parts = urlsplit(boss_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
        raise BadInput(f"the boss URL {boss_url!r} is not http(s)://HOST:PORT")
    site = Site(state.root)
    for pool in pools:
        providers.get(pool.provider, site)  # an unknown provider is refused here
    state.create()
    site.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The keeper gets the token on its stdin; a credential in the environment
    # it starts with would be readable (/proc/PID/environ) by the local agents' tasks.
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open_private(site.logs / "keeper.log") as log:
        keeper = subprocess.Popen(
            [sys.executable, "-m", "shoal.launch.keeper", f"--state={state.root}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    assert keeper.stdin is not None and keeper.stdout is not None
    given = {"boss": boss_url, "direct": direct_url, "pools": [p.to_dict() for p in pools]}
    keeper.stdin.write(token.encode() + b"\n" + json.dumps(given).encode() + b"\n")
    keeper.stdin.close()
    brought: list[Brought] = []
    done = False
    for line in keeper.stdout:
        said = json.loads(line)
        if said.get("done"):
            done = True
        elif "host" in said:
            b = Brought(said["host"], said.get("error"), said.get("note"), said.get("waiting"))
            brought.append(b)
            if on_host is not None:
                on_host(b)
    keeper.stdout.close()
    keeper.wait()  # it forked the keeper proper and left at once
    if not done:
        raise ShoalError(
            f"the keeper of the workers stopped early (see {site.logs / 'keeper.log'})"
        )
    return brought


def down(state: StateDir, *, drain: bool = False, timeout: float = 30.0) -> list[str]:
    """Stop the machines ``shoal up`` started here; their names."""
    info = read_up(state)
    if info is not None and _keeper_alive(info):
        _stop_keeper(info, drain, timeout)
    # What the keeper left behind (it was killed, say): the machines it recorded.
    owner, site = owner_name("up", state.root), Site(state.root)
    left: list[Machine] = []
    book = _book(state)
    try:
        if book is not None:
            left = take_down(book, owner, site, drain=drain)
    except (BossError, StoreError):
        pass  # out of reach: the keeper's own copy below says what it held
    # Its copy, for what the book did not name (stopping a stopped one does nothing).
    named = {m.name for m in left}
    kept = [Machine.from_dict(m) for m in (info or {}).get("machines", [])]
    kept = [m for m in kept if m.name not in named]
    for name in sorted({m.provider for m in kept}):
        providers.get(name, site).down([m for m in kept if m.provider == name], drain)
    left += kept
    swept = _sweep(state, site)
    if info is None and not left and not swept:
        raise BadInput(f"no workers are up for {state.root} (nothing was started by 'shoal up')")
    up_file(state).unlink(missing_ok=True)
    names = list(info.get("hosts", [])) if info is not None else [m.name for m in left]
    return names + [f"{provider} {i}" for provider, i in swept if i not in names]


def _sweep(state: StateDir, site: Site) -> list[tuple[str, str]]:
    """Terminate, by their tags, the rented machines of this state folder's boss still running.

    Whatever was recorded or not: a keeper or boss SIGKILLed between a
    cloud's answer and the record leaves nothing running. The machines of a
    ``shoal run`` that still runs here are spared. (provider, id) of each.
    """
    from shoal.launch.pools import remembered

    spare = "run" if state.live_boss() is not None else None
    swept: list[tuple[str, str]] = []
    done: set[str] = set()
    for pool in remembered(site).values():
        provider = providers.get(pool.provider, site)
        sweep = getattr(provider, "sweep", None)
        key = json.dumps([pool.provider, dict(pool.fields)], sort_keys=True, default=str)
        if sweep is None or key in done:
            continue
        done.add(key)
        swept += [(pool.provider, i) for i in sweep(pool, spare=spare)]
    return swept


def _stop_keeper(info: dict[str, Any], drain: bool, timeout: float) -> None:
    """Tell the keeper to stop its machines (drain: after what runs) and wait for it."""
    pid, ticks = int(info["pid"]), info.get("ticks")
    os.kill(pid, signal.SIGUSR1 if drain else signal.SIGTERM)
    deadline = None if drain else time.monotonic() + timeout
    while procs.alive(pid, ticks):
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


def _book(state: StateDir) -> MachineBook | None:
    """Where the machines are recorded: the running boss, else the state folder's database."""
    from shoal.client import BossClient

    try:
        return BossBook(BossClient.find(None, None, state))
    except ShoalError:
        pass
    if not state.has_database():
        return None
    from shoal.machines import Machines
    from shoal.store import Store

    return StoreBook(Machines(Store(state.database())))
