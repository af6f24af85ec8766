"""What the command modules share: the app, the options, and the helpers behind them.

The helpers' names start with ``_``: they belong to the ``shoal.cli`` package
and are no API of shoal's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from shoal.agent.client import read_token_file, token_from_environment, token_warning
from shoal.cli import render
from shoal.client import BossClient, Client, OfflineClient
from shoal.exceptions import BadInput
from shoal.statedir import StateDir

__all__ = [
    "BossOpt",
    "DbOpt",
    "FreshOpt",
    "HostsOpt",
    "InventoryOpt",
    "JsonOpt",
    "LeaseOpt",
    "LogCapOpt",
    "RunArg",
    "SpeculateMinOpt",
    "StateOpt",
    "TokenFileOpt",
    "TokenOpt",
    "app",
    "console",
    "parse_size",
]


class _Argument(TyperArgument):
    """An argument named in the usage line as ``FILE`` or ``[RUN]`` (Typer writes ``{file}``)."""

    def make_metavar(self, ctx: Any, *, usage: bool = False) -> str:
        name = self.metavar or (self.name or "value").upper()
        if self.nargs != 1:
            name += "..."
        return name if self.required or not usage else f"[{name}]"

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # its name says what it is: no "<str>" after it


def _finish(command: Any) -> Any:
    """Name every value in a command's help the way its text does, and keep examples as written.

    Typer shows a value by its type (``--boss <str>``, ``<list[str]>``) and a
    required argument as ``{file}``; here an option without a metavar of its
    own is named after itself (``--idle-exit IDLE_EXIT``, as argparse does),
    an argument in capitals (``FILE``), and an epilog starting with
    "Examples:" keeps its lines (click would join them into one paragraph).
    Done on each command as it is looked up, so it covers every group.
    """
    if getattr(command, "_shoal_finished", False):
        return command
    command._shoal_finished = True
    for sub in getattr(command, "commands", {}).values():
        _finish(sub)
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
            param.metavar = param.metavar or (param.name or "value").upper()
        elif isinstance(param, TyperOption) and not param.is_flag and param.metavar is None:
            longest = max(param.opts, key=len)
            param.metavar = longest.lstrip("-").replace("-", "_").upper()
    epilog = command.epilog or ""
    if epilog.startswith("Examples:"):
        command.epilog = "\b\n" + epilog
    return command


class _Group(TyperGroup):
    """shoal's command group: each command's help finished by :func:`_finish` when looked up."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return _finish(command) if command is not None else None


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # -h as well as --help, on every command (sub-commands inherit it).
    context_settings={"help_option_names": ["-h", "--help"]},
    help="shoal runs a batch of shell tasks with dependencies across many machines.",
)
console = render.console()

BossOpt = Annotated[
    str | None,
    typer.Option(
        "--boss", metavar="URL", help="The boss's URL (default: $SHOAL_BOSS or the state folder)."
    ),
]
HostsOpt = Annotated[
    Path | None,
    typer.Option(
        "--hosts", metavar="FILE", help="Inventory of ssh hosts (hosts.yaml): one worker on each."
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="DB",
        help="Database: a SQLite file or postgresql://USER@HOST/NAME (default: STATE/shoal.db).",
    ),
]


def _warn_token(value: str | None) -> str | None:
    """A token on the command line works, with a warning: ``ps`` shows it to everyone."""
    if value:
        sys.stderr.write(
            "shoal: "
            + token_warning("--token", "set SHOAL_TOKEN, or SHOAL_TOKEN_FILE to a file holding it")
            + "\n"
        )
    return value


