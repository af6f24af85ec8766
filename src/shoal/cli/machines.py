"""``shoal machines``: what shoal started, where, since when, at what price.

The machines ``shoal run`` and ``shoal up`` started, as the boss's database
records them (read directly when no boss runs). A machine's worker is in
``shoal workers``, which names the machine each worker runs on. Its uptime
runs from when its provider was last asked for it to now, or to when it
ended; its cost so far is that time at its hourly price, where known.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from shoal.cli import render
from shoal.cli.common import BossOpt, JsonOpt, StateOpt, TokenOpt, _client, _emit_json, app, console

__all__ = ["machines", "with_usage"]


@app.command(epilog="Examples:\n  shoal machines\n  shoal machines --json")
def machines(
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the machines shoal started: where, since when, at what price."""
    client = _client(boss, token, state)
    rows = with_usage(client.machines(), time.time())
    _emit_json(rows) if as_json else console.print(render.machine_table(rows))


@app.command(
    epilog="Examples:\n  shoal drain w1            # shoal workers lists the names\n  shoal drain w1 --now"
)
def drain(
    worker: Annotated[
        str, typer.Argument(metavar="WORKER", help="A connected worker's name or id.")
    ],
    now: Annotated[
        bool, typer.Option("--now", help="Stop what it runs too (it runs again elsewhere).")
    ] = False,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Ask one worker to finish what it runs, take no more tasks, and leave."""
    answer = _client(boss, token, state).order_worker(worker, "stop" if now else "drain")
    what = "stop now" if now else "finish what it runs and leave"
    console.print(f"worker {answer['name']} asked to {what}", highlight=False, markup=False)


def with_usage(rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The machines, each with its ``uptime`` (seconds) and ``cost`` so far (None: no price)."""
    from shoal.launch.contract import Machine

    out = []
    for row in rows:
        m = Machine.from_dict(row)
        out.append({**row, "uptime": m.uptime(now), "cost": m.cost(now)})
    return out
