"""``shoal worker`` / ``python -m shoal.agent``: the agent's command line (standard library only).

It reads the options and the token (never from the command line when it can
help it: ``SHOAL_TOKEN``, ``--token-file``, or a caller in this process),
drops every boss credential from the environment its tasks inherit, and runs
an :class:`~shoal.agent.worker.Agent` until it is stopped.

shoal's own launchers hand the token over on standard input
(``--token-file=/dev/stdin``), never in ``SHOAL_TOKEN``: dropping a variable
from ``os.environ`` leaves it in ``/proc/PID/environ``, which every task of
this worker could read for as long as it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Dict, List, Optional

from shoal.agent.client import (
    STDIN_TOKEN_FILES,
    AgentClient,
    TlsFiles,
    drop_credentials,
    read_token_file,
    token_from_environment,
    token_warning,
)
from shoal.agent.logcap import DEFAULT_LOG_CAP, log_cap
from shoal.agent.signs import lifeline, touch_alive
from shoal.agent.worker import LIFELINE_GIVE_UP, LOG_FORMATS, Agent, set_log_format

__all__ = ["main", "run_then_exit"]


def _labels(items: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            out[key] = True
            continue
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoal worker", description="Run a shoal worker.")
    parser.add_argument("--boss", default=os.environ.get("SHOAL_BOSS"), help="the boss's URL")
    parser.add_argument(
        "--token",
        default=None,
        help="the boss's token (ps shows it to others: prefer $SHOAL_TOKEN or --token-file)",
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="a file holding the boss's token, /dev/stdin for the first line of standard input "
        "(default: $SHOAL_TOKEN_FILE)",
    )
    parser.add_argument(
        "--ca",
        default=os.environ.get("SHOAL_CA"),
        help="the CA the boss's certificate is checked against (default: $SHOAL_CA)",
    )
    parser.add_argument(
        "--cert",
        default=os.environ.get("SHOAL_CERT"),
        help="this worker's certificate, for a boss under --mtls (default: $SHOAL_CERT)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("SHOAL_KEY"),
        help="its private key, mode 0600 (default: $SHOAL_KEY)",
    )
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="attempts at once")
    parser.add_argument("--name", default=None, help="worker name (default: HOST-PID)")
    parser.add_argument(
        "--label", action="append", default=[], help="a label KEY=VALUE (repeatable)"
    )
    parser.add_argument(
        "--idle-exit", type=float, default=None, help="exit after this many idle seconds"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=None,
        help="on SIGTERM, wait this long for running attempts",
    )
    parser.add_argument("--workdir", default=None, help="where workspaces and bundles go")
    parser.add_argument(
        "--log-cap",
        default=None,
        help="keep at most this much of an attempt's log, its head and its tail "
        "(e.g. 8M, the default; K, M, G)",
    )
    parser.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text for a person, JSON lines for programs (default: text at a terminal, else json)",
    )
    parser.add_argument(
        "--parent", type=int, default=None, help="stop when this process (our parent) ends"
    )
    parser.add_argument(
        "--lifeline",
        action="store_true",
        help="stop when standard input closes (the ssh connection that started us ended)",
    )
    parser.add_argument(
        "--end-at",
        type=float,
        default=None,
        help="when this worker's time ends (epoch seconds, e.g. its Slurm job's end): it takes "
        "no task whose timeout would outlast it, and drains before it",
    )
    parser.add_argument(
        "--alive-file",
        default=None,
        help="touch this file every 30 s while running (a rented VM's watchdog reads it)",
    )
    return parser


def _forget_stdin() -> None:
    """Standard input becomes /dev/null: it held the token (Slurm's job hands a
    removed file), which anything of this user could reopen as /proc/PID/fd/0."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def main(argv: Optional[List[str]] = None, token: Optional[str] = None) -> int:
    """``shoal worker`` / ``python -m shoal.agent``: run a worker until stopped.

    ``token``: the boss's token, from a caller in this process (``shoal
    worker``); else ``--token``, ``--token-file``, ``$SHOAL_TOKEN`` or
    ``$SHOAL_TOKEN_FILE``. The last two are removed from the environment
    either way, so that no task inherits them.
    """
    sys.setswitchinterval(0.0005)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.token:
        sys.stderr.write(
            token_warning("--token", "set SHOAL_TOKEN or pass --token-file FILE") + "\n"
        )
    try:
        token = token or args.token
        if not token and args.token_file:
            token = read_token_file(args.token_file)
            if args.token_file in STDIN_TOKEN_FILES and not args.lifeline:
                _forget_stdin()
        if not token:
            token = token_from_environment()
    except ValueError as e:
        sys.stderr.write(f"shoal worker: {e}\n")
        return 2
    finally:
        # Read once: nothing this worker starts inherits a boss credential.
        drop_credentials(os.environ)
    if not args.boss:
        sys.stderr.write("shoal worker: no boss given: pass --boss URL or set SHOAL_BOSS\n")
        return 2
    if not token:
        sys.stderr.write(
            "shoal worker: no token given: set SHOAL_TOKEN or pass --token-file FILE\n"
        )
        return 2
    if args.slots < 1:
        sys.stderr.write("shoal worker: --slots must be at least 1\n")
        return 2
    if args.end_at is not None and not args.end_at > 0:
        sys.stderr.write("shoal worker: --end-at must be a time (seconds since 1970)\n")
        return 2
    try:
        cap = log_cap(args.log_cap) if args.log_cap is not None else DEFAULT_LOG_CAP
    except ValueError as e:
        sys.stderr.write(f"shoal worker: --log-cap: {e}\n")
        return 2
    try:
        tls = TlsFiles(args.ca or None, args.cert or None, args.key or None)
        client = AgentClient(args.boss, token, tls=tls if any(tls) else None)
    except ValueError as e:
        sys.stderr.write(f"shoal worker: {e}\n")
        return 2
    set_log_format(args.log_format or ("text" if sys.stderr.isatty() else "json"))
    agent = Agent(
        client,
        slots=args.slots,
        name=args.name,
        labels=_labels(args.label),
        workdir=args.workdir,
        idle_exit=args.idle_exit,
        drain_timeout=args.drain_timeout,
        quiet=args.quiet,
        parent=args.parent,
        give_up_after=LIFELINE_GIVE_UP if args.lifeline else None,
        log_cap=cap,
        end_at=args.end_at,
    )
    agent.install_signal_handlers()
    if args.lifeline:
        threading.Thread(target=lifeline, args=(agent,), name="lifeline", daemon=True).start()
    if args.alive_file:
        threading.Thread(
            target=touch_alive, args=(args.alive_file,), name="alive", daemon=True
        ).start()
    return agent.run()


def run_then_exit() -> None:
    """``python -m shoal.agent`` and the zipapp: :func:`main`, then exit at once.

    Everything is reported and closed when :func:`main` returns: the
    interpreter's teardown (10-15 ms, which the end of every ``shoal run``
    waits for) is skipped.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