def _more_than_zero(flag: str, example: str) -> Any:
    """An option callback refusing zero and negative numbers, with one line naming the flag."""

    def check(value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise BadInput(f"{flag} {value:g}: must be more than zero (e.g. {flag} {example})")
        return value

    return check


def _one_or_more(flag: str) -> Any:
    """An option callback refusing a count below one."""

    def check(value: int | None) -> int | None:
        if value is not None and value < 1:
            raise BadInput(f"{flag} must be 1 or more (got {value})")
        return value

    return check


def _warn_token_file_safer(value: str | None) -> str | None:
    if value:
        sys.stderr.write(
            "shoal: " + token_warning("--token", "set SHOAL_TOKEN or pass --token-file FILE") + "\n"
        )
    return value


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        callback=_warn_token,
        help="The boss's token (default: $SHOAL_TOKEN, $SHOAL_TOKEN_FILE or the state folder).",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        metavar="FILE",
        help="A file holding the boss's token (default: $SHOAL_TOKEN_FILE).",
    ),
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state",
        metavar="DIR",
        help="The state folder: database, datastore, boss address (default: $SHOAL_STATE or .shoal).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LeaseOpt = Annotated[
    float,
    typer.Option(
        "--lease",
        metavar="SECONDS",
        callback=_more_than_zero("--lease", "30"),
        help="Seconds an attempt lives without a sync from its worker.",
    ),
]
SpeculateMinOpt = Annotated[
    float,
    typer.Option(
        "--speculate-min",
        metavar="SECONDS",
        callback=_more_than_zero("--speculate-min", "30"),
        help="Seconds a straggler runs before it may get a backup attempt.",
    ),
]
FreshOpt = Annotated[
    bool,
    typer.Option("--fresh", help="Run every task, even those that succeeded before unchanged."),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="DIR|URL",
        help="The datastore: a folder, or a URL (s3://bucket/prefix, gs://, az://, "
        "sftp://user@host/path, any fsspec URL); default STATE/data, or the one last given.",
    ),
]
DataOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data-option",
        metavar="KEY=VALUE",
        help="KEY=VALUE for the datastore's filesystem (endpoint_url=..., region=...); "
        "repeat it. Credentials come from the library's environment and files, never from here.",
    ),
]
RunArg = Annotated[
    str | None, typer.Argument(metavar="RUN", help="Run id or name (default: the latest run).")
]
LogCapOpt = Annotated[
    str | None,
    typer.Option(
        "--log-cap",
        metavar="SIZE",
        help="Keep at most this much of each attempt's log: its head and its tail, "
        "with a line saying what was cut (default 8M; K, M, G).",
    ),
]


def _log_cap(text: str | None) -> int | None:
    if text is None:
        return None
    from shoal.agent.logcap import log_cap

    try:
        return log_cap(text)
    except ValueError as e:
        raise BadInput(f"--log-cap: {e}") from None


def parse_size(text: str, option: str) -> int:
    """Bytes from ``123``, ``64K``, ``64M`` or ``1G`` (binary units); one line if it is not."""
    from shoal.agent.logcap import parse_size as size_of

    try:
        size = size_of(text)
    except ValueError as e:
        raise BadInput(f"{option}: {e}") from None
    if size <= 0:
        raise BadInput(f"{option} '{text}' is no size: give more than 0 bytes (64M, say)")
    return size


def _state(path: Path | None) -> StateDir:
    return StateDir(path or Path(os.environ.get("SHOAL_STATE", ".shoal")))


def _datastore(
    sd: StateDir, data: str | None, data_options: list[str] | None
) -> tuple[str, dict[str, str]]:
    """The datastore's location and options: those given, else those the state folder remembers."""
    from shoal.datastore.location import is_url, parse_options

    options = parse_options(data_options or [])
    if data is None:
        if options:
            raise BadInput("--data-option needs --data URL: the options go with a URL")
        return sd.datastore()
    if not is_url(data):
        data = str(Path(data).resolve())
    return data, options


def _inventory(path: Path | None) -> Any:
    if path is None:
        return None
    from shoal.spec import inventory

    return inventory.load(path)


def _token(token_file: Path | None) -> str | None:
    """The token in ``--token-file``, ``$SHOAL_TOKEN`` or ``$SHOAL_TOKEN_FILE``, if any."""
    try:
        if token_file is not None:
            return read_token_file(str(token_file))
        return token_from_environment()
    except ValueError as e:
        raise BadInput(str(e)) from None


def _client(boss: str | None, token: str | None, state: Path | None) -> Client:
    """The boss to ask; without one, the state folder's database, read directly."""
    sd = _state(state)
    if not (boss or os.environ.get("SHOAL_BOSS")) and sd.live_boss() is None:
        if sd.has_database():
            return OfflineClient(sd)
        if not sd.root.exists():
            raise BadInput(_no_state(sd, given=state is not None or "SHOAL_STATE" in os.environ))
    return BossClient.find(boss, token, sd)


def _no_state(sd: StateDir, given: bool) -> str:
    """Nothing to read here: no boss, no database; where to start one, not which boss to start."""
    if not given:
        return f"no shoal state in {Path.cwd()}: run 'shoal run FILE' or 'shoal boss' there first"
    where = sd.root.resolve()
    return (
        f"no shoal state in {where}: run 'shoal run FILE --state {where}' "
        f"or 'shoal boss --state {where}' first"
    )


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=None) + "\n")


InventoryOpt = Annotated[
    Path | None,
    typer.Option("--hosts", metavar="FILE", help="Inventory of ssh hosts (hosts.yaml)."),
]
