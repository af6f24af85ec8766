"""Serving: ``shoal boss`` (the API workers and commands talk to) and ``shoal worker``."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
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
    _more_than_zero,
    _one_or_more,
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
        metavar="URL",
        help="The URL to give workers (default: http(s)://ADDRESS:PORT of --listen, "
        "a real address of this machine for 0.0.0.0).",
    ),
]


# How the boss and the worker log: text for a person, JSON lines for programs.
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        metavar="text|json",
        show_default=False,
        help="How to log: text for a person, JSON lines with an 'event' field for programs "
        "(default: text at a terminal, else json).",
    ),
]


@app.command(
    epilog="Examples:\n"
    "  shoal boss                               # workers of this machine only\n"
    "  shoal boss --listen 0.0.0.0:8765 --tls   # workers of other machines too"
)
def boss(
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="HOST:PORT to serve on.")
    ] = "127.0.0.1:8765",
    db: DbOpt = None,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    state: StateOpt = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
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
        int,
        typer.Option(
            "--max-losses",
            metavar="N",
            callback=_one_or_more("--max-losses"),
            help="Lost attempts after which a task fails.",
        ),
    ] = 3,
    max_body: Annotated[
        str,
        typer.Option(
            "--max-body",
            metavar="SIZE",
            help="Largest JSON request the boss reads (a submitted run), e.g. 64M or 1G.",
        ),
    ] = "32M",
    tls: TlsOpt = False,
    mtls: MtlsOpt = False,
    insecure: InsecureOpt = False,
    advertise: AdvertiseOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Serve the boss: the API workers and commands talk to."""
    from shoal.boss.api import Limits
    from shoal.boss.server import Boss, parse_listen

    limits = Limits(max_body=parse_size(max_body, "--max-body"))
    _log_format(log_format)  # a bad one is refused before anything starts

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
    token_from = _token_source(token, token_file)
    token = token or _token(token_file) or sd.token()
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
    sd.remember_database(db)
    _serve(server, sd, token_from, _log_format(log_format), mtls)


def _token_source(token: str | None, token_file: Path | None) -> str | None:
    """Where the boss's token came from, in words; None for the state folder's token file."""
    if token:
        return "given with --token"
    if token_file is not None:
        return f"in {token_file}"
    if os.environ.get("SHOAL_TOKEN"):
        return "given in $SHOAL_TOKEN"
    if os.environ.get("SHOAL_TOKEN_FILE"):
        return f"in {os.environ['SHOAL_TOKEN_FILE']}"
    return None


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


def _serve(
    server: Boss, sd: StateDir, token_from: str | None, log_format: str, mtls: bool = False
) -> None:
    """Serve until stopped, with the boss's address in the state folder meanwhile.

    ``token_from``: where the token was given (None: the state folder's token file).
    """
    import logging

    from shoal.logs import configure

    sd.write_boss(server.url, server.token)
    configure(log_format=log_format)
    start = (
        f"SHOAL_TOKEN=<the token given to this boss> shoal worker --boss {server.url}"
        if token_from
        else f"shoal worker --boss {server.url} --token-file {sd.token_file}"
    )
    if server.url.startswith("https://"):
        certs = sd.certs
        start += f" --ca {certs / 'ca.crt'}"
        if mtls:
            start += " --cert NAME.crt --key NAME.key (from 'shoal certs add NAME --client')"
    if log_format == "text":
        # The token is never printed: only where it is.
        where = token_from or f"in {sd.token_file}"
        sys.stderr.write(
            f"shoal boss serving {server.url} (state: {sd.root.resolve()})\n"
            f"  dashboard:     {server.url}/ (log in with the token)\n"
            f"  token:         {where}\n"
            f"  start workers: {start}\n"
            "Stop it with Ctrl-C.\n"
        )
        sys.stderr.flush()
    else:
        logging.getLogger("shoal.boss").info(
            f"serving {server.url}; start workers with: {start}",
            extra={
                "event": "boss_started",
                "url": server.url,
                "state": str(sd.root),
                "pid": os.getpid(),
            },
        )
    # uvicorn stops on SIGTERM, then raises it again: go through the clean-up
    # below (boss.json removed, housekeeping handed over) before dying of it.
    terminated: list[int] = []

    def stop(signum: int, frame: object) -> None:
        terminated.append(signum)
        server.server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve()
    finally:
        sd.clear_boss()
        server.close()
    if terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _log_format(given: str | None) -> str:
    """JSON lines unless a person reads them: text at a terminal, or when asked for."""
    from shoal.logs import LOG_FORMATS

    if given is None:
        return "text" if sys.stderr.isatty() and sys.stdout.isatty() else "json"
    if given not in LOG_FORMATS:
        raise BadInput(f"--log-format '{given}': give text or json")
    return given


