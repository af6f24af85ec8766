"""The ``shoal`` command line.

Every command ends in one clear line on error and an exit code: 0 success,
1 a task failed, 2 bad input, 130 interrupted. The commands live in one
module per group (:mod:`~shoal.cli.run`, :mod:`~shoal.cli.serve`,
:mod:`~shoal.cli.watch`, :mod:`~shoal.cli.hosts`) that registers them on
the app of :mod:`~shoal.cli.common`, where the options they share are.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from shoal import __version__
from shoal.cli import common as _common
from shoal.exceptions import ShoalError

# The groups of commands, one module each: importing a module puts its commands
# on the app, and 'shoal --help' lists them in this order. A new group is a
# module of this package, named here.
GROUPS = ("run", "serve", "watch", "hosts", "machines", "certs", "tokens", "data", "gc")

# The group that holds each command: `shoal run` imports shoal.cli.run alone, not
# the boss, the dashboard and ssh with it. A command missing here still works
# (every group is imported for it); tests/unit/test_cli_loading.py says which.
COMMANDS = {
    **dict.fromkeys(
        ("run", "flow", "submit", "cancel", "retry"),
        "run",
    ),
    **dict.fromkeys(("boss", "worker"), "serve"),
    **dict.fromkeys(
        ("status", "tasks", "logs", "results", "workers", "bosses", "events"),
        "watch",
    ),
    **dict.fromkeys(("hosts", "inject", "up", "down", "pull", "ssh"), "hosts"),
    **dict.fromkeys(("machines", "drain"), "machines"),
    "certs": "certs",
    "tokens": "tokens",
    "data": "data",
    "gc": "gc",
}

__all__ = ["app", "main"]


def _version(value: bool) -> None:
    if value:
        _common.console.print(f"shoal {__version__}")
        raise typer.Exit()


def load_commands(args: Sequence[str] | None = None) -> typer.Typer:
    """The app, with the group of the command ``args`` start with (every group if unknown)."""
    group = COMMANDS.get(args[0]) if args else None
    for name in (group,) if group else GROUPS:
        importlib.import_module(f"shoal.cli.{name}")
    return _common.app


def __getattr__(name: str) -> Any:
    # `from shoal.cli import app`: the app with every command on it.
    if name == "app":
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@_common.app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


def main() -> None:
    """Entry point of the ``shoal`` command."""
    code = 0
    try:
        app = load_commands(sys.argv[1:2])
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except ShoalError as e:
        # One line, never wrapped: scripts and people both read it.
        sys.stderr.write(f"shoal: {e}\n")
        code = e.exit_code
    except typer.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `shoal tasks | head`: the reader left; that is not an error. (SIGPIPE
        # keeps Python's default, so a worker's broken socket never kills it.)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception as e:
        # Usage errors from the option parser (Typer's own copy of click).
        show = getattr(e, "show", None)
        if callable(show) and isinstance(getattr(e, "exit_code", None), int):
            show()
            code = 2
        elif type(e).__name__ == "Abort":
            code = 130
        else:
            raise
    _exit(code)


def _exit(code: int) -> None:
    """Exit without tearing the interpreter down.

    Every file, database and process shoal opened is closed by now; what is
    left is unloading SQLAlchemy, Starlette and friends module by module,
    which costs a third of a second that nobody waits for gladly.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
