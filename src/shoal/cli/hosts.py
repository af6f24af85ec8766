"""Machines over ssh and for a running boss: ``shoal hosts check``, ``inject``, ``pull``, ``ssh``, ``up``, ``down``.

``hosts check``, ``inject``, ``pull`` and ``ssh`` reach the hosts of an
inventory (``--hosts FILE``) or the live machines of a pool brought up here
(``--pool NAME``), numbered from 0 as ``shoal machines`` lists them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from shoal.cli import render
from shoal.cli.common import (
    BossOpt,
    InventoryOpt,
    JsonOpt,
    StateOpt,
    TokenOpt,
    _client,
    _emit_json,
    _inventory,
    _state,
    app,
    console,
)
from shoal.client import BossClient
from shoal.exceptions import BadInput, ShoalError
from shoal.launch.contract import Machine, Pool, Shell, Site
from shoal.spec.inventory import Inventory

__all__ = ["down", "hosts_app", "inject", "pull", "ssh", "up"]

hosts_app = typer.Typer(help="The ssh hosts of an inventory.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")

PoolNameOpt = Annotated[
    str | None,
    typer.Option(
        "--pool",
        metavar="NAME",
        help="The live machines of a pool brought up here ('shoal up --pool FILE'), "
        "numbered from 0 as 'shoal machines' lists them.",
    ),
]


def _hosts_of(
    hosts: Path | None, pool: str | None, state: Path | None, default: Path | None = None
) -> Inventory:
    """The hosts to reach: an inventory's, or a pool's live machines."""
    if hosts is not None and pool is not None:
        raise BadInput("give --hosts FILE or --pool NAME, not both")
    if pool is not None:
        return _pool_inventory(pool, state)
    if hosts is None and default is None:
        raise BadInput(
            "which hosts? give --hosts FILE (an inventory) or --pool NAME "
            "(a pool brought up with 'shoal up --pool FILE')"
        )
    inventory: Inventory = _inventory(hosts or default)
    return inventory


def _pool_machines(name: str, state: Path | None) -> tuple[Site, Pool, list[Machine]]:
    """Pool ``name`` as remembered here, and every machine the boss recorded."""
    from shoal.launch.pools import find_pool

    site = Site(_state(state).root)
    pool = find_pool(site, name)  # an unknown name is refused before the boss is asked
    client = _client(None, None, state)
    try:
        machines = [Machine.from_dict(m) for m in client.machines()]
    finally:
        client.close()
    return site, pool, machines


def _pool_inventory(name: str, state: Path | None) -> Inventory:
    """Pool ``name``'s live machines, as recorded, as an inventory of ssh hosts."""
    from shoal.launch.pools import pool_hosts

    site, pool, machines = _pool_machines(name, state)
    return Inventory(hosts=tuple(pool_hosts(site, pool, machines)), path=f"pool {name}")


def _shells_of(
    hosts: Path | None, pool: str | None, state: Path | None, default: Path | None = None
) -> list[Shell]:
    """What reaches the hosts: an inventory's over ssh, or a pool's live machines its own way."""
    from shoal.launch.pools import pool_shells
    from shoal.launch.ssh import SshHost

    if hosts is not None and pool is not None:
        raise BadInput("give --hosts FILE or --pool NAME, not both")
    if pool is None:
        return [SshHost(h) for h in _hosts_of(hosts, None, state, default).hosts]
    site, found, machines = _pool_machines(pool, state)
    return pool_shells(site, found, machines)


def _one_of(
    ref: str, hosts: Path | None, pool: str | None, state: Path | None, default: Path | None
) -> Shell:
    """One host by its index (from 0) or name: an inventory's, or a pool's machine."""
    from shoal.launch.ssh import SshHost

    if pool is None:
        return SshHost(_hosts_of(hosts, None, state, default).find(ref))
    shells = _shells_of(hosts, pool, state)
    if ref.isdigit() and int(ref) < len(shells):
        return shells[int(ref)]
    for shell in shells:
        if shell.name == ref:
            return shell
    names = ", ".join(shell.name for shell in shells)
    raise BadInput(f"pool {pool}: no live machine '{ref}' (machines: {names})")


