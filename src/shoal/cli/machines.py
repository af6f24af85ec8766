"""``shoal machines``: what shoal started, where, since when, at what price.

The machines ``shoal run`` and ``shoal up`` started, as the boss's database
records them (read directly when no boss runs). A machine's worker is in
``shoal workers``, which names the machine each worker runs on.
"""

from __future__ import annotations

from shoal.cli import render
from shoal.cli.common import BossOpt, JsonOpt, StateOpt, TokenOpt, _client, _emit_json, app, console

__all__ = ["machines"]


@app.command()
def machines(
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the machines shoal started: where, since when, at what price."""
    client = _client(boss, token, state)
    rows = client.machines()
    _emit_json(rows) if as_json else console.print(render.machine_table(rows))
