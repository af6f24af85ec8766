"""The errors shoal raises.

Every error a user can cause is a :class:`ShoalError` whose message is one
line saying what was wrong, where, and what to do about it. The command line
prints that line and exits with :attr:`ShoalError.exit_code`; nothing else
prints a traceback for them.

::

    ShoalError
    ├── BadInput              exit 2: the user gave something shoal cannot use
    │   ├── SpecError         a task file (or inventory) is invalid; names file:line and task
    │   ├── FlowError         a flow expression does not parse; names the column (spec.flow)
    │   ├── NotFound          a run, task or file named on the command line does not exist
    │   ├── TooLarge          a request or a document is over a limit, which it names
    │   ├── WrongMediaType    a request's body is not of the type the route reads
    │   ├── Refused           the request is well formed but this caller may not do it
    │   ├── Fenced            an attempt that no longer holds its task tried to write for it
    │   ├── UploadStalled     an upload sent nothing for too long and was dropped
    │   ├── BadMessage        a wire message with a field missing or of the wrong type (protocol)
    │   └── MissingCredentials  a cloud's credentials are not where it reads them (launch.cloud.kinds)
    ├── StoreError            the database cannot be used (newer schema, locked, corrupt)
    │   └── StoreConflict     two transactions collided: run it again
    ├── DatastoreError        the datastore cannot be written (read-only, full, blocked)
    │   └── Corrupt           a stored file does not match the sha256 recorded when written
    ├── BossError             talking to the boss failed
    │   ├── BossUnreachable   no boss answers at the address
    │   │   └── BossDown      the agent's connection to the boss failed (agent.client)
    │   │       └── BossUntrusted  TLS failed: the boss's certificate, or it refused ours (agent.client)
    │   ├── BossRefused       the boss answered the agent with an error status (agent.client)
    │   └── Unauthorized      the boss refused the token
    ├── ReduceError           a reduction's operands cannot be added together (reduce)
    ├── SetupFailed           a bundle's setup failed on a worker (agent.bundles)
    ├── OutputRefused         an output of a task leads out of its workspace (agent.runner)
    ├── SshFailed             ssh to a host failed; names the host and ssh's line (launch.ssh)
    ├── DockerFailed          a docker command failed; its own error line (launch.docker)
    ├── VagrantFailed         a vagrant command failed; its error in a line (launch.vagrant)
    ├── CloudError            a cloud's API call failed; names the cloud and its message (launch.cloud.errors)
    │   ├── CloudAuthFailed   the cloud refused the credentials (exit 2)
    │   ├── CloudRefused      the cloud refused the request: image, size, quota (exit 2)
    │   └── CloudUnreachable  no answer, or the cloud's own trouble: try again later
    └── WorkersLost           every local worker exited while the run had work (session)

A class followed by a module in parentheses is defined there, beside what
raises them; the worker agent imports this module, so it stays standard
library only, like the agent.
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "BossError",
    "BossUnreachable",
    "Corrupt",
    "DatastoreError",
    "Fenced",
    "NotFound",
    "Refused",
    "ShoalError",
    "SpecError",
    "StoreConflict",
    "StoreError",
    "TooLarge",
    "Unauthorized",
    "UploadStalled",
    "WrongMediaType",
]


class ShoalError(Exception):
    """Root of every error shoal raises on purpose.

    ``exit_code`` is what the command line exits with; ``http_status`` is
    what the boss answers a request that raised it with.
    """

    exit_code = 1
    http_status = 500


class BadInput(ShoalError):
    """The user gave shoal something it cannot use."""

    exit_code = 2
    http_status = 400


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

    http_status = 404


class TooLarge(BadInput):
    """A request or a document is larger, longer or deeper than shoal takes."""

    http_status = 413


class WrongMediaType(BadInput):
    """A request's body is not of the media type its route reads."""

    http_status = 415


class Refused(BadInput):
    """The caller may not do this (a cross-site request, say)."""

    http_status = 403


class Fenced(BadInput):
    """An attempt that no longer holds its task tried to write for it."""

    http_status = 409


class UploadStalled(BadInput):
    """An upload stopped sending and was dropped."""

    http_status = 408


class StoreError(ShoalError):
    """The database cannot be used as it is."""

    http_status = 503


class DatastoreError(ShoalError):
    """The datastore cannot be written (read-only, full, a path blocked by a file)."""

    http_status = 503


class Corrupt(DatastoreError):
    """A stored file does not match the size and sha256 recorded when it was written."""


class StoreConflict(StoreError):
    """Two transactions collided (deadlock, serialization); running it again will do."""


class BossError(ShoalError):
    """Talking to the boss failed."""


class BossUnreachable(BossError):
    """No boss answers at the given address."""


class Unauthorized(BossError):
    """The boss refused the token."""

    exit_code = 2
