"""The errors shoal raises.

Every error a user can cause is a :class:`ShoalError` whose message is one
line saying what was wrong, where, and what to do about it. The command line
prints that line and exits with :attr:`ShoalError.exit_code`; nothing else
prints a traceback for them.

::

    ShoalError
    ├── BadInput              exit 2: the user gave something shoal cannot use
    │   ├── SpecError         a task file (or inventory) is invalid; names file:line and task
    │   └── NotFound          a run, task or file named on the command line does not exist
    ├── StoreError            the database cannot be used (newer schema, locked, corrupt)
    │   └── StoreConflict     two transactions collided: run it again
    └── BossError             talking to the boss failed
        ├── BossUnreachable   no boss answers at the address
        └── Unauthorized      the boss refused the token
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "BossError",
    "BossUnreachable",
    "NotFound",
    "ShoalError",
    "SpecError",
    "StoreConflict",
    "StoreError",
    "Unauthorized",
]


class ShoalError(Exception):
    """Root of every error shoal raises on purpose."""

    exit_code = 1


class BadInput(ShoalError):
    """The user gave shoal something it cannot use."""

    exit_code = 2


class SpecError(BadInput):
    """A task file (or a host inventory) is invalid.

    The message reads ``FILE:LINE: task 'NAME': what is wrong (how to fix)``
    (``host 'NAME'`` in an inventory),
    leaving out the parts that are not known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        task: str | None = None,
        kind: str = "task",
    ) -> None:
        self.path = path
        self.line = line
        self.task = task
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        who = f"{kind} '{task}': " if task is not None else ""
        super().__init__(f"{where}{who}{message}")


class NotFound(BadInput):
    """A run, task, worker or file named by the user does not exist."""


class StoreError(ShoalError):
    """The database cannot be used as it is."""


class StoreConflict(StoreError):
    """Two transactions collided (deadlock, serialization); running it again will do."""


class BossError(ShoalError):
    """Talking to the boss failed."""


class BossUnreachable(BossError):
    """No boss answers at the given address."""


class Unauthorized(BossError):
    """The boss refused the token."""

    exit_code = 2
