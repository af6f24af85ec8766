"""``shoal certs``: the state folder's certificate authority (``init``, ``add``, ``ls``, ``revoke``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from shoal.cli.common import JsonOpt, StateOpt, _emit_json, _state, app, console
from shoal.cli.render import literal

if TYPE_CHECKING:
    from rich.table import Table

    from shoal.security import CertAuthority, Issued

__all__ = ["certs_app"]

certs_app = typer.Typer(
    help="The certificate authority of the state folder: HTTPS and mutual TLS.",
    no_args_is_help=True,
)
app.add_typer(certs_app, name="certs")


def _ca(state: StateOpt) -> CertAuthority:
    from shoal.security import CertAuthority

    sd = _state(state)
    return CertAuthority(sd.certs)


@certs_app.command(
    "init", epilog="Examples:\n  shoal certs init\n  shoal boss --listen 0.0.0.0:8765 --mtls"
)
def certs_init(state: StateOpt = None) -> None:
    """Make the CA (STATE/certs/ca.crt, ca.key) and the command line's client certificate."""
    ca = _ca(state)
    if not ca.init():
        console.print(literal(f"a certificate authority is already in {ca.folder}: kept"))
        return
    console.print(literal(f"made a certificate authority in {ca.folder}"))
    console.print(
        literal(
            "next: 'shoal boss --mtls --listen ADDRESS:PORT', and for each worker "
            "'shoal certs add NAME --client'"
        ),
        soft_wrap=True,
    )


@certs_app.command(
    "add",
    epilog="Examples:\n"
    "  shoal certs add w1 --client           # a worker's: w1.crt and w1.key\n"
    "  shoal certs add boss.example.org",
)
def certs_add(
    name: Annotated[str, typer.Argument(help="The certificate's name: a host, worker or user.")],
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A DNS name or IP address the server is reached at (repeatable; "
            "default: this machine's name, localhost, 127.0.0.1).",
        ),
    ] = None,
    client: Annotated[
        bool, typer.Option("--client", help="A client certificate (a worker, a user).")
    ] = False,
    days: Annotated[int, typer.Option("--days", metavar="N", help="Days it is valid.")] = 365,
    state: StateOpt = None,
) -> None:
    """Issue a certificate signed by the CA: a server's, or with --client a worker's or user's."""
    ca = _ca(state)
    issued = ca.add(name, hosts=host or (), client=client, days=days)
    console.print(
        literal(
            f"issued {issued.kind} certificate '{name}' until {_date(issued.not_after)}: "
            f"{ca.cert_path(name)}, {ca.key_path(name)} (and the CA: {ca.ca_cert})"
        ),
        soft_wrap=True,
    )


@certs_app.command("ls", epilog="Examples:\n  shoal certs ls\n  shoal certs ls --json")
def certs_ls(state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """What the CA issued: name, kind, serial, expiry, revoked; warns 30 days before expiry."""
    from shoal.exceptions import BadInput
    from shoal.security.certs import EXPIRY_WARNING_DAYS

    ca = _ca(state)
    if not ca.exists():
        raise BadInput(f"no certificate authority in {ca.folder}: run 'shoal certs init' first")
    issued = ca.issued()
    now = time.time()
    if as_json:
        _emit_json(
            [
                {**e.__dict__, "hosts": list(e.hosts), "days_left": round(e.days_left(now), 1)}
                for e in issued
            ]
        )
        return
    console.print(_table(issued, now))
    for e in issued:
        left = e.days_left(now)
        if e.revoked is None and left <= EXPIRY_WARNING_DAYS:
            when = "expired" if left <= 0 else f"expires in {max(1, int(left))} days"
            console.print(
                literal(
                    f"warning: '{e.name}' {when} ({_date(e.not_after)}): 'shoal certs revoke "
                    f"{e.name}' then 'shoal certs add {e.name}' issues a new one"
                ),
                style="yellow",
                soft_wrap=True,
            )


@certs_app.command("revoke", epilog="Examples:\n  shoal certs revoke w1")
def certs_revoke(
    name: Annotated[str, typer.Argument(help="The certificate to revoke.")],
    state: StateOpt = None,
) -> None:
    """Revoke a certificate: a boss under --mtls refuses it from now on, running or not."""
    ca = _ca(state)
    ca.revoke(name)
    console.print(literal(f"revoked '{name}': {ca.crl} lists it"))


def _date(seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _table(issued: list[Issued], now: float) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("name", "kind", "serial", "expires", "state"):
        table.add_column(col, no_wrap=True)
    table.add_column("hosts")
    for e in issued:
        left = e.days_left(now)
        if e.revoked is not None:
            state = "revoked"
        elif left <= 0:
            state = "expired"
        else:
            state = f"{int(left)}d left"
        table.add_row(
            literal(e.name),
            e.kind,
            f"{e.serial:x}"[:12],
            _date(e.not_after),
            state,
            literal(", ".join(e.hosts)),
        )
    return table
