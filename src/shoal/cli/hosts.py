"""ssh hosts: ``shoal hosts check``, ``inject``, ``pull``, ``ssh``, and ``up``/``down`` for a running boss."""

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
    _emit_json,
    _inventory,
    _state,
    app,
    console,
)
from shoal.client import BossClient
from shoal.exceptions import BadInput, ShoalError

__all__ = ["down", "hosts_app", "inject", "pull", "ssh", "up"]

hosts_app = typer.Typer(help="The ssh hosts of an inventory.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")


@hosts_app.command("check")
def hosts_check(
    hosts: InventoryOpt,
    as_json: JsonOpt = False,
) -> None:
    """Try every host: reachable, key accepted, Python version, free disk, connect time."""
    from shoal.launch.ssh import check_hosts

    inv = _inventory(hosts)
    results = check_hosts(list(inv.hosts))
    if as_json:
        _emit_json([vars(r) for r in results])
    else:
        console.print(render.host_check_table(results))
    raise typer.Exit(0 if all(r.reachable and r.error is None for r in results) else 1)


@app.command()
def inject(
    bundle: Annotated[Path, typer.Argument(help="A folder or archive (.tar, .tar.gz, .zip…).")],
    hosts: InventoryOpt,
    script: Annotated[
        str, typer.Option("--script", help="The launch script in the bundle.")
    ] = "shoal-launch",
) -> None:
    """Unpack a bundle on every host and start its launch script there, detached.

    The script gets SHOAL_HOST_INDEX, SHOAL_HOST_COUNT and SHOAL_HOSTS (every
    host's address) and writes to SCRIPT.log beside it.
    """
    from shoal.launch.ssh import inject as inject_bundle

    if not bundle.exists():
        raise BadInput(f"no bundle at {bundle}")
    inv = _inventory(hosts)
    results = inject_bundle(list(inv.hosts), bundle, script)
    for r in results:
        if r.error is None:
            console.print(
                f"{r.host}: started {script} in {r.folder}", highlight=False, markup=False
            )
        else:
            console.print(Text.assemble(f"{r.host}: ", ("failed", "red"), f": {r.error}"))
    raise typer.Exit(0 if all(r.error is None for r in results) else 1)


@app.command()
def up(
    hosts: InventoryOpt,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    boss_url: Annotated[
        str | None,
        typer.Option(
            "--boss-url",
            help="The URL the hosts reach the boss at directly (default: a reverse ssh tunnel).",
        ),
    ] = None,
) -> None:
    """Start a worker on every host of the inventory for a running boss; they stay up.

    A keeper process holds the ssh connections, starts a dropped host's worker
    again, and stops them all at 'shoal down'.
    """
    from shoal.launch.pools import hosts_pool
    from shoal.launch.up import Brought
    from shoal.launch.up import up as bring_up

    inventory = _inventory(hosts)  # a mistake in it is refused first, in one line
    sd = _state(state)
    client = BossClient.find(boss, token, sd)
    with client:
        client.workers()  # the boss answers, and takes this token
    started = 0

    def tell(b: Brought) -> None:
        nonlocal started
        if b.error is None:
            started += 1
            note = f" ({b.note})" if b.note else ""
            console.print(f"{b.host}: worker started{note}", highlight=False, markup=False)
        else:
            console.print(Text.assemble(f"{b.host}: ", ("failed", "red"), f": {b.error}"))

    brought = bring_up(
        sd,
        [hosts_pool(inventory)],
        boss_url=client.url,
        token=client.token,
        direct_url=boss_url,
        on_host=tell,
    )
    if not started:
        raise typer.Exit(1)
    console.print(
        f"workers up on {started} of {len(brought)} hosts for {client.url}; "
        "'shoal workers' lists them, 'shoal down' stops them",
        highlight=False,
        markup=False,
    )


@app.command()
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


@app.command()
def pull(
    host: Annotated[str, typer.Argument(help="The host's index (from 0) or name.")],
    remote: Annotated[
        str, typer.Argument(help="The file there (relative: in the injected bundle's folder).")
    ],
    local: Annotated[
        Path | None, typer.Argument(help="Where to put it (default: its name).")
    ] = None,
    hosts: InventoryOpt = Path("hosts.yaml"),
) -> None:
    """Copy a file back from a host."""
    from shoal.launch.ssh import SshFailed
    from shoal.launch.ssh import pull as pull_file

    target = _inventory(hosts).find(host)
    dest = local or Path(Path(remote).name)
    if dest.is_dir():
        dest = dest / Path(remote).name
    try:
        pull_file(target, remote, dest)
    except SshFailed as e:
        raise ShoalError(f"cannot copy {remote} from {e.host}: {e.line}") from None
    console.print(f"{dest}", highlight=False, markup=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="The host's index (from 0) or name.")] = "0",
    hosts: InventoryOpt = Path("hosts.yaml"),
    attach: Annotated[
        bool,
        typer.Option("--attach", help="Join the injected launch script's terminal (tmux/screen)."),
    ] = False,
) -> None:
    """Open a shell on a host, in the injected bundle's folder (or run the command after --)."""
    from shoal.launch.ssh import shell_argv

    if attach and ctx.args:
        raise BadInput("--attach joins the injected session: give no command after --")
    argv = shell_argv(_inventory(hosts).find(host), list(ctx.args), attach=attach)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