@hosts_app.command(
    "check",
    epilog="Examples:\n  shoal hosts check --hosts hosts.yaml\n  shoal hosts check --pool burst",
)
def hosts_check(
    hosts: InventoryOpt = None,
    pool: PoolNameOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Try every host: reachable, key accepted, Python version, free disk, connect time."""
    from shoal.launch.ssh import check_hosts

    inv = _hosts_of(hosts, pool, state)
    results = check_hosts(list(inv.hosts))
    if as_json:
        _emit_json([vars(r) for r in results])
    else:
        console.print(render.host_check_table(results))
    raise typer.Exit(0 if all(r.reachable and r.error is None for r in results) else 1)


@app.command(
    epilog="Examples:\n"
    "  shoal inject code/ --hosts hosts.yaml      # runs code/shoal-launch on each\n"
    "  shoal inject code.tar.gz --pool burst --script start.sh"
)
def inject(
    bundle: Annotated[Path, typer.Argument(help="A folder or archive (.tar, .tar.gz, .zip…).")],
    hosts: InventoryOpt = None,
    pool: PoolNameOpt = None,
    state: StateOpt = None,
    script: Annotated[
        str, typer.Option("--script", help="The launch script in the bundle.")
    ] = "shoal-launch",
) -> None:
    """Unpack a bundle on every host (or machine of a pool) and start its launch script there, detached.

    The script gets SHOAL_HOST_INDEX, SHOAL_HOST_COUNT and SHOAL_HOSTS (every
    host's address) and writes to SCRIPT.log beside it.
    """
    from shoal.launch.ssh import inject as inject_bundle

    if not bundle.exists():
        raise BadInput(f"no bundle at {bundle}")
    results = inject_bundle(_shells_of(hosts, pool, state), bundle, script)
    for r in results:
        if r.error is None:
            console.print(
                f"{r.host}: started {script} in {r.folder}", highlight=False, markup=False
            )
        else:
            console.print(Text.assemble(f"{r.host}: ", ("failed", "red"), f": {r.error}"))
    raise typer.Exit(0 if all(r.error is None for r in results) else 1)


@app.command(
    epilog="Examples:\n"
    "  shoal up --hosts hosts.yaml        # workers for the boss of this folder\n"
    "  shoal up --pool pools.yaml --boss-url https://boss.example.org:8765"
)
def up(
    hosts: InventoryOpt = None,
    pool_file: Annotated[
        Path | None,
        typer.Option(
            "--pool",
            metavar="FILE",
            help="A pool file (pools.yaml): the machines to bring up, from any provider.",
        ),
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    boss_url: Annotated[
        str | None,
        typer.Option(
            "--boss-url",
            help="The URL the machines reach the boss at directly (default: a reverse ssh tunnel).",
        ),
    ] = None,
) -> None:
    """Start a worker on every machine of the pools (--pool) or hosts (--hosts) for a running
    boss; they stay up.

    A keeper process holds the machines, starts a dropped machine's worker
    again, and stops them all at 'shoal down'.
    """
    from shoal.launch.contract import Site
    from shoal.launch.pools import remember
    from shoal.launch.up import Brought
    from shoal.launch.up import up as bring_up

    pools = _pools_to_bring_up(hosts, pool_file)  # a mistake is refused first, in one line
    sd = _state(state)
    client = BossClient.find(boss, token, sd)
    with client:
        client.workers()  # the boss answers, and takes this token
    started = waiting = 0

    def tell(b: Brought) -> None:
        nonlocal started, waiting
        if b.waiting:
            waiting += 1
            console.print(
                f"{b.host}: not running yet ({b.waiting}); its worker starts when it runs",
                highlight=False,
                markup=False,
            )
        elif b.error is None:
            started += 1
            note = f" ({b.note})" if b.note else ""
            console.print(f"{b.host}: worker started{note}", highlight=False, markup=False)
        else:
            console.print(Text.assemble(f"{b.host}: ", ("failed", "red"), f": {b.error}"))

    brought = bring_up(
        sd,
        pools,
        boss_url=client.url,
        token=client.token,
        direct_url=boss_url,
        on_host=tell,
    )
    # What --pool NAME finds again (inject, ssh, pull, hosts check).
    remember(Site(sd.root), pools)
    if not brought:
        console.print("no machine to start now: every pool's size is 0 (min: 0)", highlight=False)
        return
    if not started and not waiting:
        raise typer.Exit(1)
    noun = "hosts" if all(p.provider == "ssh" for p in pools) else "machines"
    later = f" ({waiting} more starting)" if waiting else ""
    console.print(
        f"workers up on {started} of {len(brought)} {noun}{later} for {client.url}; "
        "'shoal machines' lists them, 'shoal down' stops them",
        highlight=False,
        markup=False,
    )


def _pools_to_bring_up(hosts: Path | None, pool_file: Path | None) -> list[Pool]:
    """The pools of ``shoal up``: the inventory's (an ssh pool), then the pool file's."""
    from shoal.launch.pools import hosts_pool
    from shoal.spec import pools as pool_files

    if hosts is None and pool_file is None:
        raise BadInput(
            "what to bring up? give --pool FILE (a pool file), --hosts FILE (an inventory), or both"
        )
    pools = [hosts_pool(_inventory(hosts))] if hosts is not None else []
    if pool_file is not None:
        given = pool_files.load(pool_file)
        for p in given.pools:
            if any(q.name == p.name for q in pools):
                raise BadInput(
                    f"{given.path}: pool '{p.name}': the --hosts inventory's pool is called "
                    f"'{p.name}' too: rename this one"
                )
        pools += given.pools
    return pools


@app.command(
    epilog="Examples:\n  shoal down\n  shoal down --drain         # let running tasks finish first"
)
def down(
    state: StateOpt = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Let them finish what runs first (however long).")
    ] = False,
) -> None:
    """Stop the workers 'shoal up' started; what they ran runs again elsewhere."""
    from shoal.launch.up import down as take_down

    if drain:
        console.print("waiting for the workers to finish what runs…", highlight=False)
    hosts = take_down(_state(state), drain=drain)
    console.print(f"workers stopped on {', '.join(hosts)}", highlight=False, markup=False)


@app.command(
    epilog="Examples:\n"
    "  shoal pull 0 out/result.csv --hosts hosts.yaml\n"
    "  shoal pull 3 result.csv --pool burst"
)
def pull(
    host: Annotated[str, typer.Argument(help="The host's index (from 0) or name.")],
    remote: Annotated[
        str, typer.Argument(help="The file there (relative: in the injected bundle's folder).")
    ],
    local: Annotated[
        Path | None, typer.Argument(help="Where to put it (default: its name).")
    ] = None,
    hosts: InventoryOpt = None,
    pool: PoolNameOpt = None,
    state: StateOpt = None,
) -> None:
    """Copy a file back from a host (hosts.yaml's, or a pool's machine)."""
    from shoal.launch.ssh import SshFailed
    from shoal.launch.ssh import pull as pull_file

    target = _one_of(host, hosts, pool, state, Path("hosts.yaml"))
    dest = local or Path(Path(remote).name)
    if dest.is_dir():
        dest = dest / Path(remote).name
    try:
        pull_file(target, remote, dest)
    except SshFailed as e:
        raise ShoalError(f"cannot copy {remote} from {e.host}: {e.line}") from None
    console.print(f"{dest}", highlight=False, markup=False)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Examples:\n"
    "  shoal ssh 1 --hosts hosts.yaml -- tail -f shoal-launch.log\n"
    "  shoal ssh 3 --pool burst",
)
def ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="The host's index (from 0) or name.")] = "0",
    hosts: InventoryOpt = None,
    pool: PoolNameOpt = None,
    state: StateOpt = None,
    attach: Annotated[
        bool,
        typer.Option("--attach", help="Join the injected launch script's terminal (tmux/screen)."),
    ] = False,
) -> None:
    """Open a shell on a host (hosts.yaml's, or a pool's machine), in the injected bundle's
    folder (or run the command after --)."""
    from shoal.launch.ssh import shell_argv

    if attach and ctx.args:
        raise BadInput("--attach joins the injected session: give no command after --")
    target = _one_of(host, hosts, pool, state, Path("hosts.yaml"))
    argv = shell_argv(target, list(ctx.args), attach=attach)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
