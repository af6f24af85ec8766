"""Serving: ``shoal boss`` (the API workers and commands talk to) and ``shoal worker``."""

from __future__ import annotations

import os
import sys
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
    from shoal.security import ServerTls

__all__ = ["boss", "worker"]


TlsOpt = Annotated[
    bool,
    typer.Option("--tls", help="Serve HTTPS with STATE/certs/boss.crt (made on first start)."),
]
MtlsOpt = Annotated[
    bool,
    typer.Option(
        "--mtls", help="HTTPS, and every client must present a certificate of STATE/certs' CA."
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="Serve plain HTTP on an address other machines reach, anyway."),
]
AdvertiseOpt = Annotated[
    str | None,
    typer.Option(
        "--advertise",
        help="The URL to give workers (default: http(s)://ADDRESS:PORT of --listen, "
        "a real address of this machine for 0.0.0.0).",
    ),
]


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
    tls: TlsOpt = False,
    mtls: MtlsOpt = False,
    insecure: InsecureOpt = False,
    advertise: AdvertiseOpt = None,
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
    secure = tls or mtls
    _check_exposure(listen, host, secure, insecure)
    _check_advertise(advertise, secure)
    location, options = _datastore(sd, data, data_option)
    sd.create()
    context = _tls_context(sd, host, advertise, mtls) if secure else None
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
        tls=context,
        advertise=advertise.rstrip("/") if advertise else None,
    )
    sd.remember_datastore(location, options)
    _serve(server, sd, token, bool(given), mtls)


def _check_exposure(listen: str, host: str, secure: bool, insecure: bool) -> None:
    """Plain HTTP off loopback only when asked for: a token sent in clear is anyone's."""
    from shoal.boss.listen import is_loopback

    if not secure and not insecure and not is_loopback(host):
        raise BadInput(
            f"--listen {listen} is reachable from other machines: serve it over HTTPS with "
            "--tls or --mtls (see 'shoal certs'), or pass --insecure for plain HTTP anyway"
        )


def _check_advertise(advertise: str | None, secure: bool) -> None:
    if advertise is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(advertise)
    scheme = "https" if secure else "http"
    if parts.scheme != scheme or not parts.hostname or parts.hostname in ("0.0.0.0", "::"):
        raise BadInput(
            f"bad --advertise '{advertise}': give the URL workers reach this boss at, "
            f"e.g. {scheme}://boss.example.org:8765"
        )


def _tls_context(sd: StateDir, host: str, advertise: str | None, mtls: bool) -> ServerTls:
    """The boss's TLS; the CA and its certificate are made first if missing."""
    from urllib.parse import urlsplit

    from shoal.boss.listen import real_address
    from shoal.security import CertAuthority, ServerTls, boss_certificate

    ca = CertAuthority(sd.certs)
    hosts = [real_address(host)]
    if advertise:
        hosts.append(urlsplit(advertise).hostname or "")
    for line in boss_certificate(ca, [h for h in dict.fromkeys(hosts) if h]):
        sys.stderr.write(f"shoal: {line}\n")
    return ServerTls(ca, mtls=mtls)


def _serve(server: Boss, sd: StateDir, token: str, given: bool, mtls: bool = False) -> None:
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
    if server.url.startswith("https://"):
        certs = sd.certs
        start += f" --ca {certs / 'ca.crt'}"
        if mtls:
            start += " --cert NAME.crt --key NAME.key (from 'shoal certs add NAME --client')"
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
    url = boss_url or os.environ.get("SHOAL_BOSS")
    info = sd.live_boss() if not url else None
    argv = ["--boss=" + (url or (info or {}).get("url") or "")]
    given = token or _token(token_file)
    tok = given or (info or {}).get("token") or _state_token(sd)
    argv.append(f"--slots={slots or os.cpu_count() or 1}")
    if idle_exit is not None:
        argv.append(f"--idle-exit={idle_exit}")
    if name:
        argv.append("--name=" + name)
    if log_cap is not None:
        argv.append("--log-cap=" + log_cap)
    from_state = info is not None or (tok is not None and not given)
    if from_state and not any(a.startswith(("--ca", "--cert", "--key")) for a in ctx.args):
        # In the boss's folder: its CA, and the command line's certificate.
        from shoal.client.boss import state_tls

        tls = state_tls(sd)
        argv += [
            f"--{k}={v}"
            for k, v in zip(("ca", "cert", "key"), tls or (None,) * 3, strict=True)
            if v
        ]
    # The token is handed over in this process: never on a command line.
    raise typer.Exit(agent_main(argv + list(ctx.args), token=tok))


def _state_token(sd: StateDir) -> str | None:
    """The token the state folder holds, as every other command finds it; None if it has none.

    The running boss's own (it may have been given another), else the folder's token
    file; never made here: a worker does not invent a token.
    """
    info = sd.live_boss()
    if info is not None and info.get("token"):
        return str(info["token"])
    try:
        return sd.token_file.read_text().strip() or None
    except OSError:
        return None
