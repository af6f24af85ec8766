"""``shoal run FILE --hosts INVENTORY``: the hosts' ssh connections, opened first of all.

The ssh handshakes are the slowest part of a host's start, and they run in
ssh's own processes: opened before the command line's modules load (a
fifth of a second of one core), they use the other core meanwhile. Read
before anything else, the inventory is read again by the command, which
says what is wrong with it if anything is; here a mistake only means no
early start.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["connect_early"]


def connect_early(args: Sequence[str]) -> None:
    """Open the master connections of the hosts ``shoal run … --hosts FILE`` names, if it does."""
    if not args or args[0] != "run" or any(a in ("-h", "--help") for a in args):
        return
    path = _option(args[1:], "--hosts")
    if not path:
        return
    try:
        from shoal.spec import inventory

        hosts = inventory.load(path).hosts
    except Exception:  # the command reads it again, and says what is wrong
        return
    from shoal.launch.ssh.client import connect_ahead

    connect_ahead(hosts)


def _option(args: Sequence[str], name: str) -> str | None:
    """The value given to option ``name`` (``--name VALUE`` or ``--name=VALUE``), if any."""
    for i, arg in enumerate(args):
        if arg == "--":
            return None
        if arg == name:
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None