WORKER_EXAMPLES = (
    "Examples:\n"
    "  shoal worker            # in the boss's folder: its URL and token from there\n"
    "  SHOAL_TOKEN_FILE=token shoal worker --boss http://boss:8765 --label gpu=1"
)


def _flags(**given: str | None) -> list[str]:
    """``--name=value`` for each value given (the agent's options; None: not given)."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in given.items() if v is not None]


@app.command(epilog=WORKER_EXAMPLES)
def worker(
    boss_url: Annotated[
        str | None,
        typer.Option(
            "--boss",
            metavar="URL",
            help="The boss's URL (default: $SHOAL_BOSS or the state folder).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            callback=_warn_token_file_safer,
            help="The boss's token (default: $SHOAL_TOKEN, $SHOAL_TOKEN_FILE or the state folder).",
        ),
    ] = None,
    token_file: TokenFileOpt = None,
    ca: Annotated[
        str | None,
        typer.Option(
            "--ca",
            metavar="FILE",
            help="The CA the boss's certificate is checked against "
            "(default: $SHOAL_CA, or the state folder's).",
        ),
    ] = None,
    cert: Annotated[
        str | None,
        typer.Option(
            "--cert",
            metavar="FILE",
            help="This worker's certificate, for a boss under --mtls (default: $SHOAL_CERT).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", metavar="FILE", help="Its private key, mode 0600 (default: $SHOAL_KEY)."
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(
            "--slots",
            metavar="N",
            show_default=False,
            callback=_one_or_more("--slots"),
            help="Attempts at once (default: cores).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Worker name (default: HOST-PID).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            metavar="KEY=VALUE",
            help="A label tasks may require (gpu=1, zone=eu); repeat it. KEY alone means true.",
        ),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            "--idle-exit",
            metavar="SECONDS",
            callback=_more_than_zero("--idle-exit", "60"),
            help="Exit after this many idle seconds.",
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout",
            metavar="SECONDS",
            help="On SIGTERM, interrupt running attempts after this long "
            "(default: let them finish; a second SIGTERM interrupts them).",
        ),
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            "--workdir",
            metavar="DIR",
            help="Where workspaces and bundles go (default: TMPDIR/shoal-worker-UID).",
        ),
    ] = None,
    log_cap: LogCapOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No log lines on stderr.")] = False,
    log_format: LogFormatOpt = None,
    end_at: Annotated[
        float | None,
        typer.Option(
            "--end-at",
            metavar="TIME",
            help="When this worker's time ends (seconds since 1970, e.g. its batch job's end): "
            "it takes no task whose timeout would outlast it, and drains before it.",
        ),
    ] = None,
    parent: Annotated[
        int | None,
        typer.Option("--parent", metavar="PID", help="Stop when this process ends."),
    ] = None,
    lifeline: Annotated[
        bool, typer.Option("--lifeline", help="Stop when standard input closes.")
    ] = False,
    alive_file: Annotated[
        str | None,
        typer.Option(
            "--alive-file",
            metavar="FILE",
            help="Touch this file every 30 s while running (a machine's watchdog reads it).",
        ),
    ] = None,
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
    argv.append(f"--slots={slots if slots is not None else os.cpu_count() or 1}")
    argv += _flags(
        idle_exit=_text(idle_exit),
        drain_timeout=_text(drain_timeout),
        name=name,
        log_cap=log_cap,
        workdir=workdir,
        end_at=_text(end_at),
        parent=_text(parent),
        alive_file=alive_file,
    )
    argv += [f"--label={item}" for item in label or []]
    argv += [flag for flag, on in (("--quiet", quiet), ("--lifeline", lifeline)) if on]
    if log_format is not None:
        argv.append("--log-format=" + _log_format(log_format))
    from_state = info is not None or (tok is not None and not given)
    if from_state and ca is None and cert is None and key is None:
        # In the boss's folder: its CA, and the command line's certificate.
        from shoal.client.boss import state_tls

        ca, cert, key = state_tls(sd) or (None, None, None)
    argv += _flags(ca=ca, cert=cert, key=key)
    # The token is handed over in this process: never on a command line.
    raise typer.Exit(agent_main(argv, token=tok))


def _text(value: float | None) -> str | None:
    return None if value is None else str(value)


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
