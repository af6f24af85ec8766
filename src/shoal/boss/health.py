"""The boss's own troubles, as of now: what it failed to write, and since when.

When the boss cannot write its datastore or its database, every request that
needs it fails the same way; a worker backs off and tries again, and the
user reads the cause in ``shoal status`` and ``shoal run``. This is a view of
now, not a record: it is forgotten by a restart, and a trouble ends at the
first write that succeeds again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Health"]


class Health:
    """The boss's current troubles, one per part (``datastore``, ``database``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._troubles: dict[str, tuple[float, str]] = {}

    def failed(self, part: str, message: str) -> None:
        since = self._troubles.get(part, (self.clock(), ""))[0]
        self._troubles[part] = (since, message)

    def recovered(self, part: str) -> None:
        if self._troubles:
            self._troubles.pop(part, None)

    def lines(self) -> list[str]:
        """One line per trouble: what fails, and since when (from any thread)."""
        return [
            f"{message} (since {time.strftime('%H:%M:%S', time.localtime(since))})"
            for since, message in list(self._troubles.values())  # one copy, while others write
        ]

    def warn(self, view: dict[str, Any]) -> dict[str, Any]:
        """A run's view with the boss's troubles first among its warnings."""
        troubles = self.lines()
        if troubles:
            view["warnings"] = [*troubles, *view.get("warnings", [])]
        return view
