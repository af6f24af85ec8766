"""Serving: ``shoal boss`` (the API workers and commands talk to) and ``shoal worker``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from shoal.cli.common import (
    DataOpt,
    DataOptionOpt,
    DbOpt,
    LeaseOpt,
    LogCapOpt,
    SpeculateMinOpt,
    StateOpt,
    TokenFileOpt,
    _datastore,
    _state,
    _token,
    _warn_token_file_safer,
    app,
    parse_size,
)
from shoal.exceptions import BadInput
from shoal.statedir import StateDir

if TYPE_CHECKING:
    from shoal.boss.server import Boss

__all__ = ["boss", "worker"]


@app.command()
def boss(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve on.")
    ] = "127.0.0.1:8765",
    db: DbOpt = None,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    state: StateOpt = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            callback=_warn_token_file_safer,
            help="Token workers and commands must give (default: $SHOAL_TOKEN, else STATE/token).",
        ),
    ] = None,
    token_file: TokenFileOpt = None,
    lease: LeaseOpt = 30.0,
    speculate_min: SpeculateMinOpt = 30.0,
    speculate: Annotated[
        bool, typer.Option("--speculate/--no-speculate", help="Give stragglers backup attempts.")
    ] = True,
    max_losses: Annotated[
        int, typer.Option("--max-losses", help="Lost attempts after which a task fails.")
    ] = 3,
    max_body: Annotated[
        str,
        typer.Option(
            "--max-body",
            help="Largest JSON request the boss reads (a submitted run), e.g. 64M or 1G.",
        ),
    ] = "32M",
) -> None:
    """Serve the boss: the API workers and commands talk to."""
    from shoal.boss.api import Limits
    from shoal.boss.server import Boss, parse_listen

    limits = Limits(max_body=parse_size(max_body, "--max-body"))

    sd = _state(state)
    other = sd.live_boss()
    if other is not None:
        raise BadInput(
            f"a boss (pid {other.get('pid')}) already serves {sd.root} at {other.get('url')}"
        )
    host, port = parse_listen(listen)
    location, options = _datastore(sd, data, data_option)
    sd.create()
    given = token or _token(token_file)
    token = given or sd.token()
    server = Boss(
        db=sd.database(db),
        data=location,
        data_options=options,
        token=token,
        host=host,
        port=port,
        lease_seconds=lease,
        speculate=speculate,
        speculate_min=speculate_min,
        max_losses=max_losses,
        limits=limits,
    )
    sd.remember_datastore(location, options)
    _serve(server, sd, token, bool(given))


def _serve(server: Boss, sd: StateDir, token: str, given: bool) -> None:
    """Serve until stopped, with the boss's address in the state folder meanwhile."""
    sd.write_boss(server.url, token)
    import logging

    from shoal.logs import configure

    configure()
    start = (
        f"SHOAL_TOKEN=<the token given to this boss> shoal worker --boss {server.url}"
        if given
        else f"shoal worker --boss {server.url} --token-file {sd.token_file}"
    )
    logging.getLogger("shoal.boss").info(
        f"serving {server.url}; start workers with: {start}",
        extra={
            "event": "boss_started",
            "url": server.url,
            "state": str(sd.root),
            "pid": os.getpid(),
        },
    )
    try:
        server.serve()
    finally:
        sd.clear_boss()
        server.close()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    boss_url: Annotated[str | None, typer.Option("--boss", help="The boss's URL.")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            callback=_warn_token_file_safer,
            help="The boss's token (default: $SHOAL_TOKEN, $SHOAL_TOKEN_FILE or the state folder).",
        ),
    ] = None,
    token_file: TokenFileOpt = None,
    slots: Annotated[int, typer.Option("--slots", help="Attempts at once (default: cores).")] = 0,
    idle_exit: Annotated[
        float | None, typer.Option("--idle-exit", help="Exit after this many idle seconds.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Worker name (default: HOST-PID).")
    ] = None,
    log_cap: LogCapOpt = None,
    state: StateOpt = None,
) -> None:
    """Run a worker that pulls tasks from a boss until stopped."""
    from shoal.agent.start import main as agent_main

    sd = _state(state)
    info = sd.live_boss() if not (boss_url or os.environ.get("SHOAL_BOSS")) else None
    argv = ["--boss=" + (boss_url or os.environ.get("SHOAL_BOSS") or (info or {}).get("url") or "")]
    tok = token or _token(token_file) or (info or {}).get("token")
    argv.append(f"--slots={slots or os.cpu_count() or 1}")
    if idle_exit is not None:
        argv.append(f"--idle-exit={idle_exit}")
    if name:
        argv.append("--name=" + name)
    if log_cap is not None:
        argv.append("--log-cap=" + log_cap)
    # The token is handed over in this process: never on a command line.
    raise typer.Exit(agent_main(argv + list(ctx.args), token=tok))
