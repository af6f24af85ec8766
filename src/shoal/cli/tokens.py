"""``shoal tokens``: the credentials besides the boss's own: list, add, revoke.

Through the running boss's API, with the boss's token. A ``read`` token
views the dashboard and ``/metrics``; a ``worker`` token only registers
workers (``shoal worker`` with it). A token is shown once, when it is made:
the boss keeps only its hash.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shoal.cli.common import BossOpt, JsonOpt, StateOpt, TokenOpt, _emit_json, _state, app, console
from shoal.cli.render import literal, seconds
from shoal.client import BossClient
from shoal.exceptions import BadInput
from shoal.spec.fields import parse_duration

__all__ = ["tokens_app"]

tokens_app = typer.Typer(
    help="Credentials besides the boss's token: read-only and worker tokens.",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")


def _boss(boss: str | None, token: str | None, state: Path | None) -> BossClient:
    return BossClient.find(boss, token, _state(state))


@tokens_app.command("ls", epilog="Examples:\n  shoal tokens ls\n  shoal tokens ls --all --json")
def tokens_ls(
    every: Annotated[
        bool, typer.Option("--all", help="Also the tokens the boss issued to its workers.")
    ] = False,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the tokens: name, kind, when made, when they expire, last used, revoked."""
    with _boss(boss, token, state) as client:
        rows = client.tokens(every=every)
    _emit_json(rows) if as_json else console.print(token_table(rows, time.time()))


@tokens_app.command(
    "add",
    epilog="Examples:\n  shoal tokens add grafana --read --expires 30d\n  shoal tokens add cluster --worker --out worker.token",
)
def tokens_add(
    name: Annotated[str, typer.Argument(help="What the token is for (letters, digits, _ . : -).")],
    read: Annotated[
        bool, typer.Option("--read", help="A read-only token: the dashboard and /metrics.")
    ] = False,
    worker: Annotated[
        bool, typer.Option("--worker", help="A worker token: it may only register workers.")
    ] = False,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", metavar="DURATION", help="Lifetime: 30d, 12h, 90m (default: none)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write the token to this file (mode 0600) instead of printing.",
        ),
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Make a token and show it once (the boss keeps only its hash)."""
    if read == worker:
        raise BadInput("give --read or --worker: the kind of token to make")
    expires_in = None
    if expires is not None:
        try:
            expires_in = parse_duration(expires)
        except ValueError as e:
            raise BadInput(f"--expires: {e}") from None
    if out is not None and out.exists():
        raise BadInput(f"--out {out}: the file exists; give a new file's name")
    with _boss(boss, token, state) as client:
        made = client.add_token(name, "read" if read else "worker", expires_in)
    if out is None:
        typer.echo(made)
        typer.echo("shoal: shown once; the boss keeps only its hash", err=True)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(made + "\n")
    except OSError as e:
        raise BadInput(
            f"--out {out}: {e.strerror or e}; the token '{name}' was made and is lost: "
            f"'shoal tokens revoke {name}' and add it again"
        ) from None
    typer.echo(f"token '{name}' written to {out} (mode 0600)", err=True)


@tokens_app.command("revoke", epilog="Examples:\n  shoal tokens revoke grafana")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="The token's name, as 'shoal tokens ls' shows it.")],
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Refuse a token from now on (and the tokens of the workers it registered)."""
    with _boss(boss, token, state) as client:
        client.revoke_token(name)
    typer.echo(f"token '{name}' revoked", err=True)


def _when(value: float | None) -> str:
    return "-" if value is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(value))


def token_table(rows: list[dict[str, Any]], now: float) -> Table:
    """One line per token, its columns aligned."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("name", "kind", "created", "expires", "last used", "revoked"):
        table.add_column(header, no_wrap=True)
    for r in rows:
        expires = _when(r.get("expires"))
        if r.get("expires") is not None and r["expires"] <= now:
            expires += " (expired)"
        used = r.get("last_used")
        table.add_row(
            literal(r["name"]),
            literal(r["kind"]),
            _when(r["created"]),
            expires,
            "-" if used is None else seconds(max(0.0, now - used)) + " ago",
            _when(r.get("revoked")),
        )
    return table
