"""One root for every error shoal raises on purpose, drawn once at the top of exceptions.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import shoal
from shoal import exceptions
from shoal.exceptions import ShoalError


def _error_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in shoal's modules, by name."""
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(shoal.__path__, "shoal."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
            ):
                found[name] = value
    return found


def test_every_error_shoal_defines_is_a_shoal_error() -> None:
    classes = _error_classes()
    assert {"SshFailed", "SetupFailed", "FlowError", "ReduceError", "BossDown"} <= set(classes)
    outside = sorted(n for n, c in classes.items() if not issubclass(c, ShoalError))
    assert outside == [], f"not under ShoalError: {outside}"


def test_the_tree_at_the_top_of_exceptions_names_every_error() -> None:
    tree = exceptions.__doc__ or ""
    drawn = {line.split("── ")[-1].split()[0] for line in tree.splitlines() if "── " in line}
    missing = sorted(n for n in _error_classes() if n not in drawn | {"ShoalError"})
    assert missing == [], f"not drawn in exceptions.py's tree: {missing}"


def test_errors_from_below_keep_their_meaning() -> None:
    from shoal.agent.client import BossDown, BossRefused
    from shoal.exceptions import BadInput, BossError, BossUnreachable
    from shoal.protocol import BadMessage
    from shoal.spec.flow import FlowError

    # What the command line catches for "no boss there" also catches the agent's own.
    assert issubclass(BossDown, BossUnreachable) and issubclass(BossRefused, BossError)
    # A bad message or flow is the user's input: exit 2, a 400 from the boss.
    assert issubclass(BadMessage, BadInput) and issubclass(FlowError, BadInput)
    assert BossRefused(503, "busy").status == 503
